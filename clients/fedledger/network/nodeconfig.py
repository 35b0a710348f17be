"""Orderer and peer configuration: Fabric's default orderer.yaml / core.yaml with one node's values.

Every runtime uses these. Runtimes differ only in where a node finds its files (a host path, or the
directory mounted into its container) and the addresses it listens on and announces (``NodePlaces``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import yaml

from fedledger.network.config import Node


@dataclass(frozen=True)
class NodePlaces:
    """Where a node's files are, as the node sees them, and its addresses (a runtime's answer)."""

    root: PurePath  # the node's own directory: MSP, TLS pair, config and ledger (a CA's home)
    listen_host: str  # the interface it binds: 127.0.0.1 natively, 0.0.0.0 in a container
    host: str  # the name or address the other nodes reach it at
    ports: Mapping[str, int]  # the ports it listens on, by kind, as it sees them
    builder: PurePath  # peers: the chaincode-as-a-service builder scripts

    @property
    def msp(self) -> PurePath:
        return self.root / "msp"

    @property
    def tls(self) -> PurePath:
        return self.root / "tls"

    @property
    def data(self) -> PurePath:
        return self.root / "data"

    @property
    def config(self) -> PurePath:
        return self.root / "config"

    @property
    def announce(self) -> str:
        """host:port the other nodes reach its listener at (peers: gossip and the Gateway)."""
        return f"{self.host}:{self.ports['listen']}"


def orderer_settings(defaults: Path, node: Node, at: NodePlaces) -> dict[str, Any]:
    """orderer.yaml for ``node``: TLS everywhere, channel participation over mutual TLS, no system channel."""
    tls, data = at.tls, at.data
    settings: dict[str, Any] = yaml.safe_load(defaults.read_text())
    general = settings["General"]
    general.update({"ListenAddress": at.listen_host, "ListenPort": at.ports["listen"], "BootstrapMethod": "none",
                    "LocalMSPDir": str(at.msp), "LocalMSPID": node.org.msp_id})
    general["TLS"].update({"Enabled": True, "PrivateKey": str(tls / "server.key"),
                           "Certificate": str(tls / "server.crt"), "RootCAs": [str(tls / "ca.crt")],
                           "ClientAuthRequired": False})
    # Raft traffic between orderers reuses the main listener and authenticates with the TLS pair.
    general["Cluster"].update({"ClientCertificate": str(tls / "server.crt"), "ClientPrivateKey": str(tls / "server.key")})
    settings["FileLedger"]["Location"] = str(data / "ledger")
    settings["Consensus"] = {"WALDir": str(data / "etcdraft" / "wal"), "SnapDir": str(data / "etcdraft" / "snapshot")}
    settings["Operations"]["ListenAddress"] = f"{at.listen_host}:{at.ports['operations']}"
    settings["Admin"] = {"ListenAddress": f"{at.listen_host}:{at.ports['admin']}", "TLS": {
        "Enabled": True, "Certificate": str(tls / "server.crt"), "PrivateKey": str(tls / "server.key"),
        "ClientAuthRequired": True, "ClientRootCAs": [str(tls / "ca.crt")]}}
    settings["ChannelParticipation"] = {"Enabled": True, "MaxRequestBodySize": "1 MB"}
    return settings


def peer_settings(defaults: Path, node: Node, at: NodePlaces, *, network_id: str) -> dict[str, Any]:
    """core.yaml for ``node``: TLS, chaincode only as a service (no Docker), fast gossip."""
    tls = at.tls
    settings: dict[str, Any] = yaml.safe_load(defaults.read_text())
    peer = settings["peer"]
    peer.update({
        "id": node.name, "networkId": network_id, "listenAddress": f"{at.listen_host}:{at.ports['listen']}",
        "address": at.announce, "chaincodeListenAddress": f"{at.listen_host}:{at.ports['chaincode']}",
        "chaincodeAddress": f"{at.host}:{at.ports['chaincode']}", "fileSystemPath": str(at.data),
        "mspConfigPath": str(at.msp), "localMspId": node.org.msp_id,
    })
    # One peer per company: it leads its org and pulls blocks from the orderers itself. Fabric's
    # gossip defaults (a failed probe retried 25 s later, alive every 5 s, state info every 4 s)
    # leave a new channel's peers unaware of the other orgs for ~30 s, and until then the Gateway
    # cannot gather a majority. On one host, second-scale intervals cost nothing.
    peer["gossip"].update({"bootstrap": at.announce, "externalEndpoint": at.announce,
                           "useLeaderElection": False, "orgLeader": True,
                           "dialTimeout": "1s", "aliveTimeInterval": "1s", "aliveExpirationTimeout": "5s",
                           "reconnectInterval": "2s", "pullInterval": "1s",
                           "requestStateInfoInterval": "1s", "publishStateInfoInterval": "1s"})
    peer["tls"].update({"enabled": True, "clientAuthRequired": False,
                        "cert": {"file": str(tls / "server.crt")}, "key": {"file": str(tls / "server.key")},
                        "rootcert": {"file": str(tls / "ca.crt")},
                        "clientCert": {"file": str(tls / "server.crt")}, "clientKey": {"file": str(tls / "server.key")}})
    # Chaincode runs only as a service, found through our external builder: the peer needs no Docker.
    settings["vm"]["endpoint"] = ""
    settings["chaincode"]["externalBuilders"] = [{"name": "fedledger-ccaas", "path": str(at.builder)}]
    settings["ledger"]["snapshots"]["rootDir"] = str(at.data / "snapshots")
    settings["operations"]["listenAddress"] = f"{at.listen_host}:{at.ports['operations']}"
    return settings
