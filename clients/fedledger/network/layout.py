"""Where a network's state lives on disk: crypto material, node configs, ledgers, logs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedledger.errors import NetworkStateError

from fedledger.network.config import Node, Organization


def default_home() -> Path:
    """``$FEDLEDGER_HOME`` or ``~/.fedledger``: the directory ``fedledger network`` manages."""
    return Path(os.environ.get("FEDLEDGER_HOME", Path.home() / ".fedledger")).resolve()


def cache_dir() -> Path:
    """``$FEDLEDGER_CACHE`` or ``~/.cache/fedledger``: binaries built by scripts/install-fabric.sh."""
    return Path(os.environ.get("FEDLEDGER_CACHE", Path.home() / ".cache" / "fedledger")).resolve()


@dataclass(frozen=True)
class Layout:
    """Paths under a network home. Nothing outside the home is written by a bring-up."""

    home: Path

    @property
    def state_file(self) -> Path:
        return self.home / "network.json"

    def read_state(self) -> dict[str, Any] | None:
        """The state file's document, or None when there is no network here."""
        try:
            state: dict[str, Any] = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as err:
            raise NetworkStateError(f"the state file {self.state_file} is unreadable ({err}); "
                                    "run `fedledger network down --purge` to start over") from None
        return state

    def write_state(self, state: dict[str, Any]) -> None:
        """Replace the state file atomically (a crash leaves the old or the new one, whole)."""
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(self.state_file)

    @property
    def profile(self) -> Path:
        """The connection profile clients read (peers, TLS roots, user identities)."""
        return self.home / "connection.json"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def channel_dir(self) -> Path:
        return self.home / "channel"

    def log(self, node: Node) -> Path:
        return self.logs / f"{node.name}.log"

    def org(self, org: Organization) -> Path:
        return self.home / "orgs" / org.name.lower()

    def org_msp(self, org: Organization) -> Path:
        """The organization's MSP as the channel knows it: CA roots and NodeOU rules, no keys."""
        return self.org(org) / "msp"

    def ca_home(self, org: Organization) -> Path:
        return self.org(org) / "ca"

    def ca_root(self, org: Organization) -> Path:
        """The CA's self-signed certificate: root of the org's identities and of its TLS."""
        return self.ca_home(org) / "ca-cert.pem"

    def user(self, org: Organization, user: str) -> Path:
        return self.org(org) / "users" / user

    def node(self, node: Node) -> Path:
        return self.org(node.org) / "nodes" / node.short

    def root(self, node: Node) -> Path:
        """The one directory a node reads and writes: a CA's home, any other node's own folder."""
        return self.ca_home(node.org) if node.role == "ca" else self.node(node)

    def msp(self, node: Node) -> Path:
        return self.node(node) / "msp"

    def tls(self, node: Node) -> Path:
        return self.node(node) / "tls"

    def data(self, node: Node) -> Path:
        return self.node(node) / "data"

    def config(self, node: Node) -> Path:
        return self.node(node) / "config"
