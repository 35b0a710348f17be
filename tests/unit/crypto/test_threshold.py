"""Unit tests of threshold Paillier: every t-subset decrypts, a wrong partial is caught and named."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from gmpy2 import mpz

from fedledger.crypto.cores import resolve_workers
from fedledger.crypto.packing import Layout
from fedledger.crypto.threshold import (
    KeyShare,
    PartialDecryption,
    ThresholdPublicKey,
    combine_partials,
    deal_threshold_key,
    partial_decrypt,
    verify_partial,
)
from fedledger.crypto.vector import EncryptedVector, aggregate, encrypt_vector
from fedledger.errors import CryptoError, DecryptionShareError, KeyMismatchError

Dealt = tuple[ThresholdPublicKey, list[KeyShare]]
LAYOUT = Layout(clip=2.0, max_summands=5, max_weight=100, value_bits=12)


def _aggregate(tpk: ThresholdPublicKey, seed: int) -> tuple[EncryptedVector, np.ndarray]:
    rng = np.random.default_rng(seed)
    updates = [rng.uniform(-2, 2, 45) for _ in range(3)]
    weights = [10, 100, 37]
    total = aggregate([encrypt_vector(tpk.public_key, u, LAYOUT) for u in updates], weights)
    return total, sum(w * u for w, u in zip(weights, updates))


@pytest.mark.parametrize("dealt_name", ["threshold_2_of_3", "threshold_3_of_5"])
def test_every_t_subset_of_shares_decrypts_the_aggregate(dealt_name: str, request: pytest.FixtureRequest) -> None:
    tpk, shares = request.getfixturevalue(dealt_name)
    total, expected = _aggregate(tpk, seed=1)
    partials = [partial_decrypt(s, total) for s in shares]

    for subset in itertools.combinations(partials, tpk.threshold):
        result = combine_partials(tpk, total, subset)

        assert result.used == tuple(p.index for p in subset) and not result.rejected
        assert np.all(np.abs(result.values - expected) <= LAYOUT.error_bound(total.total_weight))


def test_fewer_than_t_partials_cannot_decrypt(threshold_3_of_5: Dealt) -> None:
    tpk, shares = threshold_3_of_5
    total, _ = _aggregate(tpk, seed=2)

    with pytest.raises(CryptoError, match="2 partial decryptions given, 3 needed"):
        combine_partials(tpk, total, [partial_decrypt(s, total) for s in shares[:2]])


def _corrupt_value(p: PartialDecryption, nsquare: mpz) -> PartialDecryption:
    values = list(p.values)
    values[-1] = values[-1] * 4 % nsquare
    return dataclasses.replace(p, values=tuple(values))


def test_a_corrupted_partial_is_detected_and_its_holder_named(threshold_3_of_5: Dealt) -> None:
    tpk, shares = threshold_3_of_5
    total, expected = _aggregate(tpk, seed=3)
    partials = [partial_decrypt(s, total) for s in shares]
    bad = _corrupt_value(partials[1], tpk.public_key.nsquare)

    with pytest.raises(DecryptionShareError, match="share holder 2") as caught:
        verify_partial(tpk, total, bad)
    assert caught.value.holder == 2

    # With enough honest members left, decryption goes on without the bad one and reports it.
    result = combine_partials(tpk, total, [partials[0], bad, partials[2], partials[4]])
    assert result.used == (1, 3, 5) and set(result.rejected) == {2}
    assert np.all(np.abs(result.values - expected) <= LAYOUT.error_bound(total.total_weight))

    with pytest.raises(DecryptionShareError, match="share holder 2"):
        combine_partials(tpk, total, [partials[0], bad, partials[2]])


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (lambda p, k: dataclasses.replace(p, response=p.response + 1), "does not verify"),
        (lambda p, k: dataclasses.replace(p, challenge=p.challenge ^ 1), "does not verify"),
        (lambda p, k: dataclasses.replace(p, challenge=mpz(2) ** 300), "out of range"),
        (lambda p, k: dataclasses.replace(p, response=mpz(2) ** 100_000), "out of range"),
        (lambda p, k: dataclasses.replace(p, response=-p.response), "out of range"),
        (lambda p, k: dataclasses.replace(p, values=p.values[:-1]), "partials for"),
        (lambda p, k: dataclasses.replace(p, values=(mpz(0),) + p.values[1:]), "not an invertible"),
        (lambda p, k: dataclasses.replace(p, index=9), "no committee member has index 9"),
    ],
)
def test_tampered_partials_fail_verification(threshold_2_of_3: Dealt, tamper, reason: str) -> None:  # type: ignore[no-untyped-def]
    tpk, shares = threshold_2_of_3
    total, _ = _aggregate(tpk, seed=4)
    partial = partial_decrypt(shares[0], total)

    with pytest.raises(DecryptionShareError, match=reason):
        verify_partial(tpk, total, tamper(partial, tpk))


def test_a_partial_of_one_vector_does_not_pass_for_another(threshold_2_of_3: Dealt) -> None:
    tpk, shares = threshold_2_of_3
    first, _ = _aggregate(tpk, seed=5)
    second, _ = _aggregate(tpk, seed=6)

    with pytest.raises(DecryptionShareError, match="does not verify"):
        verify_partial(tpk, second, partial_decrypt(shares[0], first))


def test_a_member_sending_two_partials_is_refused(threshold_2_of_3: Dealt) -> None:
    tpk, shares = threshold_2_of_3
    total, _ = _aggregate(tpk, seed=7)
    partial = partial_decrypt(shares[0], total)

    with pytest.raises(CryptoError, match="member 1 sent more than one"):
        combine_partials(tpk, total, [partial, partial])


def test_multi_process_partials_equal_single_process_ones(threshold_2_of_3: Dealt) -> None:
    tpk, shares = threshold_2_of_3
    rng = np.random.default_rng(8)
    # Enough ciphertexts (16 or more) for two workers to be worth starting.
    total = encrypt_vector(tpk.public_key, rng.uniform(-2, 2, 24 * LAYOUT.slots(tpk.public_key.key_bits)), LAYOUT)
    assert resolve_workers(2, len(total.ciphertexts)) == 2

    single = partial_decrypt(shares[1], total, workers=1)
    multi = partial_decrypt(shares[1], total, workers=2)

    assert single.values == multi.values
    verify_partial(tpk, total, multi)


def test_vector_under_another_key_is_refused(threshold_2_of_3: Dealt, keypair) -> None:  # type: ignore[no-untyped-def]
    tpk, shares = threshold_2_of_3
    foreign = encrypt_vector(keypair[0], [0.5], LAYOUT)

    with pytest.raises(KeyMismatchError):
        partial_decrypt(shares[0], foreign)


def test_share_repr_hides_the_secret_and_digest_is_stable(threshold_2_of_3: Dealt) -> None:
    _, shares = threshold_2_of_3

    assert str(int(shares[0].secret)) not in repr(shares[0])
    assert shares[0].digest() == shares[0].digest() != shares[1].digest()
    assert len(shares[0].digest()) == 64


@pytest.mark.parametrize("t, n", [(1, 3), (4, 3), (0, 0)])
def test_impossible_thresholds_are_refused(t: int, n: int) -> None:
    with pytest.raises(CryptoError, match="threshold"):
        deal_threshold_key(threshold=t, parties=n, key_bits=256)


def test_public_parameters_serialize_for_the_ledger(threshold_3_of_5: Dealt) -> None:
    tpk, _ = threshold_3_of_5

    record = tpk.to_dict()

    assert record["threshold"] == 3 and record["parties"] == 5
    assert len(record["verification_keys"]) == 5  # type: ignore[arg-type]
