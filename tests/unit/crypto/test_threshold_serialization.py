"""Threshold keys, shares and partial decryptions survive bytes, and bad bytes are refused."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.crypto import (
    Layout,
    combine_partials,
    deal_threshold_key,
    dump_key_share,
    dump_partial,
    dump_threshold_key,
    encrypt_vector,
    load_key_share,
    load_partial,
    load_threshold_key,
    partial_decrypt,
    verify_partial,
)
from fedledger.errors import KeyMismatchError, MalformedCiphertextError


@pytest.fixture(scope="module")
def dealt():  # type: ignore[no-untyped-def]
    return deal_threshold_key(threshold=2, parties=3, key_bits=512)


def test_a_round_trip_through_bytes_still_decrypts(dealt) -> None:  # type: ignore[no-untyped-def]
    tpk, shares = dealt
    values = np.array([0.5, -0.25, 0.125])
    vector = encrypt_vector(tpk.public_key, values, Layout(clip=1.0, max_summands=3))

    key = load_threshold_key(dump_threshold_key(tpk))
    restored = [load_key_share(dump_key_share(s), key) for s in shares[:2]]
    partials = [load_partial(dump_partial(partial_decrypt(s, vector))) for s in restored]

    assert key.fingerprint == tpk.fingerprint
    for p in partials:
        verify_partial(key, vector, p)  # raises if the proof does not verify
    result = combine_partials(key, vector, partials)
    assert np.allclose(result.values, values, atol=1e-3)


def test_a_share_of_another_key_is_refused(dealt) -> None:  # type: ignore[no-untyped-def]
    tpk, shares = dealt
    other, _ = deal_threshold_key(threshold=2, parties=3, key_bits=512)

    with pytest.raises(KeyMismatchError, match="another threshold key"):
        load_key_share(dump_key_share(shares[0]), other)


@pytest.mark.parametrize("data", [b"", b"[]", b'{"index": 1}', b'{"index": 0, "values": []}',
                                  b'{"index": 1, "values": ["XYZ"], "challenge": "1", "response": "1"}'])
def test_malformed_partials_are_refused_with_a_reason(data: bytes) -> None:
    with pytest.raises(MalformedCiphertextError):
        load_partial(data)
