"""Real Fabric components for integration tests, started once per session on 127.0.0.1.

``fabric_ca`` is a lone Fabric CA server with TLS; ``consortium`` is the whole network that
``fedledger network up`` brings up (CAs, three Raft orderers, one peer per company, the chaincode
services), in a temporary home and on ports no other test uses. The binaries come from
scripts/install-fabric.sh, which CI runs first; without them these fixtures fail, never skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import json

import pytest

from fedledger.errors import CAUnreachableError
from fedledger.fabric.ca import CAClient
from fedledger.fabric.gateway import Gateway, connect
from fedledger.fabric.identity import Identity, Signer
from fedledger.network import ConsortiumConfig, Network
from fedledger.network.ports import free_base_port


def fabric_bin(name: str) -> Path | None:
    """A Fabric binary from the project's cache (or PATH), or None."""
    cache = Path(os.environ.get("FEDLEDGER_CACHE", Path.home() / ".cache" / "fedledger"))
    candidate = cache / "bin" / name
    if candidate.is_file():
        return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningCA:
    """A fabric-ca-server process and how to reach it."""

    url: str
    tls_root_pem: bytes
    process: subprocess.Popen[bytes]
    home: Path
    admin: tuple[str, str] = ("admin", "adminpw")

    def client(self, msp_id: str = "ManufacturerMSP") -> CAClient:
        return CAClient(self.url, msp_id=msp_id, tls_root_pem=self.tls_root_pem, ca_name="ca-manufacturer")


@pytest.fixture(scope="session")
def fabric_ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCA]:
    server = fabric_bin("fabric-ca-server")
    if server is None:
        pytest.skip("fabric-ca-server is not installed: run scripts/install-fabric.sh ca (CI does)")
    home = tmp_path_factory.mktemp("fabric-ca")
    port = free_port()
    log = open(home / "server.log", "wb")
    process = subprocess.Popen(
        [str(server), "start", "-b", "admin:adminpw", "--home", str(home), "--address", "127.0.0.1",
         "--port", str(port), "--tls.enabled", "--csr.hosts", "127.0.0.1,localhost",
         "--ca.name", "ca-manufacturer", "--operations.listenaddress", f"127.0.0.1:{free_port()}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    ca_cert = home / "ca-cert.pem"
    deadline = time.monotonic() + 30
    running = None
    while time.monotonic() < deadline and process.poll() is None:
        if ca_cert.exists():
            running = RunningCA(f"https://127.0.0.1:{port}", ca_cert.read_bytes(), process, home)
            try:
                running.client().info()
                break
            except CAUnreachableError:
                pass
        time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError(f"fabric-ca-server did not come up; see {home / 'server.log'}:\n"
                           + (home / "server.log").read_text()[-2000:])
    assert running is not None
    yield running
    process.terminate()
    process.wait(timeout=10)
    log.close()


@dataclass
class Consortium:
    """A running network (processes or containers) and what clients need to use it."""

    net: Network
    profile: dict[str, object]

    @property
    def channel(self) -> str:
        return self.net.config.channel

    @property
    def chaincode(self) -> str:
        return self.net.config.chaincode

    def org(self, name: str) -> dict[str, object]:
        orgs = self.profile["orgs"]
        assert isinstance(orgs, dict)
        entry = orgs[name]
        assert isinstance(entry, dict)
        return entry

    def identity(self, org: str, user: str = "client") -> tuple[Identity, Signer]:
        entry = self.org(org)
        users = entry["users"]
        assert isinstance(users, dict)
        paths = users[user]
        identity = Identity(str(entry["msp_id"]), Path(paths["cert"]).read_bytes())
        return identity, Signer.from_pem(Path(paths["key"]).read_bytes())

    def gateway(self, org: str, user: str = "client", *, via: str | None = None) -> Gateway:
        """A Gateway connection as ``user`` of ``org``, to ``via``'s peer (default: the org's own)."""
        identity, signer = self.identity(org, user)
        peer = self.org(via or org)["peer"]
        assert isinstance(peer, dict)
        return connect(str(peer["address"]), identity=identity, signer=signer,
                       tls_root_certificates=Path(peer["tls_ca"]).read_bytes())


@pytest.fixture(scope="session")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    """The demo consortium (network/consortium.toml), brought up once for the session."""
    home = tmp_path_factory.mktemp("consortium")
    config = ConsortiumConfig.load(base_port=free_base_port(3))
    net = Network(config, home)
    net.up()
    try:
        yield Consortium(net, json.loads(net.layout.profile.read_text()))
    finally:
        net.down()
