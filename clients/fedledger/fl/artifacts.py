"""A content-addressed artifact store: ciphertexts live here, only their SHA-256 on the ledger.

An artifact's name is the hex SHA-256 of its bytes, so the ledger's hash is also the key, and a
reader checks the bytes against the name on every read: a tampered or truncated artifact is
refused rather than aggregated. ``ArtifactStore`` is the interface; ``DirectoryStore`` keeps
artifacts in a directory, and an S3-compatible store implements the same three methods.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from fedledger.errors import ArtifactError

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def digest_of(data: bytes) -> str:
    """The artifact name of ``data``: its lower-case hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def _check_digest(digest: str) -> None:
    if not _DIGEST.match(digest):
        raise ArtifactError(f"{digest!r} is not an artifact name (64 lower-case hex digits)")


class ArtifactStore(Protocol):
    """Where encrypted updates and aggregates are kept, by the SHA-256 of their bytes."""

    def put(self, data: bytes) -> str:
        """Store ``data`` (idempotently) and return its digest."""

    def get(self, digest: str) -> bytes:
        """Return the bytes named ``digest``, verified against it."""

    def exists(self, digest: str) -> bool:
        """Whether the store holds ``digest``."""


class DirectoryStore:
    """Artifacts as files ``<root>/<first two hex digits>/<digest>``, written atomically."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, digest: str) -> Path:
        _check_digest(digest)
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        digest = digest_of(data)
        path = self._path(digest)
        if path.exists():
            # Content addressing makes a second put a no-op, once the stored copy is intact.
            self.get(digest)
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, digest: str) -> bytes:
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"artifact {digest} is not in the store at {self.root}") from None
        if digest_of(data) != digest:
            raise ArtifactError(f"artifact {digest} is corrupted: its bytes hash to {digest_of(data)}")
        return data

    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()
