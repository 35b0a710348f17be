"""Flower's deployment engine: the coordinator's SuperLink, one SuperNode per company.

The SuperLink runs from the coordinator's home (its TLS key and logs under ``<run>/flower``; its
state in memory, for the run); each company's SuperNode runs from that company's own home (its
node key, its logs under ``<company home>/flower``) and runs its ClientApp in a process of its own.
``flwr run`` submits the FedLedger app over TLS; ``FLWR_HOME`` points the Flower CLI at a
connection named ``fedledger``. Each party's processes run where its ``Placement`` says: by
default all on this machine at 127.0.0.1; on separate hosts, the SuperLink binds the
coordinator's address (its certificate names that address), ``flwr`` runs in the coordinator's
namespace, and each SuperNode runs in its company's and dials the SuperLink there.
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
from fedledger.fabric.ledger import Ledger
from fedledger.network.hosts import LOCAL, Placement
from fedledger.network.processes import ProcessSpec, listening, log_tail, port_in_use, program_of, running, start, stop

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


def _names(address: str) -> list[str]:
    """The names in the SuperLink's certificate: its address and, at 127.0.0.1, localhost."""
    return [address, "localhost"] if address == LOCAL.address else [address]


def _superlink_tls(directory: Path, address: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for the SuperLink at ``address`` (the coordinator's own; key 0600)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from fedledger.fl.party import write_secret

    ca_file, cert_file, key_file = directory / "ca.crt", directory / "server.crt", directory / "server.key"
    if ca_file.exists() and cert_file.exists() and key_file.exists():
        names = x509.load_pem_x509_certificate(cert_file.read_bytes()).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
        if ipaddress.ip_address(address) in names.get_values_for_type(x509.IPAddress):
            return ca_file, cert_file, key_file
        # Made for another address: this run's SuperLink gets a new CA and pair (each SuperNode
        # copies the CA certificate when it starts), since TLS to the old one would fail.
        for stale in (ca_file, cert_file, key_file):
            stale.unlink()
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "FedLedger coordinator SuperLink CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "superlink")]))
              .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address)),
                                                          *(x509.DNSName(n) for n in _names(address)[1:])]),
                             critical=False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    write_secret(key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    return ca_file, cert_file, key_file


def flower_env(flwr_home: Path) -> dict[str, str]:
    """The environment every Flower process of a party runs with (its own FLWR_HOME, no telemetry)."""
    # The SuperLink's SuperExec looks for a ServerApp to start every second by default.
    return {"FLWR_HOME": str(flwr_home), "PYTHONUNBUFFERED": "1", "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1", "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1"}


def supernode_argv(*, superlink: str, ca_file: Path, node_key: Path, port: int,
                   node_config: dict[str, Any]) -> list[str]:
    """A company's SuperNode: dials ``superlink`` over TLS (trusting ``ca_file``), signs with its node key.

    Its runtime API, where its ClientApp takes its work, is on its own 127.0.0.1:``port``. The
    ClientApp runs in the SuperNode's process and stays loaded between messages
    (:mod:`fedledger.node.supernode`).
    """
    return [sys.executable, "-m", "fedledger.node.supernode", "--superlink", superlink, "--root-certificates", str(ca_file),
            "--auth-supernode-private-key", str(node_key), "--host", LOCAL.address, "--port", str(port),
            "--node-config", _pairs(node_config)]


@dataclass
class FlowerDeployment:
    """A SuperLink (the coordinator's) and SuperNodes (each company's) for one run, stopped together.

    The SuperLink serves TLS with a certificate of the coordinator's own CA and admits only
    SuperNodes whose public key it was told to (``register_node``: the keys the companies recorded
    on the ledger); every Fleet request is signed with the node's key. ``superlink`` places the
    coordinator's processes (the SuperLink and the ``flwr`` CLI) and is the address it binds.
    """

    home: Path
    base_port: int
    superlink: Placement = LOCAL
    processes: list[tuple[int, str]] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.home / "flower"

    @property
    def ca_file(self) -> Path:
        return self.root / "tls" / "ca.crt"

    @property
    def address(self) -> str:
        """The SuperLink's one HTTPS endpoint: its Fleet, Control and runtime APIs."""
        return f"{self.superlink.address}:{self.base_port}"

    def _start(self, log: Path, argv: list[str], flwr_home: Path, placement: Placement) -> int:
        log.parent.mkdir(parents=True, exist_ok=True)
        spec = ProcessSpec(tuple(argv), flower_env(flwr_home), str(log), str(flwr_home), placement.namespace)
        pid = start(spec)
        # Flower's commands are Python scripts: the process's argv[0] is the interpreter, which
        # /proc shows only once the kernel has finished the exec.
        executable = ""
        for _ in range(100):
            executable = program_of(pid)
            if executable:
                break
            time.sleep(0.01)
        self.processes.append((pid, executable))
        return pid

    def start_superlink(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if port_in_use(self.base_port, self.superlink.address):
            raise DeploymentError(f"port {self.base_port} is in use; choose another --flower-port")
        ca, cert, key = _superlink_tls(self.root / "tls", self.superlink.address)
        (self.root / "config.toml").write_text(
            f'[superlink]\ndefault = "fedledger"\n\n[superlink.fedledger]\naddress = "{self.address}"\n'
            f'root-certificates = "{ca}"\n')
        log = self.root / "logs" / "superlink.log"
        pid = self._start(log, [_tool("flower-superlink"), "--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert),
                                "--ssl-keyfile", str(key), "--enable-supernode-auth",
                                "--disable-runtime-dependency-installation", "--host", self.superlink.address,
                                # No --database: Flower's in-memory state. Its SQLite state spent
                                # most of the SuperLink's CPU on every node's poll, and a run's
                                # SuperLink lives only as long as the run.
                                "--port", str(self.base_port)],
                          self.root, self.superlink)
        self._wait_listening(pid, self.superlink.address, self.base_port, "the SuperLink", log)

    def register_node(self, company: str, public_key: str) -> None:
        """Admit the SuperNode holding ``public_key`` (OpenSSH, as its company recorded it on the ledger)."""
        key_file = self.root / "nodes" / f"{company}.pub"
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(public_key.strip() + "\n")
        done = subprocess.run(self.superlink.command([_tool("flwr"), "supernode", "register", str(key_file),
                                                      "fedledger", "--name", company]),
                              env={**os.environ, **flower_env(self.root)}, capture_output=True, text=True,
                              cwd=self.root, timeout=60)
        if done.returncode != 0:
            raise DeploymentError(f"the SuperLink did not admit {company}'s node key: "
                                  f"{(done.stdout + done.stderr).strip()[-400:]}")

    def start_supernode(self, company: str, *, home: Path, node_key: Path, index: int,
                        node_config: dict[str, Any], placement: Placement = LOCAL) -> None:
        """Start ``company``'s SuperNode from its own home where ``placement`` says, signing with its node
        key, trusting the SuperLink's CA.

        Its runtime API (where its own ClientApps fetch their work) is on 127.0.0.1: its own
        loopback, which on a host of its own nobody else shares.
        """
        port = self.base_port + 10 + index
        if placement.local and port_in_use(port):
            raise DeploymentError(f"port {port} for {company}'s SuperNode is in use; choose another flower port")
        flower = home / "flower"
        flower.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The SuperLink's CA certificate is public: the company keeps its own copy.
        (flower / "superlink-ca.crt").write_bytes(self.ca_file.read_bytes())
        log = flower / "logs" / "supernode.log"
        pid = self._start(log, supernode_argv(superlink=self.address, ca_file=flower / "superlink-ca.crt",
                                              node_key=node_key, port=port, node_config=node_config), flower, placement)
        self._wait_listening(pid, LOCAL.address, port, f"{company}'s SuperNode", log)

    def admit(self, ledger: Ledger, companies: list[str]) -> None:
        """Admit each company's node by the node key it recorded on the ledger itself (the allow list)."""
        for company in companies:
            node_key = str(ledger.get_company(company).get("node_key", ""))
            if not node_key:
                raise DeploymentError(f"{company} has recorded no node key on the ledger: it must run "
                                      "`fedledger node init` first")
            self.register_node(company, node_key)

    def _wait_listening(self, pid: int, host: str, port: int, what: str, log: Path, timeout: float = 60) -> None:
        """Wait until ``pid``'s namespace listens on ``host:port`` (seen in /proc, so a namespace's own
        loopback too)."""
        deadline = time.monotonic() + timeout
        while not listening(pid, host, port):
            if not all(running(other, exe) for other, exe in self.processes):
                raise DeploymentError(f"{what} exited before listening on port {port}: "
                                      f"{log_tail(str(log))}")
            if time.monotonic() > deadline:
                raise DeploymentError(f"{what} did not listen on port {port}; see {log}")
            time.sleep(0.2)

    def run(self, app: Path, run_config: dict[str, Any], *, timeout: float,
            progress: Callable[[str], None] | None = None) -> str:
        """``flwr run`` the app and stream its logs until it finishes; return them.

        The coordinator's own lines (``[fedledger] ...``: each round's accuracy, loss, epsilon) are
        passed to ``progress`` as they arrive.
        """
        argv = [_tool("flwr"), "run", str(app), "fedledger", "--stream", "--run-config", _pairs(run_config)]
        lines: list[str] = []
        process = subprocess.Popen(self.superlink.command(argv), env={**os.environ, **flower_env(self.root)},
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=self.root)
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
