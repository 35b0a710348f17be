"""Opening a ciphertext: its plaintext and its nonce, which anyone holding the public key can check.

Under escrow custody one master decrypts alone. Paillier lets it prove it did so honestly without
any zero-knowledge machinery: with the factors it recovers each ciphertext's nonce r (c = (1+mn) r^n
mod n^2 has r = (c mod n)^(n^-1 mod phi(n)) mod n), and whoever receives (m, r) re-encrypts and
compares. A wrong plaintext cannot be opened to the ciphertext, so a master cannot hand the leader
a different average than the aggregate the ledger records. An opening reveals only what the
decryption itself reveals (the aggregate's plaintext) plus its nonce, which is useless to anyone
once the plaintext is known.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import gmpy2
import numpy as np
import numpy.typing as npt
from gmpy2 import mpz

from fedledger.crypto.paillier import PrivateKey
from fedledger.crypto.vector import EncryptedVector, decode_plaintexts
from fedledger.errors import CryptoError, MalformedCiphertextError


@dataclass(frozen=True)
class Opening:
    """The plaintexts and nonces of every ciphertext of one vector."""

    plaintexts: tuple[mpz, ...]
    nonces: tuple[mpz, ...]


def open_vector(private_key: PrivateKey, vector: EncryptedVector) -> Opening:
    """Decrypt ``vector`` and recover each ciphertext's nonce, so the decryption can be checked."""
    if vector.public_key.fingerprint != private_key.public_key.fingerprint:
        raise CryptoError("the vector was encrypted under a different public key")
    n = private_key.public_key.n
    phi = (private_key.p - 1) * (private_key.q - 1)
    n_inverse = gmpy2.invert(n, phi)
    plaintexts = tuple(private_key.raw_decrypt(c) for c in vector.ciphertexts)
    nonces = tuple(gmpy2.powmod(c % n, n_inverse, n) for c in vector.ciphertexts)
    return Opening(plaintexts, nonces)


def check_opening(vector: EncryptedVector, opening: Opening) -> npt.NDArray[np.float64]:
    """The weighted sum ``opening`` claims for ``vector``, once every ciphertext re-encrypts to itself.

    Raises :class:`CryptoError` naming the first ciphertext whose opening does not match.
    """
    if len(opening.plaintexts) != len(vector.ciphertexts) or len(opening.nonces) != len(vector.ciphertexts):
        raise CryptoError(f"the opening has {len(opening.plaintexts)} plaintexts for {len(vector.ciphertexts)} "
                          "ciphertexts")
    n, nsquare = vector.public_key.n, vector.public_key.nsquare
    for i, (c, m, r) in enumerate(zip(vector.ciphertexts, opening.plaintexts, opening.nonces)):
        if not (0 <= m < n and 0 < r < n) or (1 + m * n) * gmpy2.powmod(r, n, nsquare) % nsquare != c:
            raise CryptoError(f"ciphertext {i} does not open to the plaintext given: the decryption is wrong")
    return decode_plaintexts(vector, list(opening.plaintexts))


def dump_opening(opening: Opening) -> bytes:
    """Canonical JSON: ``{"nonces": [hex...], "plaintexts": [hex...]}``."""
    return json.dumps({"nonces": [format(int(r), "x") for r in opening.nonces],
                       "plaintexts": [format(int(m), "x") for m in opening.plaintexts]},
                      sort_keys=True, separators=(",", ":")).encode()


def load_opening(data: bytes) -> Opening:
    """Parse :func:`dump_opening`'s bytes strictly."""
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict) or set(raw) != {"nonces", "plaintexts"}:
            raise ValueError("expected exactly the keys nonces and plaintexts")
        return Opening(tuple(mpz(str(m), 16) for m in raw["plaintexts"]), tuple(mpz(str(r), 16) for r in raw["nonces"]))
    except (ValueError, TypeError) as err:
        raise MalformedCiphertextError(f"the decryption opening does not parse: {err}") from None
