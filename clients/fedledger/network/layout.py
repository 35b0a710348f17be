"""Where a network's state lives on disk: crypto material, node configs, ledgers, logs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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

    def msp(self, node: Node) -> Path:
        return self.node(node) / "msp"

    def tls(self, node: Node) -> Path:
        return self.node(node) / "tls"

    def data(self, node: Node) -> Path:
        return self.node(node) / "data"

    def config(self, node: Node) -> Path:
        return self.node(node) / "config"
