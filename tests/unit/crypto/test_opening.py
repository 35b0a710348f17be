"""Escrow decryption openings: an honest opening checks, a wrong plaintext or nonce is caught."""

from __future__ import annotations

import numpy as np
import pytest
from gmpy2 import mpz

from fedledger.crypto import Layout, aggregate, encrypt_vector, generate_keypair
from fedledger.crypto.opening import Opening, check_opening, dump_opening, load_opening, open_vector
from fedledger.errors import CryptoError, MalformedCiphertextError

LAYOUT = Layout(clip=2.0, max_summands=3, max_weight=50, value_bits=12)


@pytest.fixture(scope="module")
def keys():  # type: ignore[no-untyped-def]
    return generate_keypair(key_bits=512)


def test_an_honest_opening_checks_and_gives_the_weighted_sum(keys) -> None:  # type: ignore[no-untyped-def]
    public, private = keys
    rng = np.random.default_rng(3)
    updates = [rng.uniform(-2, 2, 40) for _ in range(3)]
    total = aggregate([encrypt_vector(public, u, LAYOUT) for u in updates], [5, 20, 50])

    values = check_opening(total, load_opening(dump_opening(open_vector(private, total))))

    expected = 5 * updates[0] + 20 * updates[1] + 50 * updates[2]
    assert np.max(np.abs(values - expected)) <= LAYOUT.error_bound(75)


def test_a_wrong_plaintext_or_nonce_does_not_open_the_ciphertext(keys) -> None:  # type: ignore[no-untyped-def]
    public, private = keys
    vector = encrypt_vector(public, np.linspace(-1, 1, 10), LAYOUT)
    honest = open_vector(private, vector)

    forged_m = Opening((honest.plaintexts[0] + 1, *honest.plaintexts[1:]), honest.nonces)
    forged_r = Opening(honest.plaintexts, (honest.nonces[0] + 1, *honest.nonces[1:]))

    for forged in (forged_m, forged_r):
        with pytest.raises(CryptoError, match="ciphertext 0 does not open"):
            check_opening(vector, forged)


def test_a_malformed_opening_is_refused() -> None:
    with pytest.raises(MalformedCiphertextError, match="does not parse"):
        load_opening(b'{"plaintexts": ["zz"], "nonces": []}')
    with pytest.raises(MalformedCiphertextError, match="does not parse"):
        load_opening(b"[]")
    assert load_opening(dump_opening(Opening((mpz(1),), (mpz(2),)))) == Opening((mpz(1),), (mpz(2),))
