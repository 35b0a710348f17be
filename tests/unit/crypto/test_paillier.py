"""Unit tests of Paillier keys, raw encryption and the randomness pool."""

from __future__ import annotations

import gmpy2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.crypto.paillier import PrivateKey, PublicKey, RandomnessPool, generate_keypair
from fedledger.errors import CryptoError


@given(data=st.data())
def test_raw_decrypt_inverts_raw_encrypt(keypair: tuple[PublicKey, PrivateKey], data: st.DataObject) -> None:
    public_key, private_key = keypair
    m = data.draw(st.integers(min_value=0, max_value=int(public_key.n) - 1))

    assert private_key.raw_decrypt(public_key.raw_encrypt(m)) == m


@given(data=st.data())
def test_product_of_ciphertexts_decrypts_to_sum(keypair: tuple[PublicKey, PrivateKey], data: st.DataObject) -> None:
    public_key, private_key = keypair
    half = int(public_key.n) // 2
    a, b = data.draw(st.integers(0, half - 1)), data.draw(st.integers(0, half - 1))

    c = public_key.raw_encrypt(a) * public_key.raw_encrypt(b) % public_key.nsquare

    assert private_key.raw_decrypt(c) == a + b


def test_encryption_is_randomized(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public_key, _ = keypair

    assert public_key.raw_encrypt(7) != public_key.raw_encrypt(7)


def test_plaintext_outside_range_is_refused(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public_key, _ = keypair

    with pytest.raises(CryptoError, match=r"\[0, n\)"):
        public_key.raw_encrypt(public_key.n)
    with pytest.raises(CryptoError):
        public_key.raw_encrypt(-1)


def test_generated_modulus_has_exactly_the_requested_bits() -> None:
    public_key, private_key = generate_keypair(key_bits=768)

    assert public_key.key_bits == 768
    assert private_key.p * private_key.q == public_key.n


def test_3072_bit_keys_are_available() -> None:
    public_key, private_key = generate_keypair(key_bits=3072)

    assert public_key.key_bits == 3072 and public_key.ciphertext_bytes == 768
    assert private_key.raw_decrypt(public_key.raw_encrypt(2**3000)) == 2**3000


def test_odd_or_tiny_key_sizes_are_refused() -> None:
    with pytest.raises(CryptoError, match="key_bits"):
        generate_keypair(key_bits=255)
    with pytest.raises(CryptoError, match="key_bits"):
        generate_keypair(key_bits=128)


def test_public_key_round_trips_through_dict(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public_key, _ = keypair

    again = PublicKey.from_dict(public_key.to_dict())

    assert again == public_key
    assert again.fingerprint == public_key.fingerprint


@pytest.mark.parametrize("bad", [{}, {"n": "zz", "hs": "1"}, {"n": "2", "hs": "1"}, {"n": "ff", "hs": "0"}])
def test_malformed_public_key_dict_is_refused(bad: dict[str, str]) -> None:
    with pytest.raises(CryptoError, match="malformed"):
        PublicKey.from_dict(bad)


def test_private_key_repr_does_not_reveal_the_factors(keypair: tuple[PublicKey, PrivateKey]) -> None:
    _, private_key = keypair

    text = repr(private_key) + str(private_key)

    assert str(int(private_key.p)) not in text and format(int(private_key.p), "x") not in text
    assert "fingerprint" in text


def test_mismatched_factors_are_refused(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public_key, private_key = keypair

    with pytest.raises(CryptoError, match="do not match"):
        PrivateKey(public_key=public_key, p=private_key.p + 2, q=private_key.q)


def test_pool_values_are_nth_powers_usable_for_encryption(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public_key, private_key = keypair
    pool = RandomnessPool(public_key)
    pool.fill(4)

    masks = pool.take(4)

    assert len(pool) == 0
    # r^n decrypts to 0: it carries no message, only randomness.
    assert all(private_key.raw_decrypt(r_n) == 0 for r_n in masks)
    assert len(set(masks)) == 4
    assert private_key.raw_decrypt(public_key.raw_encrypt(42, r_n=masks[0])) == 42


def test_a_process_builds_a_keys_fixed_base_table_once_for_every_pool(keypair: tuple[PublicKey, PrivateKey]) -> None:
    from fedledger.crypto.paillier import _hs_table

    public_key, private_key = keypair
    _hs_table.cache_clear()
    first, second = RandomnessPool(public_key), RandomnessPool(public_key)
    first.fill(2, workers=1)
    second.fill(2, workers=1)

    assert (_hs_table.cache_info().misses, _hs_table.cache_info().hits) == (1, 1)
    assert all(private_key.raw_decrypt(r_n) == 0 for r_n in first.take(2) + second.take(2))


def test_background_fill_on_worker_processes_is_collected_by_take(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public_key, private_key = keypair
    pool = RandomnessPool(public_key)
    try:
        pool.fill_in_background(6, workers=2)

        masks = pool.take(6)
    finally:
        pool.close()

    assert len(masks) == 6 and len(set(masks)) == 6
    assert all(private_key.raw_decrypt(r_n) == 0 for r_n in masks)


def test_take_from_an_empty_pool_computes_what_is_missing(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public_key, private_key = keypair
    pool = RandomnessPool(public_key)

    masks = pool.take(3)

    assert len(masks) == 3 and all(gmpy2.gcd(r, public_key.n) == 1 for r in masks)
    assert all(private_key.raw_decrypt(r_n) == 0 for r_n in masks)


def test_a_foreground_fill_keeps_earlier_background_work(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public_key, private_key = keypair
    with RandomnessPool(public_key) as pool:
        background = pool.fill_in_background(3, workers=2)
        pool.fill(4, workers=2)

        # The earlier background futures are still there for take() to collect.
        assert all(f in pool._pending for f in background)
        masks = pool.take(7)

    assert len(set(masks)) == 7 and all(private_key.raw_decrypt(r_n) == 0 for r_n in masks)
