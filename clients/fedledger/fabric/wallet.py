"""A file wallet: one directory per identity holding its certificate, key and CA chain.

Layout of ``<root>/<label>/``: ``cert.pem``, ``key.pem`` (mode 0600, created with that mode, never
widened), ``ca-chain.pem`` and ``identity.json`` (label, MSP id, enrollment id, fingerprint).
Directories are mode 0700. An entry is written to a temporary directory and renamed into place,
so a crash leaves either the whole entry or none. Keys are never printed or logged; a key file
others can read is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from fedledger.errors import WalletError
from fedledger.fabric.ca import Enrollment
from fedledger.fabric.identity import Identity, Signer

_LABEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class FileWallet:
    """Identities stored under ``root``, one directory each."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _dir(self, label: str) -> Path:
        if not _LABEL.match(label):
            raise WalletError(f"wallet label {label!r} is invalid: use 1-64 of a-z 0-9 . _ -")
        return self.root / label

    def put(self, label: str, enrollment: Enrollment, *, replace: bool = False) -> None:
        """Store ``enrollment`` under ``label``; ``replace`` overwrites (after a reenroll)."""
        target = self._dir(label)
        if target.exists() and not replace:
            raise WalletError(f"identity {label} is already in the wallet at {target}")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{label}.", dir=self.root))
        try:
            _write(staging / "key.pem", enrollment.signer.private_pem(), 0o600)
            _write(staging / "cert.pem", enrollment.identity.certificate_pem, 0o644)
            _write(staging / "ca-chain.pem", enrollment.ca_chain_pem, 0o644)
            meta = {"label": label, "msp_id": enrollment.identity.msp_id,
                    "enrollment_id": enrollment.enrollment_id, "fingerprint": enrollment.identity.fingerprint}
            _write(staging / "identity.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode(), 0o644)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def has(self, label: str) -> bool:
        """Whether an identity is stored under ``label``."""
        return self._dir(label).is_dir()

    def get(self, label: str) -> Enrollment:
        """Load the identity stored under ``label``."""
        directory = self._dir(label)
        if not directory.is_dir():
            raise WalletError(f"identity {label} is not in the wallet at {self.root}")
        key_file = directory / "key.pem"
        try:
            mode = stat.S_IMODE(key_file.stat().st_mode)
            if mode & 0o077:
                raise WalletError(f"{key_file} is readable by others (mode {mode:04o}); run chmod 600 on it")
            meta = json.loads((directory / "identity.json").read_text())
            identity = Identity(str(meta["msp_id"]), (directory / "cert.pem").read_bytes())
            signer = Signer.from_pem(key_file.read_bytes())
            chain = (directory / "ca-chain.pem").read_bytes()
        except (OSError, ValueError, KeyError) as err:
            raise WalletError(f"wallet entry {label} is damaged: {err}") from None
        if not signer.matches(identity.certificate):
            raise WalletError(f"wallet entry {label} is damaged: its key does not match its certificate")
        return Enrollment(identity, signer, chain)

    def list(self) -> list[dict[str, str]]:
        """The stored identities' metadata (never keys), ordered by label."""
        if not self.root.is_dir():
            return []
        entries = []
        for directory in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                entries.append({str(k): str(v) for k, v in json.loads((directory / "identity.json").read_text()).items()})
            except (OSError, ValueError) as err:
                raise WalletError(f"wallet entry {directory.name} is damaged: {err}") from None
        return entries

    def remove(self, label: str) -> None:
        """Delete the identity stored under ``label``."""
        directory = self._dir(label)
        if not directory.is_dir():
            raise WalletError(f"identity {label} is not in the wallet at {self.root}")
        shutil.rmtree(directory)


def _write(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL with the final mode: a key file is never, even briefly, readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
