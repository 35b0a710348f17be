"""Unit tests of packed-vector and escrow-custody bytes: round trips and strict rejection of malformed input."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.crypto import (
    EscrowRecord,
    EscrowShare,
    dump_escrow_record,
    dump_escrow_share,
    dump_private_key,
    escrow_private_key,
    load_escrow_record,
    load_escrow_share,
    load_private_key,
    recover_private_key,
)
from fedledger.crypto.escrow import FIELD_PRIME
from fedledger.crypto.packing import Layout
from fedledger.crypto.paillier import PrivateKey, PublicKey
from fedledger.crypto.serialization import _HEADER, load_vector
from fedledger.crypto.vector import EncryptedVector, aggregate, decrypt_vector, encrypt_vector
from fedledger.errors import KeyMismatchError, MalformedCiphertextError

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


# -- escrow custody ------------------------------------------------------------------------

Escrow = tuple[EscrowRecord, list[EscrowShare]]


@pytest.fixture(scope="module")
def escrow(keypair: Keys) -> Escrow:
    return escrow_private_key(keypair[1], threshold=2, parties=3)


def _edit(data: bytes, **changes: object) -> bytes:
    """A JSON document with fields changed (a value of ``...`` removes the field), re-encoded canonically."""
    document = json.loads(data)
    for name, value in changes.items():
        if value is ...:
            del document[name]
        else:
            document[name] = value
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def test_an_escrow_survives_bytes_and_still_rebuilds_the_master_key(keypair: Keys, escrow: Escrow) -> None:
    public_key, private_key = keypair
    record, shares = escrow

    again = load_escrow_record(dump_escrow_record(record), public_key)
    restored = [load_escrow_share(dump_escrow_share(s), again) for s in shares[1:]]
    rebuilt = recover_private_key(public_key, again, restored)
    master = load_private_key(dump_private_key(rebuilt), public_key)

    assert again == record
    assert [(s.index, s.value, s.digest()) for s in restored] == [(s.index, s.value, s.digest()) for s in shares[1:]]
    assert (master.p, master.q) == (private_key.p, private_key.q)
    assert master.raw_decrypt(public_key.raw_encrypt(4242)) == 4242


def test_escrow_documents_are_canonical_json_with_hex_integers(keypair: Keys, escrow: Escrow) -> None:
    record, shares = escrow

    key = json.loads(dump_private_key(keypair[1]))
    share = json.loads(dump_escrow_share(shares[0]))

    assert key == {"p": format(int(keypair[1].p), "x"), "q": format(int(keypair[1].q), "x")}
    assert share == {"index": 1, "value": format(int(shares[0].value), "x"),
                     "key_fingerprint": keypair[0].fingerprint.hex()}
    assert dump_escrow_record(record) == json.dumps(
        {"commitments": list(record.commitments), "key_fingerprint": record.key_fingerprint.hex(),
         "parties": 3, "threshold": 2}, separators=(",", ":")).encode()


def test_a_private_key_of_another_key_is_refused(keypair: Keys, other_keypair: Keys) -> None:
    with pytest.raises(KeyMismatchError, match="the private key belongs to another public key"):
        load_private_key(dump_private_key(other_keypair[1]), keypair[0])


def test_an_escrow_share_or_record_of_another_key_is_refused(keypair: Keys, other_keypair: Keys,
                                                              escrow: Escrow) -> None:
    record, shares = escrow
    other_record, other_shares = escrow_private_key(other_keypair[1], threshold=2, parties=3)

    with pytest.raises(KeyMismatchError, match="another key's escrow"):
        load_escrow_share(dump_escrow_share(other_shares[0]), record)
    with pytest.raises(KeyMismatchError, match="another public key"):
        load_escrow_record(dump_escrow_record(other_record), keypair[0])


def _n_plus_one(keys: Keys) -> dict[str, str]:
    """The factors 1 and n: they multiply to n, yet are no private key."""
    return {"p": "1", "q": format(int(keys[0].n), "x")}


MALFORMED_KEYS: list[tuple[str, Callable[[bytes, Keys], bytes], type[Exception], str]] = [
    ("not JSON", lambda d, k: b"{", MalformedCiphertextError, "not JSON"),
    ("not an object", lambda d, k: b"[]", MalformedCiphertextError, "JSON object"),
    ("extra field", lambda d, k: _edit(d, n="ab"), MalformedCiphertextError, "exactly the fields p, q"),
    ("missing factor", lambda d, k: _edit(d, q=...), MalformedCiphertextError, "exactly the fields p, q"),
    ("upper-case hex", lambda d, k: _edit(d, p=json.loads(d)["p"].upper()), MalformedCiphertextError, "lower-case hex"),
    ("integer factor", lambda d, k: _edit(d, p=7), MalformedCiphertextError, "lower-case hex"),
    ("leading zero", lambda d, k: _edit(d, p="0" + json.loads(d)["p"]), MalformedCiphertextError, "leading zeros"),
    ("trivial factors", lambda d, k: _edit(d, **_n_plus_one(k)), KeyMismatchError, "another public key"),
    ("factors swapped for others", lambda d, k: _edit(d, p=json.loads(d)["q"]), KeyMismatchError, "another public key"),
]


@pytest.mark.parametrize("name, corrupt, error, message", MALFORMED_KEYS, ids=[m[0] for m in MALFORMED_KEYS])
def test_a_malformed_private_key_is_refused_with_the_reason(
        keypair: Keys, name: str, corrupt: Callable[[bytes, Keys], bytes], error: type[Exception],
        message: str) -> None:
    with pytest.raises(error, match=message):
        load_private_key(corrupt(dump_private_key(keypair[1]), keypair), keypair[0])


MALFORMED_SHARES: list[tuple[str, Callable[[bytes], bytes], type[Exception], str]] = [
    ("extra field", lambda d: _edit(d, secret="1"), MalformedCiphertextError, "exactly the fields"),
    ("no fingerprint", lambda d: _edit(d, key_fingerprint=...), MalformedCiphertextError, "exactly the fields"),
    ("index 0", lambda d: _edit(d, index=0), MalformedCiphertextError, r"index must be in 1\.\.3, got 0"),
    ("index past the parties", lambda d: _edit(d, index=4), MalformedCiphertextError, r"1\.\.3, got 4"),
    ("index true", lambda d: _edit(d, index=True), MalformedCiphertextError, "must be an integer"),
    ("index as text", lambda d: _edit(d, index="1"), MalformedCiphertextError, "must be an integer"),
    ("value past the field", lambda d: _edit(d, value=format(int(FIELD_PRIME), "x")), MalformedCiphertextError,
     "outside the sharing field"),
    ("value not hex", lambda d: _edit(d, value="xyz"), MalformedCiphertextError, "lower-case hex"),
    ("fingerprint in capitals", lambda d: _edit(d, key_fingerprint=json.loads(d)["key_fingerprint"].upper()),
     KeyMismatchError, "another key's escrow"),
]


@pytest.mark.parametrize("name, corrupt, error, message", MALFORMED_SHARES, ids=[m[0] for m in MALFORMED_SHARES])
def test_a_malformed_escrow_share_is_refused_with_the_reason(
        escrow: Escrow, name: str, corrupt: Callable[[bytes], bytes], error: type[Exception], message: str) -> None:
    record, shares = escrow

    with pytest.raises(error, match=message):
        load_escrow_share(corrupt(dump_escrow_share(shares[0])), record)


MALFORMED_RECORDS: list[tuple[str, Callable[[bytes], bytes], str]] = [
    ("extra field", lambda d: _edit(d, dealer="kmc"), "exactly the fields"),
    ("threshold 1", lambda d: _edit(d, threshold=1), r"threshold must be in 2\.\.parties, got 1 of 3"),
    ("threshold past the parties", lambda d: _edit(d, threshold=4), "got 4 of 3"),
    ("parties as text", lambda d: _edit(d, parties="3"), "must be an integer"),
    ("a commitment short", lambda d: _edit(d, commitments=json.loads(d)["commitments"][:2]), "3 SHA-256 digests"),
    ("a commitment not hex", lambda d: _edit(d, commitments=["z" * 64] * 3), "3 SHA-256 digests"),
    ("commitments as text", lambda d: _edit(d, commitments="a" * 64), "3 SHA-256 digests"),
]


@pytest.mark.parametrize("name, corrupt, message", MALFORMED_RECORDS, ids=[m[0] for m in MALFORMED_RECORDS])
def test_a_malformed_escrow_record_is_refused_with_the_reason(
        keypair: Keys, escrow: Escrow, name: str, corrupt: Callable[[bytes], bytes], message: str) -> None:
    with pytest.raises(MalformedCiphertextError, match=message):
        load_escrow_record(corrupt(dump_escrow_record(escrow[0])), keypair[0])


@given(junk=st.binary(max_size=200))
def test_random_bytes_never_parse_as_an_escrow_share(escrow: Escrow, junk: bytes) -> None:
    with pytest.raises(MalformedCiphertextError):
        load_escrow_share(junk, escrow[0])
