"""Unit tests of Shamir sharing over a prime field and over the integers (the dealerless key's tools)."""

from __future__ import annotations

import itertools
import math

import pytest
from gmpy2 import mpz
from hypothesis import given
from hypothesis import strategies as st

from fedledger.crypto._shamir import (
    field_prime,
    integer_coefficient_bound,
    integer_lagrange_at_zero,
    interpolate_at_zero,
    share,
    share_integer,
)
from fedledger.errors import CryptoError

PRIME = field_prime(320)


@given(secret=st.integers(0, int(PRIME) - 1), degree=st.integers(0, 3), extra=st.integers(0, 3))
def test_any_degree_plus_one_shares_rebuild_the_secret(secret: int, degree: int, extra: int) -> None:
    parties = degree + 1 + extra
    shares = share(secret, degree=degree, parties=parties, prime=PRIME)

    for subset in itertools.combinations(range(1, parties + 1), degree + 1):
        assert interpolate_at_zero({x: shares[x - 1] for x in subset}, PRIME) == secret


@given(a=st.integers(0, 2**100), b=st.integers(0, 2**100))
def test_products_of_degree_t_shares_open_with_2t_plus_1_shares(a: int, b: int) -> None:
    # BGW with t = 1, n = 3: the local products are shares of a degree-2 polynomial.
    sa, sb = share(a, degree=1, parties=3, prime=PRIME), share(b, degree=1, parties=3, prime=PRIME)

    assert interpolate_at_zero({x: sa[x - 1] * sb[x - 1] % PRIME for x in (1, 2, 3)}, PRIME) == a * b


@given(secret=st.integers(-(2**200), 2**200), parties=st.integers(3, 7))
def test_integer_shares_rebuild_delta_squared_times_the_secret(secret: int, parties: int) -> None:
    degree = (parties - 1) // 2
    bound = integer_coefficient_bound(2**200, parties=parties, statistical_bits=32)
    shares = share_integer(secret, degree=degree, parties=parties, coefficient_bound=bound)
    delta = math.factorial(parties)

    for subset in itertools.combinations(range(1, parties + 1), degree + 1):
        total = sum(integer_lagrange_at_zero(j, subset, parties) * shares[j - 1] for j in subset)
        assert total == delta * delta * secret


def test_field_prime_is_a_prime_just_above_a_multiple_of_64_bits() -> None:
    p = field_prime(100)

    assert p.bit_length() == 129 and p > mpz(1) << 128 and field_prime(128) == p


def test_integer_lagrange_refuses_member_numbers_past_the_party_count() -> None:
    with pytest.raises(CryptoError, match="exceed the party count 3"):
        integer_lagrange_at_zero(1, (1, 5, 9), 3)
