"""Paillier keys, raw integer encryption and decryption, and the precomputed randomness pool.

The layer under packed vectors, in python-paillier's shape: ``raw_encrypt`` works on integers in
``[0, n)``; :mod:`fedledger.crypto.vector` encodes model updates into such integers.

Encryption is ``c = (1 + m*n) * r^n mod n^2`` (generator ``g = n + 1``). The costly factor
``r^n`` does not depend on the message, so :class:`RandomnessPool` computes it ahead of a round,
in the style of Damgard-Jurik-Nielsen: the key carries ``h_s = h^n mod n^2`` for a random square
``h = -x^2 mod n``, and ``r^n`` is taken as ``h_s^a`` with a short random exponent ``a`` of
``|n|/2`` bits (DJN's recommendation), evaluated with a fixed-base table. Online encryption is then
one multiplication modulo ``n^2``.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import gmpy2
from gmpy2 import mpz

from fedledger.crypto._numbers import FixedBasePowmod, random_bits, random_prime, random_unit
from fedledger.crypto.cores import available_cores, resolve_workers, worker_pool
from fedledger.errors import CryptoError

DEFAULT_KEY_BITS = 2048
SUPPORTED_KEY_BITS = (1024, 2048, 3072, 4096)
# Below 1024 bits a key is only good for fast tests; it is allowed, never a default.
MIN_TEST_KEY_BITS = 256


@dataclass(frozen=True)
class PublicKey:
    """A Paillier public key: the modulus ``n`` and the DJN base ``hs`` for fast randomness."""

    n: mpz
    hs: mpz
    nsquare: mpz = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", mpz(self.n))
        object.__setattr__(self, "hs", mpz(self.hs))
        object.__setattr__(self, "nsquare", self.n * self.n)
        if self.n < 3 or not (0 < self.hs < self.nsquare):
            raise CryptoError("Paillier public key is malformed (n < 3 or hs outside (0, n^2))")

    @property
    def key_bits(self) -> int:
        """Bit length of the modulus ``n``."""
        return int(self.n.bit_length())

    @property
    def ciphertext_bytes(self) -> int:
        """Length of one serialized ciphertext (an element of ``Z_{n^2}``)."""
        return (int(self.nsquare.bit_length()) + 7) // 8

    @property
    def short_exponent_bits(self) -> int:
        """Bit length of the DJN exponent ``a`` in ``r^n = hs^a``."""
        return self.key_bits // 2

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 over the key's parameters: names the key in serialized ciphertexts."""
        nb = (self.key_bits + 7) // 8
        data = b"fedledger/paillier-public-key/v1" + int(self.n).to_bytes(nb, "big")
        return hashlib.sha256(data + int(self.hs).to_bytes(2 * nb, "big")).digest()

    def to_dict(self) -> dict[str, str]:
        """Return the key as JSON-ready hex strings (what the task genesis records)."""
        return {"n": format(int(self.n), "x"), "hs": format(int(self.hs), "x")}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> PublicKey:
        """Parse :meth:`to_dict` output, rejecting anything that is not two hex integers."""
        try:
            return cls(n=mpz(int(data["n"], 16)), hs=mpz(int(data["hs"], 16)))
        except (KeyError, TypeError, ValueError) as err:
            raise CryptoError(f"Paillier public key is malformed: {err}") from err

    def raw_encrypt(self, plaintext: int | mpz, *, r_n: mpz | None = None) -> mpz:
        """Encrypt an integer in ``[0, n)``; ``r_n`` is a precomputed ``r^n`` from a pool."""
        m = mpz(plaintext)
        if not 0 <= m < self.n:
            raise CryptoError("plaintext must be an integer in [0, n)")
        if r_n is None:
            r_n = gmpy2.powmod(self.hs, random_bits(self.short_exponent_bits), self.nsquare)
        # (1 + n)^m = 1 + m*n (mod n^2): no exponentiation for the message part.
        return (1 + m * self.n) * r_n % self.nsquare

    def is_unit(self, x: mpz) -> bool:
        """Whether ``x`` is an invertible element of ``Z_{n^2}``, as every ciphertext must be.

        A non-unit would also reveal a factor of ``n``, so parsers reject it.
        """
        return bool(0 < x < self.nsquare and gmpy2.gcd(x, self.n) == 1)


@dataclass(frozen=True, repr=False)
class PrivateKey:
    """A Paillier private key (the factors of ``n``), decrypting with the CRT."""

    public_key: PublicKey
    p: mpz
    q: mpz

    def __post_init__(self) -> None:
        p, q = mpz(self.p), mpz(self.q)
        if p * q != self.public_key.n or p == q:
            raise CryptoError("private key factors do not match the public key")
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "q", q)

    def __repr__(self) -> str:
        # Never print the factors: the repr of a secret must be safe to log.
        return f"PrivateKey(key_bits={self.public_key.key_bits}, fingerprint={self.public_key.fingerprint[:8].hex()})"

    @cached_property
    def _crt(self) -> tuple[mpz, mpz, mpz, mpz, mpz]:
        # Per-key constants of CRT decryption, computed once on first use.
        p, q = self.p, self.q
        psq, qsq = p * p, q * q
        g = self.public_key.n + 1
        hp = gmpy2.invert((gmpy2.powmod(g, p - 1, psq) - 1) // p, p)
        hq = gmpy2.invert((gmpy2.powmod(g, q - 1, qsq) - 1) // q, q)
        return psq, qsq, hp, hq, gmpy2.invert(p, q)

    def raw_decrypt(self, ciphertext: mpz) -> mpz:
        """Decrypt one ciphertext to its integer plaintext in ``[0, n)``."""
        psq, qsq, hp, hq, p_inv = self._crt
        p, q = self.p, self.q
        mp = (gmpy2.powmod(ciphertext, p - 1, psq) - 1) // p * hp % p
        mq = (gmpy2.powmod(ciphertext, q - 1, qsq) - 1) // q * hq % q
        # Garner's recombination of m mod p and m mod q.
        return mp + ((mq - mp) * p_inv % q) * p


def generate_keypair(*, key_bits: int = DEFAULT_KEY_BITS) -> tuple[PublicKey, PrivateKey]:
    """Generate a Paillier key pair with a modulus of exactly ``key_bits`` bits.

    Parameters
    ----------
    key_bits
        2048 (the default, ~112-bit security) or 3072 (~128-bit); 256..1023 only for tests.
    """
    p, q = distinct_primes(key_bits, random_prime)
    return keypair_from_primes(p, q)


def keypair_from_primes(p: mpz, q: mpz) -> tuple[PublicKey, PrivateKey]:
    """Build the key pair for given primes (with a fresh DJN base)."""
    n = p * q
    x = random_unit(n)
    hs = gmpy2.powmod(n - x * x % n, n, n * n)
    public_key = PublicKey(n=n, hs=hs)
    return public_key, PrivateKey(public_key=public_key, p=p, q=q)


def distinct_primes(key_bits: int, make_prime: Callable[[int], mpz]) -> tuple[mpz, mpz]:
    """Return two distinct primes from ``make_prime`` whose product has exactly ``key_bits`` bits."""
    if key_bits < MIN_TEST_KEY_BITS or key_bits % 2:
        raise CryptoError(f"key_bits must be an even number >= {MIN_TEST_KEY_BITS}, got {key_bits}")
    while True:
        p, q = make_prime(key_bits // 2), make_prime(key_bits // 2)
        if p != q and (p * q).bit_length() == key_bits:
            return p, q


@lru_cache(maxsize=4)
def _hs_table(n: int, hs: int, exponent_bits: int) -> FixedBasePowmod:
    """The fixed-base table of a key's ``hs`` (about 17 MB at 2048 bits), built once per process:
    building it costs about as much as the ``r^n`` values of a 20k-parameter update."""
    return FixedBasePowmod(mpz(hs), mpz(n) * mpz(n), exponent_bits=exponent_bits)


def _fill_chunk(n: int, hs: int, exponent_bits: int, count: int) -> list[mpz]:
    table = _hs_table(n, hs, exponent_bits)
    return [table(random_bits(exponent_bits)) for _ in range(count)]


class RandomnessPool:
    """Precomputed ``r^n mod n^2`` values, filled ahead of a round or in the background.

    Each value is used for exactly one ciphertext and then discarded. ``take`` never blocks on an
    empty pool: it computes what is missing on the spot (slower, never wrong).
    """

    def __init__(self, public_key: PublicKey) -> None:
        self.public_key = public_key
        self._values: deque[mpz] = deque()
        self._pending: list[Future[list[mpz]]] = []

    def __len__(self) -> int:
        return len(self._values)

    def _local_table(self) -> FixedBasePowmod:
        pk = self.public_key
        return _hs_table(int(pk.n), int(pk.hs), pk.short_exponent_bits)

    def fill(self, count: int, *, workers: int | None = None) -> None:
        """Add ``count`` values now, on ``workers`` processes (None: every core; 1: this process)."""
        workers = resolve_workers(workers, count)
        if workers <= 1:
            table = self._local_table()
            bits = self.public_key.short_exponent_bits
            self._values.extend(table(random_bits(bits)) for _ in range(count))
            return
        for future in self.fill_in_background(count, workers=workers):
            self._values.extend(future.result())
            self._pending.remove(future)

    def fill_in_background(self, count: int, *, workers: int | None = None) -> list[Future[list[mpz]]]:
        """Start computing ``count`` values on the shared worker processes; ``take`` collects them."""
        workers = workers or available_cores()
        executor = worker_pool(workers)
        pk = self.public_key
        chunk = -(-count // workers)
        futures = [
            executor.submit(_fill_chunk, int(pk.n), int(pk.hs), pk.short_exponent_bits, size)
            for size in (min(chunk, count - i) for i in range(0, count, chunk))
        ]
        self._pending.extend(futures)
        return futures

    def take(self, count: int) -> list[mpz]:
        """Remove and return ``count`` values, waiting for background work before computing more."""
        while len(self._values) < count and self._pending:
            self._values.extend(self._pending.pop(0).result())
        missing = count - len(self._values)
        if missing > 0:
            self.fill(missing)
        return [self._values.popleft() for _ in range(count)]

    def close(self) -> None:
        """Drop the values not yet computed (the shared worker processes stay for the next user)."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()

    def __enter__(self) -> RandomnessPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
