"""Real Fabric components for integration tests, started once per session on 127.0.0.1.

Today that is a Fabric CA server with TLS (the peers and orderers are blocked: Fabric v3.1.5
is not served by the Go module proxy here; see README). The binaries come from
scripts/install-fabric.sh, which CI runs first.
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

import pytest

from fedledger.errors import CAUnreachableError
from fedledger.fabric.ca import CAClient


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
