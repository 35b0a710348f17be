"""Unit tests of packed-vector bytes: round trips and strict rejection of malformed input."""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.crypto.packing import Layout
from fedledger.crypto.paillier import PrivateKey, PublicKey
from fedledger.crypto.serialization import _HEADER, load_vector
from fedledger.crypto.vector import EncryptedVector, aggregate, decrypt_vector, encrypt_vector
from fedledger.errors import MalformedCiphertextError

Keys = tuple[PublicKey, PrivateKey]
LAYOUT = Layout(clip=1.0, max_summands=4, max_weight=8)


@pytest.fixture(scope="module")
def vector(keypair: Keys) -> EncryptedVector:
    return aggregate([encrypt_vector(keypair[0], np.linspace(-1, 1, 40), LAYOUT) for _ in range(2)], [3, 5])


@given(values=st.lists(st.floats(-1, 1), min_size=1, max_size=80))
def test_bytes_round_trip(keypair: Keys, values: list[float]) -> None:
    encrypted = encrypt_vector(keypair[0], values, LAYOUT)

    again = load_vector(encrypted.to_bytes(), keypair[0], LAYOUT)

    assert again == encrypted
    assert np.allclose(decrypt_vector(keypair[1], again), values, atol=LAYOUT.error_bound(1))


def test_header_carries_summands_and_weight(keypair: Keys, vector: EncryptedVector) -> None:
    again = load_vector(vector.to_bytes(), keypair[0])

    assert (again.summands, again.total_weight, again.length) == (2, 8, 40)


def _patch(data: bytes, field: int, value: object) -> bytes:
    fields = list(_HEADER.unpack_from(data))
    fields[field] = value
    return _HEADER.pack(*fields) + data[_HEADER.size:]


def _set_ciphertext(data: bytes, index: int, value: int, width: int) -> bytes:
    start = _HEADER.size + index * width
    return data[:start] + value.to_bytes(width, "big") + data[start + width:]


MALFORMED: list[tuple[str, Callable[[bytes, PublicKey], bytes], str]] = [
    ("truncated header", lambda d, k: d[:20], "shorter than"),
    ("truncated body", lambda d, k: d[:-1], "body is"),
    ("trailing bytes", lambda d, k: d + b"\0", "body is"),
    ("magic", lambda d, k: b"XXXX" + d[4:], "magic"),
    ("version", lambda d, k: _patch(d, 1, 9), "version 9"),
    ("key fingerprint", lambda d, k: _patch(d, 2, b"\1" * 32), "encrypted under key"),
    ("slot width", lambda d, k: _patch(d, 4, 40), "slot width"),
    ("invalid layout", lambda d, k: _patch(d, 5, -1.0), "invalid layout"),
    ("value count", lambda d, k: _patch(d, 8, 400), "cannot hold"),
    ("zero length", lambda d, k: _patch(d, 8, 0), "cannot hold"),
    ("too many summands", lambda d, k: _patch(d, 9, 5), "outside the layout"),
    ("weight past capacity", lambda d, k: _patch(d, 10, 33), "outside the layout"),
    ("ciphertext width", lambda d, k: _patch(d, 12, 10), "ciphertexts of 10 bytes"),
    ("zero ciphertext", lambda d, k: _set_ciphertext(d, 0, 0, k.ciphertext_bytes), "ciphertext 0"),
    ("ciphertext >= n^2", lambda d, k: _set_ciphertext(d, 1, int(k.nsquare), k.ciphertext_bytes), "ciphertext 1"),
    ("ciphertext sharing a factor with n", lambda d, k: _set_ciphertext(d, 0, int(k.n), k.ciphertext_bytes), "not an invertible"),
]


@pytest.mark.parametrize("name, corrupt, message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_bytes_are_rejected_with_the_reason(
    keypair: Keys, vector: EncryptedVector, name: str, corrupt: Callable[[bytes, PublicKey], bytes], message: str
) -> None:
    data = corrupt(vector.to_bytes(), keypair[0])

    with pytest.raises(MalformedCiphertextError, match=message):
        load_vector(data, keypair[0])


def test_bytes_for_another_key_are_rejected(other_keypair: Keys, vector: EncryptedVector) -> None:
    with pytest.raises(MalformedCiphertextError, match="encrypted under key"):
        load_vector(vector.to_bytes(), other_keypair[0])


def test_bytes_with_another_layout_are_rejected(keypair: Keys, vector: EncryptedVector) -> None:
    with pytest.raises(MalformedCiphertextError, match="differs from the task's layout"):
        load_vector(vector.to_bytes(), keypair[0], Layout(clip=1.0, max_summands=4, max_weight=9))


@given(junk=st.binary(max_size=400))
def test_random_bytes_never_parse(keypair: Keys, junk: bytes) -> None:
    with pytest.raises(MalformedCiphertextError):
        load_vector(junk, keypair[0])


def test_header_layout_is_stable() -> None:
    # The format is read by other parties' clients: its size is part of the contract.
    assert _HEADER.size == struct.calcsize(">4sB32sBBdIIIIQIH") == 77
