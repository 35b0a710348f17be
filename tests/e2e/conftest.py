"""End-to-end: the `fedledger` command as a user runs it, against a network it brings up itself."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import free_base_port


@dataclass
class CliNetwork:
    home: Path
    base_port: int

    def party(self, name: str) -> Path:
        """Party ``name``'s own home, as `fedledger train` lays them out on one machine."""
        return self.home / "parties" / name

    def run(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "fedledger.cli.app", *args, "--home", str(self.home)],
                              capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"fedledger {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done

    def popen(self, *args: str) -> subprocess.Popen[str]:
        # A session of its own, so a test can stop it with everything it started (os.killpg).
        return subprocess.Popen([sys.executable, "-m", "fedledger.cli.app", *args, "--home", str(self.home)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.fixture(scope="session")
def cli_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliNetwork]:
    """`fedledger network up` in a fresh home; `fedledger network down --purge --yes` at the end."""
    home = tmp_path_factory.mktemp("e2e") / "home"
    base = free_base_port(3, start=31000)
    up = subprocess.run([sys.executable, "-m", "fedledger.cli.app", "network", "up", "--home", str(home),
                         "--base-port", str(base), "--json"], capture_output=True, text=True, timeout=600)
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["seconds"] < 120
    network = CliNetwork(home, base)
    try:
        yield network
    finally:
        network.run("network", "down", "--purge", "--yes", check=False)
