"""ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381, suite 0x03): the verifiable randomness behind sortition.

A company proves ``pi = prove(secret_key, alpha)``; anyone holding its public key checks the proof
with ``verify`` and gets the same 64-byte output ``beta`` the prover got from ``proof_to_hash``.
Nobody, the prover included, can find a second valid output for the same key and input.

Every scalar multiplication and point addition runs in libsodium (through PyNaCl). The only
pure-Python curve code is what libsodium cannot do: the try-and-increment hash-to-curve of
RFC 9381 section 5.4.1.1 must decode arbitrary 32-byte strings as RFC 8032 point encodings and
multiply them by the cofactor 8, and libsodium refuses points outside the prime-order subgroup.
That code decodes, doubles and encodes affine points with integers mod 2^255 - 19 and touches no
secret.

Verification follows RFC 9381 section 5.3 with ``validate_key=True``: a public key that is a
small-order point is rejected, as is a proof whose scalar ``s`` is not below the group order.

Deliberate strictness (the Go chaincode verifier must do exactly the same, or the two will disagree
on which proofs are valid): the proof's ``Gamma`` and the public key must be non-identity points of
the prime-order subgroup. RFC 9381 only asks that ``Gamma`` decode to some curve point and that the
key not be of small order, but libsodium refuses to multiply points carrying a torsion component.
Nothing honest is lost: ``Y = x*B`` and ``Gamma = x*H`` with ``H`` already multiplied by the cofactor
always lie in the subgroup and are never the identity, and ``beta`` (a hash of ``8*Gamma``) is
unchanged for every proof that is accepted. ``proof_to_hash`` applies the same check to ``Gamma``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from nacl import bindings as sodium
from nacl import exceptions as sodium_errors

from fedledger.errors import VrfError

SECRET_KEY_BYTES = 32
PUBLIC_KEY_BYTES = 32
PROOF_BYTES = 80
OUTPUT_BYTES = 64
# The order L of the prime-order subgroup of edwards25519 (RFC 8032 section 5.1).
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493

_SUITE = b"\x03"
_POINT_BYTES = 32
_CHALLENGE_BYTES = 16  # cLen: RFC 9381 section 5.5 truncates the challenge to 128 bits.
_SCALAR_BYTES = 32

# edwards25519 over GF(p): -x^2 + y^2 = 1 + d x^2 y^2 (RFC 8032 section 5.1).
_P = 2**255 - 19
_D = (-121665 * pow(121666, -1, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_IDENTITY = (0, 1)
_IDENTITY_BYTES = b"\x01" + bytes(31)
_ZERO_SCALAR = bytes(_SCALAR_BYTES)

_Point = tuple[int, int]


@dataclass(frozen=True, repr=False)
class VrfKeyPair:
    """A company's VRF key: a 32-byte RFC 8032 seed and the matching 32-byte public key."""

    secret_key: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        _require_length(self.secret_key, SECRET_KEY_BYTES, "secret key")
        _require_length(self.public_key, PUBLIC_KEY_BYTES, "public key")
        if not hmac.compare_digest(_public_key_of(self.secret_key), self.public_key):
            raise VrfError("public key does not belong to the secret key")

    def __repr__(self) -> str:
        # Never the secret: key pairs end up in logs and tracebacks.
        return f"VrfKeyPair(public_key={self.public_key.hex()})"

    @classmethod
    def generate(cls) -> VrfKeyPair:
        """Draw a fresh key pair from the operating system's CSPRNG."""
        return cls.from_secret_key(os.urandom(SECRET_KEY_BYTES))

    @classmethod
    def from_secret_key(cls, sk: bytes) -> VrfKeyPair:
        """Rebuild the key pair of a stored 32-byte secret key.

        Raises
        ------
        VrfError
            If ``sk`` is not 32 bytes.
        """
        _require_length(sk, SECRET_KEY_BYTES, "secret key")
        secret_key = bytes(sk)
        return cls(secret_key, _public_key_of(secret_key))


def prove(secret_key: bytes, alpha: bytes) -> bytes:
    """Prove the VRF output of ``secret_key`` on ``alpha`` (RFC 9381 section 5.1).

    Parameters
    ----------
    secret_key
        The 32-byte secret key (an RFC 8032 seed).
    alpha
        The VRF input, any length.

    Returns
    -------
    bytes
        The 80-byte proof ``pi = Gamma || c || s``; ``proof_to_hash(pi)`` is the output.

    Raises
    ------
    VrfError
        If ``secret_key`` is not 32 bytes.
    """
    _require_length(secret_key, SECRET_KEY_BYTES, "secret key")
    alpha = _require_bytes(alpha, "alpha")
    x, nonce_prefix = _expand_secret_key(bytes(secret_key))
    public_key = _public_key_of(bytes(secret_key))
    h = _encode_to_curve(public_key, alpha)
    gamma = _multiply(x, h)
    # Nonce per RFC 9381 section 5.4.2.2: deterministic, as in RFC 8032 signing.
    k = sodium.crypto_core_ed25519_scalar_reduce(hashlib.sha512(nonce_prefix + h).digest())
    c = _challenge(public_key, h, gamma, _multiply_base(k), _multiply(k, h))
    s = sodium.crypto_core_ed25519_scalar_add(k, sodium.crypto_core_ed25519_scalar_mul(_widen(c), x))
    return gamma + c + s


def proof_to_hash(pi: bytes) -> bytes:
    """Return the 64-byte VRF output ``beta`` of a proof (RFC 9381 section 5.2).

    This does not verify the proof; use ``verify`` for proofs from anyone else.

    Raises
    ------
    VrfError
        If ``pi`` is not 80 bytes, ``Gamma`` is not a point of the prime-order subgroup, or ``s``
        is not below the group order.
    """
    gamma, _, _ = _decode_proof(pi)
    return _gamma_to_hash(gamma)


def verify(public_key: bytes, alpha: bytes, pi: bytes) -> bytes:
    """Verify ``pi`` on ``alpha`` under ``public_key`` (RFC 9381 section 5.3, validate_key=True).

    Parameters
    ----------
    public_key
        The prover's 32-byte public key.
    alpha
        The VRF input the proof claims to be for.
    pi
        The 80-byte proof.

    Returns
    -------
    bytes
        The 64-byte VRF output ``beta``.

    Raises
    ------
    VrfError
        Saying what is wrong: a malformed or small-order public key, a malformed proof, or a proof
        that does not verify.
    """
    _require_length(public_key, PUBLIC_KEY_BYTES, "public key")
    alpha = _require_bytes(alpha, "alpha")
    y = bytes(public_key)
    _check_point(y, "public key")
    gamma, c, s = _decode_proof(pi)
    h = _encode_to_curve(y, alpha)
    c_wide = _widen(c)
    u = sodium.crypto_core_ed25519_sub(_multiply_base(s), _multiply(c_wide, y))
    v = sodium.crypto_core_ed25519_sub(_multiply(s, h), _multiply(c_wide, gamma))
    if not hmac.compare_digest(_challenge(y, h, gamma, u, v), c):
        raise VrfError("proof does not verify")
    return _gamma_to_hash(gamma)


def _public_key_of(secret_key: bytes) -> bytes:
    public_key, _ = sodium.crypto_sign_seed_keypair(secret_key)
    return public_key


def _expand_secret_key(secret_key: bytes) -> tuple[bytes, bytes]:
    """Secret scalar ``x`` (reduced mod L) and the nonce prefix, both from SHA-512(SK) (RFC 8032)."""
    digest = hashlib.sha512(secret_key).digest()
    clamped = bytearray(digest[:32])
    clamped[0] &= 248
    clamped[31] &= 127
    clamped[31] |= 64
    # x*P is unchanged by reducing x mod L for every P in the subgroup, and libsodium's scalar
    # arithmetic wants reduced operands.
    x = sodium.crypto_core_ed25519_scalar_reduce(bytes(clamped) + bytes(32))
    return x, digest[32:]


def _encode_to_curve(salt: bytes, alpha: bytes) -> bytes:
    """Try-and-increment hash to the prime-order subgroup (RFC 9381 section 5.4.1.1)."""
    for ctr in range(256):
        digest = hashlib.sha512(_SUITE + b"\x01" + salt + alpha + bytes([ctr]) + b"\x00").digest()
        point = _decode(digest[:_POINT_BYTES])
        if point is None:
            continue
        h = _times_cofactor(point)
        if h != _IDENTITY:
            return _encode(h)
    # Each try fails with probability about 1/2; 256 failures in a row do not happen.
    raise VrfError("hash to curve failed after 256 attempts")


def _challenge(*points: bytes) -> bytes:
    """The 16-byte challenge over the five points (RFC 9381 section 5.4.3)."""
    return hashlib.sha512(_SUITE + b"\x02" + b"".join(points) + b"\x00").digest()[:_CHALLENGE_BYTES]


def _decode_proof(pi: bytes) -> tuple[bytes, bytes, bytes]:
    """Split ``pi`` into ``Gamma``, ``c``, ``s`` and validate each (RFC 9381 section 5.4.4)."""
    _require_length(pi, PROOF_BYTES, "proof")
    pi = bytes(pi)
    gamma = pi[:_POINT_BYTES]
    c = pi[_POINT_BYTES : _POINT_BYTES + _CHALLENGE_BYTES]
    s = pi[_POINT_BYTES + _CHALLENGE_BYTES :]
    _check_point(gamma, "proof's Gamma")
    if int.from_bytes(s, "little") >= GROUP_ORDER:
        raise VrfError("proof's scalar s is not below the group order")
    return gamma, c, s


def _gamma_to_hash(gamma: bytes) -> bytes:
    eight_gamma = _multiply(_widen(b"\x08"), gamma)
    return hashlib.sha512(_SUITE + b"\x03" + eight_gamma + b"\x00").digest()


def _check_point(encoding: bytes, what: str) -> None:
    """Accept only canonical encodings of non-identity points of the prime-order subgroup."""
    point = _decode(encoding)
    if point is None:
        raise VrfError(f"{what} is not a canonical encoding of a curve point")
    if _times_cofactor(point) == _IDENTITY:
        raise VrfError(f"{what} is a small-order point")
    if not sodium.crypto_core_ed25519_is_valid_point(encoding):
        raise VrfError(f"{what} is not in the prime-order subgroup")


def _multiply(scalar: bytes, point: bytes) -> bytes:
    """``scalar * point`` for a subgroup point; libsodium refuses a zero product, so 0 is done here."""
    if scalar == _ZERO_SCALAR:
        return _IDENTITY_BYTES
    try:
        return sodium.crypto_scalarmult_ed25519_noclamp(scalar, point)
    except sodium_errors.CryptoError as err:
        raise VrfError("libsodium refused a scalar multiplication") from err


def _multiply_base(scalar: bytes) -> bytes:
    if scalar == _ZERO_SCALAR:
        return _IDENTITY_BYTES
    try:
        return sodium.crypto_scalarmult_ed25519_base_noclamp(scalar)
    except sodium_errors.CryptoError as err:
        raise VrfError("libsodium refused a scalar multiplication") from err


def _widen(little_endian: bytes) -> bytes:
    """Zero-pad a short little-endian integer to a 32-byte scalar."""
    return little_endian + bytes(_SCALAR_BYTES - len(little_endian))


def _require_bytes(value: bytes, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise VrfError(f"{what} must be bytes, got {type(value).__name__}")
    return bytes(value)


def _require_length(value: bytes, length: int, what: str) -> None:
    value = _require_bytes(value, what)
    if len(value) != length:
        raise VrfError(f"{what} is {len(value)} bytes, expected {length}")


# Minimal affine edwards25519 arithmetic, only for hash-to-curve and point validation.


def _decode(encoding: bytes) -> _Point | None:
    """RFC 8032 section 5.1.3 decoding; None for non-canonical or off-curve encodings."""
    packed = int.from_bytes(encoding, "little")
    y = packed & ((1 << 255) - 1)
    sign = packed >> 255
    if y >= _P:
        return None
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    # x = sqrt(u/v) via the single exponentiation of RFC 8032 (p = 5 mod 8).
    x = (u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P)) % _P
    if (v * x * x - u) % _P != 0:
        x = (x * _SQRT_M1) % _P
        if (v * x * x - u) % _P != 0:
            return None
    if x == 0 and sign == 1:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


def _add(p: _Point, q: _Point) -> _Point:
    # The unified addition law is complete on edwards25519 (d is not a square): no special cases.
    (x1, y1), (x2, y2) = p, q
    t = (_D * x1 * x2 * y1 * y2) % _P
    x3 = (x1 * y2 + y1 * x2) * pow(1 + t, -1, _P)
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, -1, _P)
    return x3 % _P, y3 % _P


def _times_cofactor(point: _Point) -> _Point:
    for _ in range(3):
        point = _add(point, point)
    return point


def _encode(point: _Point) -> bytes:
    x, y = point
    return (y | ((x & 1) << 255)).to_bytes(_POINT_BYTES, "little")
