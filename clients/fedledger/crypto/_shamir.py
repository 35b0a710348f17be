"""Shamir sharing over a prime field and over the integers, for the dealerless key generation.

Members are numbered ``1..parties`` and a member's share is the sharing polynomial evaluated at its
number. Over a prime field (BGW) the secret is the polynomial's constant term; over the integers
(Rabin; Damgard-Thorbek's linear integer secret sharing) it is ``Delta * secret`` with
``Delta = parties!``, which makes every Lagrange coefficient ``Delta * lambda_j`` an integer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache

import gmpy2
from gmpy2 import mpz

from fedledger.crypto._numbers import evaluate_polynomial, random_below
from fedledger.errors import CryptoError


@lru_cache(maxsize=16)
def field_prime(bits: int) -> mpz:
    """Return the least prime above ``2**bits`` (public, the same for every member).

    ``bits`` is rounded up to a multiple of 64 so that nearby sizes share one prime (and its cost).
    """
    rounded = -(-bits // 64) * 64
    return mpz(gmpy2.next_prime(mpz(1) << rounded))


def share(secret: int | mpz, *, degree: int, parties: int, prime: mpz) -> list[mpz]:
    """Return the shares ``f(1), ..., f(parties)`` of a random ``f`` of ``degree`` with ``f(0) = secret``."""
    coefficients = [mpz(secret) % prime] + [random_below(prime) for _ in range(degree)]
    return [evaluate_polynomial(coefficients, x, prime) for x in range(1, parties + 1)]


@lru_cache(maxsize=64)
def lagrange_at_zero(points: tuple[int, ...], prime: mpz) -> tuple[mpz, ...]:
    """Return ``lambda_j = prod_{k != j} k / (k - j) mod prime`` for each ``j`` in ``points``."""
    coefficients = []
    for j in points:
        num, den = mpz(1), mpz(1)
        for k in points:
            if k != j:
                num = num * k % prime
                den = den * (k - j) % prime
        coefficients.append(num * gmpy2.invert(den, prime) % prime)
    return tuple(coefficients)


def interpolate_at_zero(shares: Mapping[int, mpz], prime: mpz) -> mpz:
    """Return ``f(0)`` from shares ``{x: f(x)}`` of a polynomial of degree below ``len(shares)``."""
    points = tuple(sorted(shares))
    lambdas = lagrange_at_zero(points, prime)
    return sum((lam * shares[x] for lam, x in zip(lambdas, points)), mpz(0)) % prime


def integer_coefficient_bound(secret_bound: int | mpz, *, parties: int, statistical_bits: int) -> mpz:
    """Range ``[0, 2**sigma * Delta**2 * B)`` of the random coefficients for secrets ``|s| <= B``.

    For any ``t < parties`` shares, changing the secret from ``s`` to ``s'`` can be absorbed by
    adding ``(s' - s) * h(x)`` with ``h(x) = Delta * prod_{j in T} (1 - x/j)``, an integer polynomial
    with coefficients below ``Delta * (t + 1)``; a range ``2**sigma * Delta**2 * B`` (``Delta`` is at
    least ``2t(t+1)``) keeps the two share distributions within ``2**-sigma`` of each other.
    """
    delta = math.factorial(parties)
    return (mpz(1) << statistical_bits) * delta * delta * mpz(secret_bound)


def share_integer(
    secret: int | mpz, *, degree: int, parties: int, coefficient_bound: int | mpz
) -> list[mpz]:
    """Return integer shares ``g(1), ..., g(parties)`` with ``g(0) = Delta * secret``.

    The other coefficients are uniform in ``[0, coefficient_bound)``; see
    :func:`integer_coefficient_bound` for the range that hides the secret.
    """
    delta = math.factorial(parties)
    coefficients = [delta * mpz(secret)] + [random_below(coefficient_bound) for _ in range(degree)]
    shares = []
    for x in range(1, parties + 1):
        acc = mpz(0)
        for a in reversed(coefficients):
            acc = acc * x + a
        shares.append(acc)
    return shares


def integer_lagrange_at_zero(j: int, subset: Sequence[int], parties: int) -> int:
    """``Delta * prod_{k != j} k / (k - j)`` for ``Delta = parties!``: always an integer."""
    num, den = math.factorial(parties), 1
    for k in subset:
        if k != j:
            num *= k
            den *= k - j
    if num % den:
        raise CryptoError(f"member numbers {list(subset)} exceed the party count {parties}")
    return num // den
