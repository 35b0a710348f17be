"""Unit tests of the content-addressed artifact store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.errors import ArtifactError
from fedledger.fl.artifacts import ArtifactStore, DirectoryStore, digest_of


@given(data=st.binary(max_size=2048))
def test_put_returns_the_sha256_and_get_returns_the_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    store: ArtifactStore = DirectoryStore(tmp_path_factory.mktemp("store"))

    digest = store.put(data)

    assert digest == hashlib.sha256(data).hexdigest() == digest_of(data)
    assert store.exists(digest) and store.get(digest) == data
    assert store.put(data) == digest


def test_a_tampered_artifact_is_refused_on_read(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    digest = store.put(b"ciphertext bytes")
    (tmp_path / digest[:2] / digest).write_bytes(b"ciphertext bytez")

    with pytest.raises(ArtifactError, match=f"artifact {digest} is corrupted"):
        store.get(digest)
    with pytest.raises(ArtifactError, match="corrupted"):
        store.put(b"ciphertext bytes")


def test_missing_and_malformed_names_are_refused(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)

    with pytest.raises(ArtifactError, match="is not in the store"):
        store.get("0" * 64)
    for bad in ("../" + "0" * 61, "A" * 64, "abc", ""):
        with pytest.raises(ArtifactError, match="is not an artifact name"):
            store.get(bad)
    assert not store.exists("f" * 64)


def test_no_partial_files_are_left_behind(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)

    digest = store.put(b"x" * 100_000)

    files = [p.name for p in (tmp_path / digest[:2]).iterdir()]
    assert files == [digest]
