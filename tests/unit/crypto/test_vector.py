"""Unit tests of packed encrypted vectors: the homomorphic properties and their limits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.crypto.packing import Layout
from fedledger.crypto.paillier import PrivateKey, PublicKey, RandomnessPool, generate_keypair
from fedledger.crypto.vector import aggregate, decrypt_vector, encrypt_vector
from fedledger.errors import CapacityError, KeyMismatchError

Keys = tuple[PublicKey, PrivateKey]


@st.composite
def weighted_sums(draw: st.DrawFn) -> tuple[Layout, list[np.ndarray], list[int]]:
    layout = draw(st.builds(
        Layout,
        clip=st.floats(0.1, 10.0),
        max_summands=st.integers(1, 12),
        max_weight=st.integers(1, 500),
        value_bits=st.integers(4, 20),
    ))
    length = draw(st.integers(1, 120))
    count = draw(st.integers(1, layout.max_summands))
    vectors = [
        np.array(draw(st.lists(st.floats(-layout.clip, layout.clip), min_size=length, max_size=length)))
        for _ in range(count)
    ]
    weights = draw(st.lists(st.integers(1, layout.max_weight), min_size=count, max_size=count))
    return layout, vectors, weights


@given(case=weighted_sums())
def test_decrypted_weighted_sum_is_within_the_quantization_bound(keypair: Keys, case: tuple[Layout, list[np.ndarray], list[int]]) -> None:
    public_key, private_key = keypair
    layout, vectors, weights = case

    encrypted = [encrypt_vector(public_key, v, layout) for v in vectors]
    total = aggregate(encrypted, weights)
    result = decrypt_vector(private_key, total)

    expected = sum(w * v for w, v in zip(weights, vectors))
    assert total.summands == len(vectors) and total.total_weight == sum(weights)
    assert np.all(np.abs(result - expected) <= layout.error_bound(total.total_weight))


@given(case=weighted_sums())
def test_sum_of_partial_aggregates_equals_one_aggregate(keypair: Keys, case: tuple[Layout, list[np.ndarray], list[int]]) -> None:
    public_key, private_key = keypair
    layout, vectors, _ = case
    encrypted = [encrypt_vector(public_key, v, layout) for v in vectors]

    left = aggregate(encrypted[: len(encrypted) // 2]) if len(encrypted) > 1 else None
    right = aggregate(encrypted[len(encrypted) // 2:])
    total = left + right if left is not None else right

    assert total.summands == len(vectors)
    assert np.all(np.abs(decrypt_vector(private_key, total) - sum(vectors)) <= layout.error_bound(len(vectors)))


def test_a_sum_past_the_declared_number_of_summands_is_refused(keypair: Keys) -> None:
    public_key, _ = keypair
    layout = Layout(clip=1.0, max_summands=3)
    updates = [encrypt_vector(public_key, [0.5, -0.5], layout) for _ in range(4)]

    three = aggregate(updates[:3])

    with pytest.raises(CapacityError, match="4 updates exceeds the layout's declared maximum of 3"):
        aggregate(updates)
    with pytest.raises(CapacityError, match="declared maximum"):
        three + updates[3]


def test_a_weight_past_the_declared_maximum_is_refused(keypair: Keys) -> None:
    public_key, _ = keypair
    layout = Layout(clip=1.0, max_summands=2, max_weight=10)
    updates = [encrypt_vector(public_key, [0.1], layout) for _ in range(2)]

    with pytest.raises(CapacityError, match=r"weight 11 of vector 1 is outside \[1, 10\]"):
        aggregate(updates, [10, 11])
    with pytest.raises(CapacityError, match="outside"):
        aggregate(updates, [0, 1])
    with pytest.raises(CapacityError, match="outside"):
        aggregate(updates, [True, 1])


def test_reweighting_an_aggregate_past_the_capacity_is_refused(keypair: Keys) -> None:
    public_key, _ = keypair
    layout = Layout(clip=1.0, max_summands=2, max_weight=3)
    pair = aggregate([encrypt_vector(public_key, [0.1], layout) for _ in range(2)], [3, 3])

    with pytest.raises(CapacityError, match="capacity of 6"):
        aggregate([pair], [2])


def test_vectors_under_different_keys_or_layouts_do_not_add(keypair: Keys, other_keypair: Keys) -> None:
    layout = Layout(clip=1.0, max_summands=4)
    a = encrypt_vector(keypair[0], [0.1, 0.2], layout)

    with pytest.raises(KeyMismatchError, match="different public key"):
        a + encrypt_vector(other_keypair[0], [0.1, 0.2], layout)
    with pytest.raises(KeyMismatchError, match="layout or length"):
        a + encrypt_vector(keypair[0], [0.1, 0.2], Layout(clip=2.0, max_summands=4))
    with pytest.raises(KeyMismatchError, match="layout or length"):
        a + encrypt_vector(keypair[0], [0.1], layout)
    with pytest.raises(KeyMismatchError, match="different public key"):
        decrypt_vector(other_keypair[1], a)


def test_pooled_encryption_decrypts_like_fresh_encryption(keypair: Keys) -> None:
    public_key, private_key = keypair
    layout = Layout(clip=2.0, max_summands=1)
    values = np.linspace(-2, 2, 50)
    pool = RandomnessPool(public_key)
    pool.fill(len(layout.pack(np.zeros(50, dtype=np.uint64), public_key.key_bits)))

    encrypted = encrypt_vector(public_key, values, layout, pool=pool)

    assert len(pool) == 0
    assert np.all(np.abs(decrypt_vector(private_key, encrypted) - values) <= layout.error_bound(1))


def test_a_model_update_round_trips_at_production_key_size() -> None:
    # The one test at 2048 bits: a 5,000-value update from three companies, FedAvg-weighted.
    public_key, private_key = generate_keypair(key_bits=2048)
    layout = Layout(clip=4.0, max_summands=10, max_weight=1024)
    rng = np.random.default_rng(11)
    updates = [rng.uniform(-4, 4, 5_000) for _ in range(3)]
    weights = [600, 1024, 77]

    total = aggregate([encrypt_vector(public_key, u, layout) for u in updates], weights)
    result = decrypt_vector(private_key, total)

    assert len(total.ciphertexts) == -(-5_000 // 68)  # 30-bit slots: 16 value bits + 14 for weight 10,240
    expected = sum(w * u for w, u in zip(weights, updates))
    assert np.all(np.abs(result - expected) <= layout.error_bound(sum(weights)))


def test_multi_process_decryption_equals_single_process(keypair: Keys) -> None:
    public_key, private_key = keypair
    layout = Layout(clip=1.0, max_summands=2)
    encrypted = encrypt_vector(public_key, np.linspace(-1, 1, 97), layout)

    single = decrypt_vector(private_key, encrypted)
    multi = decrypt_vector(private_key, encrypted, workers=2)

    assert np.array_equal(single, multi)
