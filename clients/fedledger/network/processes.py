"""Local processes of a native network: start one with its own log, find it again, stop it."""

from __future__ import annotations

import errno
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fedledger.errors import NetworkError


@dataclass(frozen=True)
class ProcessSpec:
    """How to (re)start a node: its command, environment additions and log file."""

    argv: tuple[str, ...]
    env: dict[str, str]
    log: str
    cwd: str

    def to_json(self) -> dict[str, object]:
        return {"argv": list(self.argv), "env": dict(sorted(self.env.items())), "log": self.log, "cwd": self.cwd}

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> ProcessSpec:
        argv, env = raw["argv"], raw["env"]
        assert isinstance(argv, list) and isinstance(env, dict)
        return cls(tuple(str(a) for a in argv), {str(k): str(v) for k, v in env.items()}, str(raw["log"]),
                   str(raw["cwd"]))


def start(spec: ProcessSpec) -> int:
    """Start ``spec`` in its own session (so a terminal's Ctrl-C does not reach it); return its pid."""
    Path(spec.log).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **spec.env}
    with open(spec.log, "ab") as log:
        log.write(f"\n=== fedledger: starting {' '.join(spec.argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(spec.argv, env=env, cwd=spec.cwd, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    return process.pid


def running(pid: int, executable: str) -> bool:
    """Whether ``pid`` is alive and is still ``executable`` (a recycled pid is not ours)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        status = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()[0]
    except OSError:
        return False
    # A zombie (our own child, not yet reaped) has exited as far as anyone using it can tell.
    return status != "Z" and cmdline == executable


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _signal_group(pid: int, sig: int) -> None:
    """Signal the node's whole process group: ``start`` made each node a session leader, and
    some nodes (Flower's SuperNodes) run helpers of their own that must go with them."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop(processes: Iterable[tuple[int, str]], *, timeout: float = 15.0) -> list[int]:
    """SIGTERM each (pid, executable) still running, SIGKILL what outlives ``timeout``; return the pids stopped."""
    targets = [(pid, exe) for pid, exe in processes if running(pid, exe)]
    for pid, _ in targets:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, _ in targets:
            _reap(pid)
        if not any(running(pid, exe) for pid, exe in targets):
            break
        time.sleep(0.1)
    for pid, exe in targets:
        if running(pid, exe):
            _signal_group(pid, signal.SIGKILL)
    for pid, exe in targets:
        for _ in range(50):
            _reap(pid)
            if not running(pid, exe):
                break
            time.sleep(0.1)
    return [pid for pid, _ in targets]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already listens on ``host:port`` (or the port cannot be bound).

    An address that is not this machine's (a node in a network namespace of its own) is never
    in use here: nothing on this machine can hold it.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as err:
            return err.errno != errno.EADDRNOTAVAIL
    return False


def http_ok(url: str, *, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> bool:
    """Whether GET ``url`` answers 200 (a node's /healthz)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tls_answers(host: str, port: int, *, root_pem: bytes, client: tuple[str, str] | None = None,
                timeout: float = 2.0) -> bool:
    """Whether a TLS server on ``host:port`` completes a handshake verified against ``root_pem``."""
    context = ssl.create_default_context(cadata=root_pem.decode())
    context.check_hostname = False
    if client is not None:
        context.load_cert_chain(*client)
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw):
                return True
    except (OSError, ssl.SSLError):
        return False


def require_binaries(bin_dir: Path, names: Iterable[str]) -> None:
    """Refuse, naming the fix, when a Fabric binary the bring-up runs is not in ``bin_dir``."""
    missing = [name for name in names if not (bin_dir / name).is_file()]
    if missing:
        raise NetworkError(f"missing Fabric binaries in {bin_dir}: {', '.join(missing)}. "
                           "Run scripts/install-fabric.sh to build them")


def log_tail(log: str, lines: int = 3) -> str:
    """The last lines of a log, for an error message."""
    try:
        text = Path(log).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(line.strip()[:300] for line in text[-lines:]) or "(empty log)"
