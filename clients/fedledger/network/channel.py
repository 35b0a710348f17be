"""The application channel: its genesis block (configtxgen) and who joins it (osnadmin, peer).

Channel participation, no system channel: the genesis block names the Raft consenters and the
member organizations, each orderer is asked to join over its admin endpoint (mutual TLS), and each
peer joins from the same block. Anchor peers are in the genesis block, so organizations gossip
across org boundaries from the first block without a config update.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from fedledger.errors import NetworkError
from fedledger.network.config import ConsortiumConfig, Node, Organization
from fedledger.network.layout import Layout
from fedledger.network.runtime import Address, loopback

ApplicationCapability = "V2_5"
ChannelCapability = "V2_0"
# Where the other nodes reach a node's listener (in the genesis block: consenters, anchor peers).
NodeAddress = Callable[[Node], tuple[str, int]]


def _signature(expression: str) -> dict[str, str]:
    return {"Type": "Signature", "Rule": expression}


def _implicit(rule: str) -> dict[str, str]:
    return {"Type": "ImplicitMeta", "Rule": rule}


def _org_section(config: ConsortiumConfig, layout: Layout, org: Organization, address: NodeAddress) -> dict[str, object]:
    m = org.msp_id
    section: dict[str, object] = {"Name": m, "ID": m, "MSPDir": str(layout.org_msp(org))}
    if org.kind == "orderer":
        section["Policies"] = {
            "Readers": _signature(f"OR('{m}.member')"),
            "Writers": _signature(f"OR('{m}.member')"),
            "Admins": _signature(f"OR('{m}.admin')"),
        }
        section["OrdererEndpoints"] = ["%s:%d" % address(n) for n in config.orderers()]
    else:
        host, port = address(config.peer(org))
        section["Policies"] = {
            "Readers": _signature(f"OR('{m}.admin', '{m}.peer', '{m}.client')"),
            "Writers": _signature(f"OR('{m}.admin', '{m}.client')"),
            "Admins": _signature(f"OR('{m}.admin')"),
            "Endorsement": _signature(f"OR('{m}.peer')"),
        }
        section["AnchorPeers"] = [{"Host": host, "Port": port}]
    return section


def configtx(config: ConsortiumConfig, layout: Layout, address: NodeAddress) -> dict[str, object]:
    """The configtx.yaml document for the channel's genesis block, with absolute MSP paths.

    configtxgen expands no environment variables and resolves relative MSPDir paths against
    FABRIC_CFG_PATH, so the file is generated per network with every path spelled out.
    """
    orderer_org = _org_section(config, layout, config.orderer_org, address)
    companies = [_org_section(config, layout, org, address) for org in config.companies]
    consenters = []
    for node in config.orderers():
        host, port = address(node)
        server_cert = str(layout.tls(node) / "server.crt")
        consenters.append({"Host": host, "Port": port, "ClientTLSCert": server_cert, "ServerTLSCert": server_cert})
    return {
        "Profiles": {
            "FedLedgerChannel": {
                "Policies": {
                    "Readers": _implicit("ANY Readers"),
                    "Writers": _implicit("ANY Writers"),
                    "Admins": _implicit("MAJORITY Admins"),
                },
                "Capabilities": {ChannelCapability: True},
                "Orderer": {
                    "OrdererType": "etcdraft",
                    "BatchTimeout": config.batch_timeout,
                    "BatchSize": {"MaxMessageCount": config.max_message_count,
                                  "AbsoluteMaxBytes": "99 MB", "PreferredMaxBytes": "2 MB"},
                    "EtcdRaft": {
                        "Consenters": consenters,
                        # Heartbeats every 100 ms and an election after 10 missed ones: a killed
                        # leader is replaced in about a second on loopback.
                        # A Raft snapshot every 1 MB, half of PreferredMaxBytes (which Fabric uses as
                        # the size of one batch of committed entries): Fabric 2.5.0 deadlocks when a
                        # restarted orderer replays the channel's first configuration changes in a
                        # batch that leaves more entries waiting (hyperledger/fabric#4199, fixed after
                        # 2.5.0). With a snapshot taken before the log outgrows one batch, a restart
                        # replays from the snapshot and never meets those changes.
                        "Options": {"TickInterval": "100ms", "ElectionTick": 10, "HeartbeatTick": 1,
                                    "MaxInflightBlocks": 5, "SnapshotIntervalSize": "1 MB"},
                    },
                    "Organizations": [orderer_org],
                    "Policies": {
                        "Readers": _implicit("ANY Readers"),
                        "Writers": _implicit("ANY Writers"),
                        "Admins": _implicit("MAJORITY Admins"),
                        "BlockValidation": _implicit("ANY Writers"),
                    },
                    "Capabilities": {ChannelCapability: True},
                },
                "Application": {
                    "Organizations": companies,
                    "Policies": {
                        "Readers": _implicit("ANY Readers"),
                        "Writers": _implicit("ANY Writers"),
                        "Admins": _implicit("MAJORITY Admins"),
                        # Chaincode definitions and, by default, transactions need a majority of
                        # the companies' peers: no single company can write the ledger alone.
                        "LifecycleEndorsement": _implicit("MAJORITY Endorsement"),
                        "Endorsement": _implicit("MAJORITY Endorsement"),
                    },
                    "Capabilities": {ApplicationCapability: True},
                },
            }
        }
    }


def run(argv: list[str], *, env: dict[str, str], what: str, cwd: Path | None = None, timeout: float = 60) -> str:
    """Run a Fabric command line tool; a failure raises NetworkError with its own output."""
    import os

    try:
        done = subprocess.run(argv, env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise NetworkError(f"{what} timed out after {timeout:.0f} s ({argv[0]})") from None
    if done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip()).splitlines()[-4:]
        raise NetworkError(f"{what} failed: {' | '.join(output)}")
    return done.stdout + done.stderr


def genesis_block(config: ConsortiumConfig, layout: Layout, configtxgen: Path, address: NodeAddress) -> Path:
    """Write configtx.yaml and have configtxgen make the channel's genesis block."""
    directory = layout.channel_dir
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "configtx.yaml").write_text(yaml.safe_dump(configtx(config, layout, address), sort_keys=True))
    block = directory / f"{config.channel}.block"
    run([str(configtxgen), "-profile", "FedLedgerChannel", "-channelID", config.channel, "-outputBlock", str(block)],
        env={"FABRIC_CFG_PATH": str(directory)}, what="configtxgen (the channel's genesis block)")
    return block


def join_orderer(config: ConsortiumConfig, layout: Layout, osnadmin: Path, node: Node, block: Path, *,
                 address: Address = loopback) -> None:
    """Ask one orderer, over its mutual-TLS admin endpoint, to join the channel from its genesis block."""
    admin_tls = layout.user(config.orderer_org, "admin") / "tls"
    run([str(osnadmin), "channel", "join", "--channelID", config.channel, "--config-block", str(block),
         "-o", "%s:%d" % address(node, "admin"), "--ca-file", str(layout.ca_root(node.org)),
         "--client-cert", str(admin_tls / "server.crt"), "--client-key", str(admin_tls / "server.key")],
        env={}, what=f"osnadmin channel join on {node.name}")
