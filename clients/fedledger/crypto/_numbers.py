"""Number theory for the crypto core: CSPRNG integers, (safe) primes and fast exponentiation."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import gmpy2
from gmpy2 import mpz


# The product of the odd primes below 2000: one gcd against it sieves a candidate (and, for safe
# primes, 2q+1) before any Miller-Rabin round is spent on it.
_SMALL_PRIMES = [p for p in range(3, 2000) if gmpy2.is_prime(p)]
_PRIMORIAL = mpz(1)
for _p in _SMALL_PRIMES:
    _PRIMORIAL *= _p

# Miller-Rabin rounds on top of gmpy2's own trial division: error below 2^-100 for the sizes used.
_MR_ROUNDS = 50


def random_below(bound: int | mpz) -> mpz:
    """Return a uniform integer in ``[0, bound)`` from the operating system's CSPRNG."""
    return mpz(secrets.randbelow(int(bound)))


def random_bits(bits: int) -> mpz:
    """Return a uniform integer in ``[0, 2**bits)`` from the operating system's CSPRNG."""
    return mpz(secrets.randbits(bits))


def random_unit(modulus: mpz) -> mpz:
    """Return a uniform element of the multiplicative group modulo ``modulus``."""
    while True:
        r = random_below(modulus)
        if r > 1 and gmpy2.gcd(r, modulus) == 1:
            return r


def random_prime(bits: int) -> mpz:
    """Return a uniform prime with exactly ``bits`` bits (top two bits set, so p*q has 2*bits)."""
    top = mpz(3) << (bits - 2)
    while True:
        candidate = random_bits(bits) | top | 1
        if gmpy2.gcd(candidate, _PRIMORIAL) == 1 and gmpy2.is_prime(candidate, _MR_ROUNDS):
            return candidate


def random_safe_prime(bits: int) -> mpz:
    """Return a prime ``p = 2p' + 1`` of exactly ``bits`` bits with ``p'`` prime.

    Threshold Paillier needs safe primes so that the squares modulo ``n^2`` form a group whose
    order has no small factors (the proofs of correct decryption rely on it).
    """
    top = mpz(3) << (bits - 3)
    while True:
        q = random_bits(bits - 1) | top | 1
        p = 2 * q + 1
        if gmpy2.gcd(q, _PRIMORIAL) != 1 or gmpy2.gcd(p, _PRIMORIAL) != 1:
            continue
        # A base-2 Fermat test on p first: it rejects almost every survivor of the sieve for the
        # price of one exponentiation, before the full tests on both numbers.
        if gmpy2.powmod(2, p - 1, p) != 1:
            continue
        if gmpy2.is_prime(q, _MR_ROUNDS) and gmpy2.is_prime(p, _MR_ROUNDS):
            return p


def evaluate_polynomial(coefficients: Sequence[mpz], x: int, modulus: mpz) -> mpz:
    """Return ``sum(a_k * x**k) % modulus`` for ``coefficients = [a_0, a_1, ...]`` (Horner)."""
    acc = mpz(0)
    for a in reversed(coefficients):
        acc = (acc * x + a) % modulus
    return acc


def multi_powmod(bases: Sequence[mpz], exponents: Sequence[int | mpz], modulus: mpz) -> mpz:
    """Return ``prod(b**e for b, e in zip(bases, exponents)) % modulus`` (Pippenger's buckets).

    For many bases with short exponents (the batched proofs use 128-bit ones) this costs about
    ``(bits / w) * (len(bases) + 2**w)`` multiplications instead of ``len(bases) * bits``.
    """
    if len(bases) != len(exponents):
        raise ValueError(f"{len(bases)} bases but {len(exponents)} exponents")
    exps = [mpz(e) for e in exponents]
    if any(e < 0 for e in exps):
        raise ValueError("multi_powmod takes non-negative exponents only")
    bits = max((int(e.bit_length()) for e in exps), default=0)
    if bits == 0:
        return mpz(1) % modulus
    window = 1
    while (1 << (window + 1)) < len(bases) and window < 12:
        window += 1
    mask = (1 << window) - 1
    result = mpz(1)
    for shift in range(((bits + window - 1) // window - 1) * window, -1, -window):
        for _ in range(window):
            result = result * result % modulus
        buckets: dict[int, mpz] = {}
        for base, exp in zip(bases, exps):
            digit = int((exp >> shift) & mask)
            if digit:
                buckets[digit] = buckets[digit] * base % modulus if digit in buckets else base
        # Sum of digit * bucket[digit] by the running-product trick: 2 * 2**w multiplications.
        running = mpz(1)
        total = mpz(1)
        for digit in range(mask, 0, -1):
            if digit in buckets:
                running = running * buckets[digit] % modulus
            total = total * running % modulus
        result = result * total % modulus
    return result


class FixedBasePowmod:
    """``base**e % modulus`` for one fixed base and many exponents, by a byte-indexed table.

    The table holds ``base**(d * 256**j)`` for every byte value ``d`` and byte position ``j``,
    so an exponentiation costs one multiplication per nonzero exponent byte and no squarings —
    about 14x fewer operations than a plain ``powmod`` with a 1024-bit exponent.
    """

    def __init__(self, base: mpz, modulus: mpz, *, exponent_bits: int) -> None:
        self.modulus = mpz(modulus)
        self.exponent_bits = exponent_bits
        positions = (exponent_bits + 7) // 8
        self._table: list[list[mpz]] = []
        power = mpz(base) % self.modulus
        for _ in range(positions):
            row = [mpz(1), power]
            for _ in range(2, 256):
                row.append(row[-1] * power % self.modulus)
            self._table.append(row)
            power = row[-1] * power % self.modulus
        self._positions = positions

    def __call__(self, exponent: int | mpz) -> mpz:
        e = int(exponent)
        if e < 0 or e.bit_length() > self.exponent_bits:
            raise ValueError(f"exponent must be in [0, 2**{self.exponent_bits})")
        result = mpz(1)
        for j, byte in enumerate(e.to_bytes(self._positions, "little")):
            if byte:
                result = result * self._table[j][byte] % self.modulus
        return result
