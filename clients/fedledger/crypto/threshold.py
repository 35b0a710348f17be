"""Threshold Paillier, t of n, with a trusted dealer (Shoup's RSA sharing, Damgard-Jurik style).

The dealer builds ``n = pq`` from safe primes ``p = 2p'+1, q = 2q'+1`` (``m = p'q'``) and the
decryption exponent ``d`` with ``d = 0 mod m`` and ``d = 1 mod n``, shares ``d`` with a random
polynomial over ``Z_{nm}``, gives member ``i`` the share ``s_i = f(i)``, publishes verification
keys ``v_i = v^(Delta s_i)`` for a random square ``v`` (``Delta = n!``), and forgets ``p, q, d``.

A member's partial decryption of ``c`` is ``c_i = c^(2 Delta s_i) mod n^2``. Any ``t`` of them
combine by Lagrange interpolation "in the exponent" to ``c^(4 Delta^2 d) = 1 + 4 Delta^2 M n``.

Each member proves its partials correct with ONE Chaum-Pedersen proof per vector rather than one
per ciphertext: Fiat-Shamir coefficients ``rho_j`` (128 bits, hashed from all ciphertexts and
partials) fold the vector into ``C = prod c_j^rho_j`` and ``D = prod c_ij^rho_j``, and the member
proves ``log_{C^4} D^2 = log_v v_i``. Everything is squared into the group of squares mod ``n^2``,
whose order ``n p' q'`` has no prime factor below ``min(p', q')``; so a single wrong ``c_ij``
leaves ``D^2 != (C^4)^(Delta s_i)`` except with probability about ``2^-128``. The batch costs two
128-bit multi-exponentiations instead of a second full exponentiation per ciphertext.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import gmpy2
import numpy as np
import numpy.typing as npt
from gmpy2 import mpz

from fedledger.crypto._numbers import evaluate_polynomial, multi_powmod, random_bits, random_safe_prime, random_unit
from fedledger.crypto.cores import map_chunks
from fedledger.crypto.paillier import DEFAULT_KEY_BITS, PublicKey, distinct_primes, keypair_from_primes
from fedledger.crypto.vector import EncryptedVector, decode_plaintexts
from fedledger.errors import CryptoError, DecryptionShareError, KeyMismatchError

# Statistical hiding of the secret share in the proof's response, and the challenge length.
_HIDING_BITS = 128
_CHALLENGE_BITS = 256
_BATCH_COEFFICIENT_BITS = 128


def _int_bytes(x: int | mpz) -> bytes:
    x = int(x)
    return x.to_bytes(max(1, (x.bit_length() + 7) // 8), "big")


def _absorb(h: hashlib._Hash, *items: int | mpz | bytes) -> None:
    for item in items:
        raw = item if isinstance(item, bytes) else _int_bytes(item)
        h.update(len(raw).to_bytes(4, "big") + raw)


@dataclass(frozen=True)
class ThresholdPublicKey:
    """What the ledger records of a threshold key: the Paillier key and the verification keys."""

    public_key: PublicKey
    threshold: int
    parties: int
    v: mpz
    verification_keys: tuple[mpz, ...]
    delta: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.threshold <= self.parties or len(self.verification_keys) != self.parties:
            raise CryptoError(
                f"threshold {self.threshold} of {self.parties} with "
                f"{len(self.verification_keys)} verification keys is inconsistent"
            )
        object.__setattr__(self, "delta", math.factorial(self.parties))

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 over every public parameter; binds proofs to this key."""
        h = hashlib.sha256(b"fedledger/threshold-paillier/v1")
        _absorb(h, self.public_key.fingerprint, self.threshold, self.parties, self.v, *self.verification_keys)
        return h.digest()

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form for the task genesis (hex integers)."""
        return {
            "paillier": self.public_key.to_dict(),
            "threshold": self.threshold,
            "parties": self.parties,
            "v": format(int(self.v), "x"),
            "verification_keys": [format(int(x), "x") for x in self.verification_keys],
        }


@dataclass(frozen=True, repr=False)
class KeyShare:
    """Committee member ``index``'s secret share of the decryption exponent."""

    index: int
    secret: mpz
    public: ThresholdPublicKey

    def __repr__(self) -> str:
        return f"KeyShare(index={self.index}, of={self.public.parties}, digest={self.digest()[:16]})"

    def digest(self) -> str:
        """SHA-256 hex of the share: what the ledger stores while the share stays private."""
        h = hashlib.sha256(b"fedledger/threshold-share/v1")
        _absorb(h, self.public.fingerprint, self.index, self.secret)
        return h.hexdigest()


@dataclass(frozen=True)
class PartialDecryption:
    """Member ``index``'s partial decryptions of one vector and the batched proof of them."""

    index: int
    values: tuple[mpz, ...]
    challenge: mpz
    response: mpz


@dataclass(frozen=True)
class ThresholdDecryption:
    """The decrypted weighted sum, which members it used, and whose partials were rejected."""

    values: npt.NDArray[np.float64]
    used: tuple[int, ...]
    rejected: dict[int, str]


def deal_threshold_key(
    *, threshold: int, parties: int, key_bits: int = DEFAULT_KEY_BITS
) -> tuple[ThresholdPublicKey, list[KeyShare]]:
    """Generate a threshold key as a trusted dealer and return its public part and the shares.

    The caller must hand share ``i`` to member ``i`` only and keep no copy.
    """
    if not 2 <= threshold <= parties:
        raise CryptoError(f"threshold must be in [2, parties], got {threshold} of {parties}")
    p, q = distinct_primes(key_bits, random_safe_prime)
    public_key, _ = keypair_from_primes(p, q)
    n = public_key.n
    m = (p - 1) // 2 * ((q - 1) // 2)
    nm = n * m
    d = m * gmpy2.invert(m, n)
    coefficients = [d] + [random_bits(int(nm.bit_length()) + _HIDING_BITS) % nm for _ in range(threshold - 1)]
    secrets_ = [evaluate_polynomial(coefficients, i, nm) for i in range(1, parties + 1)]
    nsquare = public_key.nsquare
    r = random_unit(nsquare)
    v = r * r % nsquare
    delta = math.factorial(parties)
    verification = tuple(gmpy2.powmod(v, delta * s, nsquare) for s in secrets_)
    tpk = ThresholdPublicKey(public_key, threshold, parties, v, verification)
    return tpk, [KeyShare(i + 1, s, tpk) for i, s in enumerate(secrets_)]


def _powmod_all(bases: list[mpz], *, exponent: mpz, modulus: mpz) -> list[mpz]:
    return [gmpy2.powmod(b, exponent, modulus) for b in bases]


def _batch(tpk: ThresholdPublicKey, index: int, ciphertexts: Sequence[mpz], values: Sequence[mpz]) -> tuple[mpz, mpz]:
    """Fold a vector and its partials into ``(C^4, D^2)`` with Fiat-Shamir coefficients."""
    h = hashlib.sha256(b"fedledger/threshold-batch/v1")
    _absorb(h, tpk.fingerprint, index, len(ciphertexts), *ciphertexts, *values)
    stream = hashlib.shake_256(h.digest()).digest(len(ciphertexts) * _BATCH_COEFFICIENT_BITS // 8)
    width = _BATCH_COEFFICIENT_BITS // 8
    rho = [int.from_bytes(stream[k * width:(k + 1) * width], "big") for k in range(len(ciphertexts))]
    nsquare = tpk.public_key.nsquare
    c4 = gmpy2.powmod(multi_powmod(ciphertexts, rho, nsquare), 4, nsquare)
    d2 = gmpy2.powmod(multi_powmod(values, rho, nsquare), 2, nsquare)
    return c4, d2


def _nonce_bits(tpk: ThresholdPublicKey) -> int:
    """Size of the proof's nonce: it must hide ``e * Delta * s_i`` (with ``s_i < n^2``) statistically."""
    return int(tpk.public_key.nsquare.bit_length()) + tpk.delta.bit_length() + _CHALLENGE_BITS + _HIDING_BITS


def _challenge(tpk: ThresholdPublicKey, index: int, c4: mpz, d2: mpz, a: mpz, b: mpz) -> mpz:
    h = hashlib.sha256(b"fedledger/threshold-proof/v1")
    _absorb(h, tpk.fingerprint, index, c4, d2, tpk.v, tpk.verification_keys[index - 1], a, b)
    return mpz(int.from_bytes(h.digest(), "big"))


def partial_decrypt(share: KeyShare, vector: EncryptedVector, *, workers: int | None = None) -> PartialDecryption:
    """Compute member ``share.index``'s partial decryption of ``vector`` with its proof.

    The exponentiations are spread over ``workers`` processes on this machine (None: every core;
    1: this process only), see :mod:`fedledger.crypto.cores`.
    """
    tpk = share.public
    if vector.public_key.fingerprint != tpk.public_key.fingerprint:
        raise KeyMismatchError("the vector was encrypted under a different public key")
    nsquare = tpk.public_key.nsquare
    exponent = 2 * tpk.delta * share.secret
    cts = list(vector.ciphertexts)
    values = tuple(map_chunks(partial(_powmod_all, exponent=exponent, modulus=nsquare), cts, workers=workers))
    c4, d2 = _batch(tpk, share.index, cts, values)
    r = random_bits(_nonce_bits(tpk))
    a, b = gmpy2.powmod(c4, r, nsquare), gmpy2.powmod(tpk.v, r, nsquare)
    e = _challenge(tpk, share.index, c4, d2, a, b)
    z = r + e * tpk.delta * share.secret
    return PartialDecryption(share.index, values, e, z)


def verify_partial(tpk: ThresholdPublicKey, vector: EncryptedVector, partial: PartialDecryption) -> None:
    """Raise :class:`DecryptionShareError` (naming the member) unless ``partial`` is correct."""
    i = partial.index
    if not 1 <= i <= tpk.parties:
        raise DecryptionShareError(i, f"no committee member has index {i} (1..{tpk.parties})")
    if len(partial.values) != len(vector.ciphertexts):
        raise DecryptionShareError(i, f"{len(partial.values)} partials for {len(vector.ciphertexts)} ciphertexts")
    nsquare = tpk.public_key.nsquare
    for j, x in enumerate(partial.values):
        if not tpk.public_key.is_unit(x):
            raise DecryptionShareError(i, f"partial {j} is not an invertible element modulo n^2")
    # An honest response is below 2^(r_bits + 1); bounding it also stops a forged proof from
    # making the verifier compute an arbitrarily long exponentiation.
    if not 0 <= partial.challenge < (1 << _CHALLENGE_BITS) or not 0 <= partial.response < (1 << (_nonce_bits(tpk) + 1)):
        raise DecryptionShareError(i, "proof values are out of range")
    c4, d2 = _batch(tpk, i, vector.ciphertexts, partial.values)
    e, z = partial.challenge, partial.response
    vi = tpk.verification_keys[i - 1]
    a = gmpy2.powmod(c4, z, nsquare) * gmpy2.powmod(gmpy2.invert(d2, nsquare), e, nsquare) % nsquare
    b = gmpy2.powmod(tpk.v, z, nsquare) * gmpy2.powmod(gmpy2.invert(vi, nsquare), e, nsquare) % nsquare
    if _challenge(tpk, i, c4, d2, a, b) != e:
        raise DecryptionShareError(i, "proof of correct decryption does not verify")


def combine_partials(
    tpk: ThresholdPublicKey, vector: EncryptedVector, partials: Sequence[PartialDecryption]
) -> ThresholdDecryption:
    """Verify the partials, combine ``threshold`` valid ones, and decode the weighted sum.

    Invalid partials are reported in ``rejected`` (member -> reason) and left out. Raises
    :class:`DecryptionShareError` naming a rejected member when fewer than ``threshold`` valid
    partials remain, or :class:`CryptoError` when too few were given at all.
    """
    if vector.public_key.fingerprint != tpk.public_key.fingerprint:
        raise KeyMismatchError("the vector was encrypted under a different public key")
    valid: dict[int, PartialDecryption] = {}
    rejected: dict[int, str] = {}
    for partial in partials:
        if partial.index in valid or partial.index in rejected:
            raise CryptoError(f"member {partial.index} sent more than one partial decryption")
        try:
            verify_partial(tpk, vector, partial)
        except DecryptionShareError as err:
            rejected[partial.index] = err.reason
        else:
            valid[partial.index] = partial
    if len(valid) < tpk.threshold:
        if rejected:
            holder = min(rejected)
            raise DecryptionShareError(holder, rejected[holder])
        raise CryptoError(f"{len(valid)} partial decryptions given, {tpk.threshold} needed")
    used = tuple(sorted(valid)[: tpk.threshold])
    n, nsquare = tpk.public_key.n, tpk.public_key.nsquare
    lambdas = {i: _lagrange_at_zero(i, used, tpk.delta) for i in used}
    scale = gmpy2.invert(4 * tpk.delta * tpk.delta, n)
    plaintexts = []
    for j in range(len(vector.ciphertexts)):
        acc = mpz(1)
        for i in used:
            x, lam = valid[i].values[j], lambdas[i]
            if lam < 0:
                x, lam = gmpy2.invert(x, nsquare), -lam
            acc = acc * gmpy2.powmod(x, 2 * lam, nsquare) % nsquare
        plaintexts.append((acc - 1) // n * scale % n)
    return ThresholdDecryption(decode_plaintexts(vector, plaintexts), used, rejected)


def _lagrange_at_zero(i: int, subset: Sequence[int], delta: int) -> int:
    """``Delta * prod_{j != i} j / (j - i)``: an integer because ``Delta = parties!``."""
    num, den = delta, 1
    for j in subset:
        if j != i:
            num *= j
            den *= j - i
    if num % den:
        raise CryptoError("Lagrange coefficient is not integral: member indices exceed the party count")
    return num // den
