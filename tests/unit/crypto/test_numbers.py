"""Unit tests of the number-theory helpers."""

from __future__ import annotations

import gmpy2
import pytest
from gmpy2 import mpz
from hypothesis import given
from hypothesis import strategies as st

from fedledger.crypto._numbers import FixedBasePowmod, multi_powmod, random_prime, random_safe_prime

MODULUS = mpz(2**127 - 1) * mpz(2**89 - 1)


@given(st.lists(st.tuples(st.integers(1, int(MODULUS) - 1), st.integers(0, 2**140)), min_size=1, max_size=40))
def test_multi_powmod_equals_product_of_powers(pairs: list[tuple[int, int]]) -> None:
    bases, exps = [mpz(b) for b, _ in pairs], [e for _, e in pairs]

    expected = mpz(1)
    for b, e in pairs:
        expected = expected * gmpy2.powmod(b, e, MODULUS) % MODULUS

    assert multi_powmod(bases, exps, MODULUS) == expected


def test_multi_powmod_refuses_mismatched_or_negative_inputs() -> None:
    with pytest.raises(ValueError, match="2 bases but 1"):
        multi_powmod([mpz(2), mpz(3)], [1], MODULUS)
    with pytest.raises(ValueError, match="non-negative"):
        multi_powmod([mpz(2)], [-1], MODULUS)


@given(st.integers(0, 2**200 - 1))
def test_fixed_base_table_equals_powmod(exponent: int) -> None:
    table = FixedBasePowmod(mpz(3), MODULUS, exponent_bits=200)

    assert table(exponent) == gmpy2.powmod(3, exponent, MODULUS)


def test_fixed_base_table_refuses_exponents_past_its_size() -> None:
    table = FixedBasePowmod(mpz(3), MODULUS, exponent_bits=16)

    with pytest.raises(ValueError, match="exponent"):
        table(2**16)


def test_primes_have_the_requested_size_and_safe_primes_are_safe() -> None:
    p = random_prime(200)
    s = random_safe_prime(160)

    assert p.bit_length() == 200 and gmpy2.is_prime(p)
    assert s.bit_length() == 160 and gmpy2.is_prime(s) and gmpy2.is_prime((s - 1) // 2)
