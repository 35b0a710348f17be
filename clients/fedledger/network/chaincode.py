"""The FedLedger chaincode as a service: its package, and the lifecycle that puts it on the channel.

Each company runs its own chaincode service next to its peer. Its package carries only a
connection.json (where the service listens and the TLS material the peer dials it with); the
external builder in network/builders/ccaas hands that to the peer. The lifecycle is Fabric's:
install on every peer, approve by every company, commit once a majority has approved.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from fedledger.network.channel import run
from fedledger.network.config import ConsortiumConfig, Node, Organization
from fedledger.network.layout import Layout
from fedledger.network.runtime import Address, loopback

# The chaincode definition's version and sequence for a fresh network. An upgrade bumps both.
DEFINITION_VERSION = "1.0"
DEFINITION_SEQUENCE = 1


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    # mtime 0 and fixed modes: the same inputs give the same package bytes, so the same package id.
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def package(config: ConsortiumConfig, layout: Layout, org: Organization, address: tuple[str, int]) -> tuple[Path, str]:
    """Write the org's CCaaS package naming ``address``, where its peer dials the service; return
    the package's path and id (label:sha256 of the bytes)."""
    peer_tls = layout.tls(config.peer(org))
    service = config.chaincode_service(org)
    connection = {
        "address": "%s:%d" % address,
        "dial_timeout": "10s",
        "tls_required": True,
        "client_auth_required": True,
        # The peer presents its own TLS pair; the service trusts the org's CA for client certificates.
        "client_key": (peer_tls / "server.key").read_text(),
        "client_cert": (peer_tls / "server.crt").read_text(),
        "root_cert": (layout.tls(service) / "ca.crt").read_text(),
    }
    label = f"{config.chaincode}_{org.name.lower()}"
    code = _tar_gz({"connection.json": json.dumps(connection, indent=2, sort_keys=True).encode()})
    metadata = json.dumps({"label": label, "type": "ccaas"}, sort_keys=True).encode()
    pkg = _tar_gz({"code.tar.gz": code, "metadata.json": metadata})
    path = layout.home / "chaincode" / f"{label}.tar.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    # The package embeds the peer's TLS private key, so it is as secret as the key itself.
    from fedledger.network.pki import write_private

    write_private(path, pkg)
    return path, f"{label}:{hashlib.sha256(pkg).hexdigest()}"


def _joined(address: tuple[str, int]) -> str:
    return "%s:%d" % address


def admin_env(config: ConsortiumConfig, layout: Layout, org: Organization, *,
              address: Address = loopback) -> dict[str, str]:
    """Environment for the peer CLI acting as ``org``'s admin against the org's peer (at ``address``)."""
    peer = config.peer(org)
    return {
        "FABRIC_CFG_PATH": str(layout.config(peer)),
        "CORE_PEER_LOCALMSPID": org.msp_id,
        "CORE_PEER_MSPCONFIGPATH": str(layout.user(org, "admin") / "msp"),
        "CORE_PEER_ADDRESS": _joined(address(peer, "listen")),
        "CORE_PEER_TLS_ENABLED": "true",
        "CORE_PEER_TLS_ROOTCERT_FILE": str(layout.ca_root(org)),
        "FABRIC_LOGGING_SPEC": "warning",
    }


def orderer_args(config: ConsortiumConfig, layout: Layout, orderer: Node, *, address: Address = loopback) -> list[str]:
    """The peer CLI's arguments for sending transactions to ``orderer`` over TLS."""
    return ["-o", _joined(address(orderer, "listen")), "--tls", "--cafile", str(layout.ca_root(config.orderer_org))]


def install(peer_bin: Path, config: ConsortiumConfig, layout: Layout, org: Organization, pkg: Path, *,
            address: Address = loopback) -> None:
    run([str(peer_bin), "lifecycle", "chaincode", "install", str(pkg)],
        env=admin_env(config, layout, org, address=address), what=f"chaincode install on {config.peer(org).name}")


def approve(peer_bin: Path, config: ConsortiumConfig, layout: Layout, org: Organization, package_id: str,
            orderer: Node, *, address: Address = loopback) -> None:
    run([str(peer_bin), "lifecycle", "chaincode", "approveformyorg",
         *orderer_args(config, layout, orderer, address=address),
         "--channelID", config.channel, "--name", config.chaincode, "--version", DEFINITION_VERSION,
         "--sequence", str(DEFINITION_SEQUENCE), "--package-id", package_id, "--waitForEvent"],
        env=admin_env(config, layout, org, address=address), what=f"chaincode approval by {org.name}")


def commit(peer_bin: Path, config: ConsortiumConfig, layout: Layout, orderer: Node, *,
           address: Address = loopback) -> None:
    """Commit the definition, endorsed by every company's peer (a majority is required)."""
    first = config.companies[0]
    peers: list[str] = []
    for org in config.companies:
        peers += ["--peerAddresses", _joined(address(config.peer(org), "listen")),
                  "--tlsRootCertFiles", str(layout.ca_root(org))]
    run([str(peer_bin), "lifecycle", "chaincode", "commit", *orderer_args(config, layout, orderer, address=address),
         "--channelID", config.channel, "--name", config.chaincode, "--version", DEFINITION_VERSION,
         "--sequence", str(DEFINITION_SEQUENCE), *peers, "--waitForEvent"],
        env=admin_env(config, layout, first, address=address), what="chaincode definition commit")
