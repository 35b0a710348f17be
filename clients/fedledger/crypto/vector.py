"""Packed encrypted vectors: encrypt a model update, sum updates homomorphically, decrypt the sum."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import numpy.typing as npt
from gmpy2 import mpz

from fedledger.crypto.cores import map_chunks
from fedledger.crypto.packing import Layout
from fedledger.crypto.paillier import PrivateKey, PublicKey, RandomnessPool
from fedledger.errors import CapacityError, KeyMismatchError, MalformedCiphertextError


@dataclass(frozen=True)
class EncryptedVector:
    """A vector of ``length`` values packed ``layout.slots`` to a ciphertext under ``public_key``.

    ``summands`` and ``total_weight`` say what the vector is the sum of: a fresh update has 1 and
    1; a weighted aggregate of ``K`` updates has ``K`` and the sum of the weights. Decoding needs
    the total weight, and the layout's capacity caps both.
    """

    public_key: PublicKey
    layout: Layout
    length: int
    ciphertexts: tuple[mpz, ...]
    summands: int = 1
    total_weight: int = 1

    def __post_init__(self) -> None:
        slots = self.layout.slots(self.public_key.key_bits)
        if len(self.ciphertexts) != -(-self.length // slots):
            raise MalformedCiphertextError(
                f"{len(self.ciphertexts)} ciphertexts cannot hold {self.length} values "
                f"at {slots} per ciphertext"
            )

    def __add__(self, other: EncryptedVector) -> EncryptedVector:
        return aggregate([self, other])

    def to_bytes(self) -> bytes:
        """Serialize with a header (key fingerprint, layout, counts); see :mod:`.serialization`."""
        from fedledger.crypto.serialization import dump_vector

        return dump_vector(self)


def encrypt_vector(
    public_key: PublicKey,
    values: npt.ArrayLike,
    layout: Layout,
    *,
    pool: RandomnessPool | None = None,
    rng: np.random.Generator | None = None,
) -> EncryptedVector:
    """Quantize, pack and encrypt a 1-D vector of values in ``[-layout.clip, layout.clip]``.

    With a filled ``pool`` this is one modular multiplication per ciphertext; without one, the
    ``r^n`` values are computed now, on every core. ``rng`` drives only the stochastic rounding (seeded from the
    OS by default); the encryption randomness always comes from the OS CSPRNG.
    """
    rng = rng or np.random.default_rng(secrets.randbits(128))
    quantized = layout.quantize(values, rng)
    plaintexts = layout.pack(quantized, public_key.key_bits)
    pool = pool or RandomnessPool(public_key)
    masks = pool.take(len(plaintexts))
    ciphertexts = tuple(public_key.raw_encrypt(m, r_n=r_n) for m, r_n in zip(plaintexts, masks))
    return EncryptedVector(public_key, layout, len(quantized), ciphertexts)


def aggregate(vectors: Sequence[EncryptedVector], weights: Sequence[int] | None = None) -> EncryptedVector:
    """Return the encryption of ``sum(w_k * v_k)`` (FedAvg's numerator when ``w_k = n_k``).

    Raises
    ------
    KeyMismatchError
        The vectors are under different keys, layouts or lengths.
    CapacityError
        A weight is outside ``[1, max_weight]`` or the sum would pass the layout's capacity.
    """
    if not vectors:
        raise ValueError("aggregate needs at least one vector")
    weights = list(weights) if weights is not None else [1] * len(vectors)
    if len(weights) != len(vectors):
        raise ValueError(f"{len(vectors)} vectors but {len(weights)} weights")
    first = vectors[0]
    for k, v in enumerate(vectors):
        if v.public_key.fingerprint != first.public_key.fingerprint:
            raise KeyMismatchError(f"vector {k} is encrypted under a different public key")
        if v.layout != first.layout or v.length != first.length:
            raise KeyMismatchError(f"vector {k} has a different layout or length than vector 0")
    layout = first.layout
    for k, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, int | np.integer) or not 1 <= w <= layout.max_weight:
            raise CapacityError(f"weight {w!r} of vector {k} is outside [1, {layout.max_weight}]")
    summands = sum(v.summands for v in vectors)
    total = sum(int(w) * v.total_weight for w, v in zip(weights, vectors))
    if summands > layout.max_summands:
        raise CapacityError(
            f"a sum of {summands} updates exceeds the layout's declared maximum of {layout.max_summands}"
        )
    if total > layout.capacity:
        raise CapacityError(f"total weight {total} exceeds the layout's capacity of {layout.capacity}")
    nsquare = first.public_key.nsquare
    # Straus' interleaving: every column has the same weights, so one chain of squarings per
    # column serves all vectors, and vector k multiplies in wherever bit b of its weight is set.
    # About half the multiplications of one exponentiation per ciphertext.
    bits = max(int(w) for w in weights).bit_length()
    plan = [[k for k, w in enumerate(weights) if (int(w) >> b) & 1] for b in range(bits - 1, -1, -1)]
    summed = []
    for column in zip(*(v.ciphertexts for v in vectors)):
        acc = mpz(1)
        for members in plan:
            acc = acc * acc % nsquare
            for k in members:
                acc = acc * column[k] % nsquare
        summed.append(acc)
    return EncryptedVector(first.public_key, layout, first.length, tuple(summed), summands, total)


def decode_plaintexts(vector: EncryptedVector, plaintexts: list[mpz]) -> npt.NDArray[np.float64]:
    """Turn the decrypted plaintexts of ``vector`` into its weighted sum of values."""
    layout = vector.layout
    sums = layout.unpack(plaintexts, vector.public_key.key_bits, vector.length)
    return layout.dequantize(sums, vector.total_weight)


def _decrypt_all(ciphertexts: list[mpz], *, private_key: PrivateKey) -> list[mpz]:
    return [private_key.raw_decrypt(c) for c in ciphertexts]


def decrypt_vector(
    private_key: PrivateKey, vector: EncryptedVector, *, workers: int | None = None
) -> npt.NDArray[np.float64]:
    """Decrypt to the weighted sum of the encrypted values (divide by ``total_weight`` to average).

    The CRT decryptions are spread over ``workers`` processes (None: every core; 1: this process).
    """
    if vector.public_key.fingerprint != private_key.public_key.fingerprint:
        raise KeyMismatchError("the vector was encrypted under a different public key")
    decrypt = partial(_decrypt_all, private_key=private_key)
    return decode_plaintexts(vector, map_chunks(decrypt, vector.ciphertexts, workers=workers))
