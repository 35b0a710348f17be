"""Flower's deployment engine on this machine: one SuperLink and one SuperNode per company.

Each company's SuperNode is its own process (and runs its ClientApp in a process of its own),
connected to a local SuperLink; ``flwr run`` submits the FedLedger app to it. Logs go to
``<home>/flower/logs``; ``FLWR_HOME`` points the Flower CLI at a connection named ``fedledger``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedledger.errors import FedLedgerError
from fedledger.network.processes import ProcessSpec, log_tail, port_in_use, start, stop

REPO = Path(__file__).resolve().parents[3]


class DeploymentError(FedLedgerError):
    """The Flower deployment could not start, or a run did not finish."""


def _tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        raise DeploymentError(f"{name} is not installed: pip install -e '.[fl]'")
    return found


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def _pairs(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={_toml_value(v)}" for k, v in values.items())


@dataclass
class FlowerDeployment:
    """A SuperLink and SuperNodes started for one training run, stopped together."""

    home: Path
    base_port: int
    processes: list[tuple[int, str]] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.home / "flower"

    @property
    def address(self) -> str:
        """The SuperLink's one HTTP endpoint: its Fleet, Control and runtime APIs."""
        return f"127.0.0.1:{self.base_port}"

    def _env(self) -> dict[str, str]:
        return {"FLWR_HOME": str(self.root), "PYTHONUNBUFFERED": "1"}

    def _start(self, name: str, argv: list[str]) -> None:
        spec = ProcessSpec(tuple(argv), self._env(), str(self.root / "logs" / f"{name}.log"), str(self.root))
        pid = start(spec)
        # Flower's commands are Python scripts: the process's argv[0] is the interpreter, which
        # /proc shows only once the kernel has finished the exec.
        executable = ""
        for _ in range(100):
            executable = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            if executable:
                break
            time.sleep(0.01)
        self.processes.append((pid, executable))

    def start_superlink(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        busy = [p for p in (self.base_port,) if port_in_use(p)]
        if busy:
            raise DeploymentError(f"ports {busy} are in use; choose another --flower-port")
        (self.root / "config.toml").write_text(
            f'[superlink]\ndefault = "fedledger"\n\n[superlink.fedledger]\naddress = "{self.address}"\ninsecure = true\n')
        self._start("superlink", [_tool("flower-superlink"), "--insecure", "--host", "127.0.0.1",
                                  "--port", str(self.base_port), "--database", str(self.root / "superlink.db")])
        self._wait_port(self.base_port, "the SuperLink")

    def start_supernode(self, company: str, *, index: int, node_config: dict[str, Any]) -> None:
        port = self.base_port + 10 + index
        if port_in_use(port):
            raise DeploymentError(f"port {port} for {company}'s SuperNode is in use; choose another flower port")
        self._start(f"supernode-{company}", [_tool("flower-supernode"), "--insecure", "--superlink", self.address,
                                             "--port", str(port), "--node-config", _pairs(node_config)])
        self._wait_port(port, f"{company}'s SuperNode", log=f"supernode-{company}.log")

    def _wait_port(self, port: int, what: str, timeout: float = 60, log: str = "superlink.log") -> None:
        from fedledger.network.processes import running

        deadline = time.monotonic() + timeout
        while not port_in_use(port):
            if not all(running(pid, exe) for pid, exe in self.processes):
                raise DeploymentError(f"{what} exited before listening on port {port}: "
                                      f"{log_tail(str(self.root / 'logs' / log))}")
            if time.monotonic() > deadline:
                raise DeploymentError(f"{what} did not listen on port {port}; see {self.root / 'logs'}")
            time.sleep(0.2)

    def run(self, app: Path, run_config: dict[str, Any], *, timeout: float,
            progress: Callable[[str], None] | None = None) -> str:
        """``flwr run`` the app and stream its logs until it finishes; return them.

        The coordinator's own lines (``[fedledger] ...``: each round's accuracy, loss, epsilon) are
        passed to ``progress`` as they arrive.
        """
        argv = [_tool("flwr"), "run", str(app), "fedledger", "--stream", "--run-config", _pairs(run_config)]
        lines: list[str] = []
        process = subprocess.Popen(argv, env={**os.environ, **self._env()}, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, cwd=self.root)
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                if progress is not None and "[fedledger]" in line:
                    progress(line.split("[fedledger]", 1)[1].strip())
            process.wait()
        finally:
            timer.cancel()
        output = "".join(lines)
        (self.root / "logs" / "run.log").write_text(output)
        if process.returncode != 0:
            if process.returncode == -9:
                raise DeploymentError(f"the Flower run did not finish within {timeout:.0f} s; see {self.root / 'logs'}")
            raise DeploymentError(f"flwr run failed ({shlex.join(argv[:4])}): {output.strip()[-800:]}")
        return output

    def stop(self) -> None:
        stop(reversed(self.processes))
        self.processes.clear()
