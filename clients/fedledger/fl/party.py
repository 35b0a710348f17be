"""A party's home: the one directory a company, the coordinator or the dealer works from.

Every party (each company's node, the task's coordinator, the key dealer) has its own home, on its
own machine in a real consortium, and its processes read no other. A home holds::

    party.json        who this party is: name, kind (company, coordinator, dealer), org, MSP id
    profile.json      the public network profile: channel, chaincode, each org's peer address
                      and TLS root certificate (embedded, so nothing points outside the home)
    wallet/<name>/    the party's own Fabric identity (key.pem 0600)
    keys/sealing.key  a company's X25519 key: the dealer seals its key share to the public half
    keys/node.key     a company's Flower node key (ECDSA P-384, OpenSSH): proves which node it is
    keys/vrf.key      a company's leader-election VRF key (Ed25519 seed): its proofs rank it
    artifacts/        what the party produced or received, content-addressed and checked on read

Private key files are created 0600 inside 0700 directories and never widened; a key file others
can read is refused on load.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedledger.crypto.sealing import SealingKey
from fedledger.crypto.vrf import VrfKeyPair
from fedledger.errors import FedLedgerError
from fedledger.fabric.ca import Enrollment
from fedledger.fabric.wallet import FileWallet
from fedledger.fl.artifacts import DirectoryStore

NODE_HELLO_CONTEXT = b"fedledger/node-hello/v1"


class PartyKind(StrEnum):
    """What a party does in the consortium's tasks."""

    COMPANY = "company"
    COORDINATOR = "coordinator"
    DEALER = "dealer"


class PartyHomeError(FedLedgerError):
    """A party home is missing, incomplete, or has a secret file others can read."""


def write_secret(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (never readable by others, even briefly); refuse to overwrite."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise PartyHomeError(f"{path} already exists; a party's key is never overwritten") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def read_secret(path: Path) -> bytes:
    """Read a private file, refusing one that others can read."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise PartyHomeError(f"{path} is readable by others (mode {mode:04o}); run chmod 600 on it")
        return path.read_bytes()
    except FileNotFoundError:
        raise PartyHomeError(f"{path} is missing: this home was not initialised with `fedledger node init`") from None


@dataclass(frozen=True)
class NodeKey:
    """A company's Flower node key (ECDSA P-384); its OpenSSH public half is on the ledger."""

    private: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(ec.generate_private_key(ec.SECP384R1()))

    @classmethod
    def from_bytes(cls, data: bytes) -> NodeKey:
        key = serialization.load_ssh_private_key(data, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PartyHomeError("the node key is not an ECDSA key")
        return cls(key)

    def private_bytes(self) -> bytes:
        return self.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption())

    @property
    def public_text(self) -> str:
        """The public key in OpenSSH form, as recorded on the ledger."""
        return self.private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                      serialization.PublicFormat.OpenSSH).decode()

    def sign_hello(self, challenge: bytes, company: str) -> bytes:
        return self.private.sign(hello_message(challenge, company), ec.ECDSA(hashes.SHA384()))


def hello_message(challenge: bytes, company: str) -> bytes:
    """What a node signs to prove it is ``company``'s: a fresh challenge bound to the name."""
    return NODE_HELLO_CONTEXT + len(challenge).to_bytes(2, "big") + challenge + company.encode()


def verify_hello(node_key_text: str, challenge: bytes, company: str, signature: bytes) -> bool:
    """Whether ``signature`` over the challenge was made by the node key the ledger records."""
    from cryptography.exceptions import InvalidSignature

    try:
        public = serialization.load_ssh_public_key(node_key_text.encode())
    except (ValueError, TypeError):
        return False
    if not isinstance(public, ec.EllipticCurvePublicKey):
        return False
    try:
        public.verify(signature, hello_message(challenge, company), ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return False
    return True


class PartyHome:
    """One party's home directory (see the module docstring for its layout)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    # --- layout -------------------------------------------------------------------------------
    @property
    def wallet(self) -> FileWallet:
        return FileWallet(self.root / "wallet")

    @property
    def store(self) -> DirectoryStore:
        return DirectoryStore(self.root / "artifacts")

    @property
    def sealing_key_path(self) -> Path:
        return self.root / "keys" / "sealing.key"

    @property
    def node_key_path(self) -> Path:
        return self.root / "keys" / "node.key"

    @property
    def vrf_key_path(self) -> Path:
        return self.root / "keys" / "vrf.key"

    def _read_json(self, name: str) -> dict[str, Any]:
        path = self.root / name
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            raise PartyHomeError(f"{self.root} is not a party home ({name} is missing); "
                                 "create it with `fedledger node init`") from None
        except ValueError as err:
            raise PartyHomeError(f"{path} is damaged: {err}") from None
        if not isinstance(document, dict):
            raise PartyHomeError(f"{path} is damaged: not a JSON object")
        return document

    # --- who ----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self._read_json("party.json")["name"])

    @property
    def kind(self) -> PartyKind:
        return PartyKind(self._read_json("party.json")["kind"])

    @property
    def profile(self) -> dict[str, Any]:
        return self._read_json("profile.json")

    def enrollment(self) -> Enrollment:
        return self.wallet.get(self.name)

    def sealing_key(self) -> SealingKey:
        return SealingKey(read_secret(self.sealing_key_path))

    def node_key(self) -> NodeKey:
        return NodeKey.from_bytes(read_secret(self.node_key_path))

    def vrf_key(self) -> VrfKeyPair:
        """The company's leader-election VRF key (created on first use for homes made before it existed)."""
        if not self.vrf_key_path.exists():
            write_secret(self.vrf_key_path, VrfKeyPair.generate().secret_key)
        return VrfKeyPair.from_secret_key(read_secret(self.vrf_key_path))

    # --- creation -----------------------------------------------------------------------------
    def create(self, *, name: str, kind: PartyKind, org: str, msp_id: str, profile: dict[str, Any]) -> None:
        """Lay out a new home (0700) with its identity card and the public network profile."""
        if (self.root / "party.json").exists():
            raise PartyHomeError(f"{self.root} is already the home of {self.name}")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        card = {"name": name, "kind": str(kind), "org": org, "msp_id": msp_id}
        (self.root / "party.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
        (self.root / "profile.json").write_text(json.dumps(profile, indent=2, sort_keys=True) + "\n")

    def generate_company_keys(self) -> tuple[SealingKey, NodeKey, VrfKeyPair]:
        """Create the company's sealing, node and VRF keys in its home (once)."""
        sealing, node, vrf = SealingKey.generate(), NodeKey.generate(), VrfKeyPair.generate()
        write_secret(self.sealing_key_path, sealing.private)
        write_secret(self.node_key_path, node.private_bytes())
        write_secret(self.vrf_key_path, vrf.secret_key)
        return sealing, node, vrf
