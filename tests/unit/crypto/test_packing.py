"""Unit tests of quantization and slot packing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from gmpy2 import mpz
from hypothesis import strategies as st

from fedledger.crypto.packing import Layout
from fedledger.errors import CryptoError, EncodingError

layouts = st.builds(
    Layout,
    clip=st.floats(0.01, 100.0),
    max_summands=st.integers(1, 64),
    max_weight=st.integers(1, 1000),
    value_bits=st.integers(2, 24),
)


@given(layout=layouts, key_bits=st.sampled_from([512, 1024, 2048, 3072]), data=st.data())
def test_pack_then_unpack_returns_the_slot_integers(layout: Layout, key_bits: int, data: st.DataObject) -> None:
    # Any slot value a sum within capacity can reach must survive packing.
    top = layout.capacity * ((1 << layout.value_bits) - 1)
    values = data.draw(st.lists(st.integers(0, top), min_size=1, max_size=300))
    ints = np.array(values, dtype=np.uint64)

    packed = layout.pack(ints, key_bits)

    assert all(m < (1 << (key_bits - 1)) for m in packed)
    assert len(packed) == -(-len(values) // layout.slots(key_bits))
    assert layout.unpack(packed, key_bits, len(values)).tolist() == values


@given(layout=layouts, data=st.data())
def test_quantization_error_is_below_one_step(layout: Layout, data: st.DataObject) -> None:
    values = np.array(data.draw(st.lists(st.floats(-layout.clip, layout.clip), min_size=1, max_size=100)))

    q = layout.quantize(values, np.random.default_rng(data.draw(st.integers(0, 2**32))))

    assert q.max() <= (1 << layout.value_bits) - 1
    decoded = layout.dequantize(q, 1)
    assert np.all(np.abs(decoded - values) <= layout.error_bound(1))


def test_stochastic_rounding_is_unbiased() -> None:
    layout = Layout(clip=1.0, max_summands=1, value_bits=4)
    value = np.full(200_000, 0.123456)

    decoded = layout.dequantize(layout.quantize(value, np.random.default_rng(7)), 1)

    # One step is 2/15; the mean of 200k unbiased roundings is within a few thousandths of it.
    assert abs(decoded.mean() - 0.123456) < 0.002


def test_slot_width_covers_the_declared_capacity() -> None:
    layout = Layout(clip=4.0, max_summands=10, max_weight=1024, value_bits=16)

    assert layout.capacity == 10_240
    assert layout.slot_bits == 30
    assert layout.slots(2048) == 68
    assert layout.capacity * ((1 << 16) - 1) < 2**layout.slot_bits


def test_record_level_sums_of_ten_companies_take_at_most_1100_ciphertexts_per_100k_parameters() -> None:
    # Weight 1 (record-level DP-SGD sums), 10 summands: 16 + 4 bits a slot, 102 slots a plaintext.
    layout = Layout(clip=4.0, max_summands=10, max_weight=1, value_bits=16)

    assert layout.slot_bits == 20
    assert -(-100_000 // layout.slots(2048)) == 981


def test_a_plaintext_with_bits_beyond_its_slots_is_refused() -> None:
    layout = Layout(clip=1.0, max_summands=3, value_bits=6)
    used = layout.slots(512) * layout.slot_bits

    with pytest.raises(CryptoError, match="overflows its slots"):
        layout.unpack([mpz(1) << used], 512, 1)


@pytest.mark.parametrize(
    "values, message",
    [
        ([0.0, 5.0], "outside"),
        ([np.nan], "NaN"),
        ([np.inf], "NaN or infinite"),
        ([[0.0, 1.0]], "1-D"),
    ],
)
def test_values_that_do_not_fit_are_refused(values: list[float], message: str) -> None:
    layout = Layout(clip=4.0, max_summands=2)

    with pytest.raises(EncodingError, match=message):
        layout.quantize(values, np.random.default_rng(0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"clip": 0.0, "max_summands": 1}, "clip"),
        ({"clip": float("inf"), "max_summands": 1}, "clip"),
        ({"clip": 1.0, "max_summands": 0}, "at least 1"),
        ({"clip": 1.0, "max_summands": 1, "value_bits": 1}, "value_bits"),
        ({"clip": 1.0, "max_summands": 2**20, "max_weight": 2**20, "value_bits": 16}, "exceeds 53"),
    ],
)
def test_invalid_layouts_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(EncodingError, match=message):
        Layout(**kwargs)  # type: ignore[arg-type]
