"""Local processes of a network: start one (in a network namespace, if given) with its own log,
find it again, see what it listens on, stop it."""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fedledger.errors import NetworkError


@functools.cache
def _ip() -> str:
    found = shutil.which("ip")
    if found is None:
        raise NetworkError("`ip` (iproute2) is not installed; it runs processes in network namespaces "
                           "(Debian: apt-get install iproute2)")
    return found


def in_namespace(namespace: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run in network namespace ``namespace`` (``ip netns exec``), or as it is for None."""
    return list(argv) if namespace is None else [_ip(), "netns", "exec", namespace, *argv]


@dataclass(frozen=True)
class ProcessSpec:
    """How to (re)start a node: its command, environment additions, log file and network namespace."""

    argv: tuple[str, ...]
    env: dict[str, str]
    log: str
    cwd: str
    namespace: str | None = None  # None: this machine's own network

    def to_json(self) -> dict[str, object]:
        return {"argv": list(self.argv), "env": dict(sorted(self.env.items())), "log": self.log, "cwd": self.cwd,
                **({} if self.namespace is None else {"namespace": self.namespace})}

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> ProcessSpec:
        argv, env, namespace = raw["argv"], raw["env"], raw.get("namespace")
        assert isinstance(argv, list) and isinstance(env, dict)
        return cls(tuple(str(a) for a in argv), {str(k): str(v) for k, v in env.items()}, str(raw["log"]),
                   str(raw["cwd"]), None if namespace is None else str(namespace))


def start(spec: ProcessSpec) -> int:
    """Start ``spec`` in its own session (so a terminal's Ctrl-C does not reach it) and namespace; return its pid."""
    Path(spec.log).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **spec.env}
    argv = in_namespace(spec.namespace, spec.argv)
    with open(spec.log, "ab") as log:
        log.write(f"\n=== fedledger: starting {' '.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(argv, env=env, cwd=spec.cwd, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    if spec.namespace is not None:
        # `ip netns exec` enters the namespace, then execs the program in its own place (same pid).
        # Until it has, /proc shows ip's command line and `running` would call the node gone.
        deadline = time.monotonic() + 10
        while process.poll() is None and program_of(process.pid) in ("", argv[0]) and time.monotonic() < deadline:
            time.sleep(0.005)
    return process.pid


def program_of(pid: int) -> str:
    """The program ``pid`` runs, as /proc shows it (argv[0]; a script's interpreter); "" when gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""


def running(pid: int, executable: str) -> bool:
    """Whether ``pid`` is alive and is still ``executable`` (a recycled pid is not ours)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()[0]
    except OSError:
        return False
    # A zombie (our own child, not yet reaped) has exited as far as anyone using it can tell.
    return status != "Z" and program_of(pid) == executable


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


@dataclass(frozen=True)
class TcpSocket:
    """One TCP socket of a network namespace, as /proc/<pid>/net/tcp{,6} lists it."""

    local: tuple[str, int]
    remote: tuple[str, int]
    state: str  # the kernel's: "LISTEN", "ESTABLISHED", or its hex code for any other

    @property
    def listening(self) -> bool:
        return self.state == "LISTEN"


_TCP_STATES = {"01": "ESTABLISHED", "0A": "LISTEN"}


def _proc_address(text: str) -> tuple[str, int]:
    """``0100007F:1F90`` (/proc's host-order hex) as ("127.0.0.1", 8080); IPv6 likewise."""
    raw, port = text.split(":")
    packed = b"".join(bytes.fromhex(raw[i:i + 8])[::-1] for i in range(0, len(raw), 8))
    address = ipaddress.ip_address(packed)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address), int(port, 16)


def tcp_sockets(pid: int) -> list[TcpSocket]:
    """Every TCP socket of ``pid``'s network namespace (its own namespace's, not only its own sockets).

    Read from /proc, so it sees a namespace's loopback too, which no probe from outside can reach.
    """
    found = []
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            found.append(TcpSocket(_proc_address(fields[1]), _proc_address(fields[2]),
                                   _TCP_STATES.get(fields[3], fields[3])))
    return found


def listening(pid: int, host: str, port: int) -> bool:
    """Whether something in ``pid``'s network namespace listens on ``host:port`` (or on every address)."""
    return any(s.listening and s.local[1] == port and s.local[0] in (host, "0.0.0.0", "::")
               for s in tcp_sockets(pid))


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
