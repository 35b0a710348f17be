"""The demo consortium in containers, driven through docker-compose.yaml: bring-up, status, teardown.

The steps and their order are the native runtime's (``fedledger.network.native``): start the CAs,
issue every identity from them, make the channel's genesis block, start and join the orderers and
the peers, then install, approve and commit the chaincode with each company's chaincode service
running. What differs is where nodes run: each is a compose service named by its host name, sees
only its own directory of the network home (bind-mounted at ``NODE_ROOT``), listens on Fabric's
usual in-container ports, and is published on 127.0.0.1 at the native port plan's ports. So the
genesis block, node configurations and chaincode packages name the in-container addresses
(``peer0.warehouse.fedledger:7051``), while the host tools (osnadmin, the peer CLI, the gateway
client) and the connection profile use the published ones, exactly as for the native network.

docker-compose.yaml is static, so this runtime runs only the demo consortium it describes
(network/consortium.toml; the base port, channel and block cutting may differ).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from fedledger.errors import (
    GatewayError,
    NetworkConfigError,
    NetworkError,
    NetworkStateError,
    NodeError,
)
from fedledger.fabric.ca import CAClient
from fedledger.fabric.gateway import connect
from fedledger.fabric.identity import Identity, Signer
from fedledger.network import chaincode as lifecycle
from fedledger.network.channel import genesis_block, join_orderer, run
from fedledger.network.config import DEFAULT_CONFIG, ConsortiumConfig, Node, Organization, role_order
from fedledger.network.layout import Layout, cache_dir
from fedledger.network.nodeconfig import NodePlaces, orderer_settings, peer_settings
from fedledger.network.native import NodeStatus, UpReport
from fedledger.network.pki import ca_answers, ca_client, issue_consortium, save_registrar
from fedledger.network.profile import write_profile
from fedledger.network.processes import http_ok, port_in_use, tls_answers

REPO = Path(__file__).resolve().parents[3]
COMPOSE_FILE = REPO / "docker-compose.yaml"
HOST_TOOLS = ("fabric-ca-server", "peer", "configtxgen", "osnadmin")

# Where each container sees its own node directory (MSP, TLS pair, config, ledger), and the
# chaincode-as-a-service builder scripts that docker-compose.yaml mounts into the peers.
NODE_ROOT = PurePosixPath("/var/hyperledger/fedledger")
BUILDER_ROOT = PurePosixPath("/opt/fedledger/builders/ccaas")

# Ports inside the containers: every node has its own network namespace, so all use Fabric's usual ones.
LISTEN_PORT = {"ca": 7054, "orderer": 7050, "peer": 7051, "chaincode": 9999}
ORDERER_ADMIN_PORT = 7053
PEER_CHAINCODE_PORT = 7052
OPERATIONS_PORT = 9443

_IMAGE_VARIABLE = re.compile(r"\$\{(FEDLEDGER_[A-Z]+_IMAGE):-([^}]+)\}")
_ROLES = ("ca", "orderer", "peer", "chaincode")
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@functools.cache
def default_images() -> dict[str, str]:
    """docker-compose.yaml's image variables and their defaults there (the one place they are written):
    Hyperledger's official images, and ours for the chaincode service."""
    return dict(_IMAGE_VARIABLE.findall(COMPOSE_FILE.read_text()))


def in_container_address(node: Node) -> tuple[str, int]:
    """Where other nodes reach ``node`` on the compose network: its service name and Fabric's port."""
    return node.host, LISTEN_PORT[node.role]


def port_variable(node: Node, kind: str = "listen") -> str:
    """The docker-compose.yaml variable publishing ``node``'s ``kind`` port (FEDLEDGER_PORT_PEER0_CARRIER)."""
    key = node.name.removesuffix(".fedledger").replace(".", "_").replace("-", "_").upper()
    return f"FEDLEDGER_PORT_{key}" + ("" if kind == "listen" else f"_{kind.upper()}")


def _published(node: Node) -> dict[str, int]:
    """The ports of ``node`` that docker-compose.yaml publishes, by kind (the peer's chaincode
    listener is not: chaincode services dial no peer)."""
    return {k: p for k, p in node.ports().items() if k != "chaincode"}


def check_demo(config: ConsortiumConfig, *, source: str = "the consortium") -> None:
    """Refuse a consortium other than the one docker-compose.yaml describes."""
    demo = ConsortiumConfig.load(DEFAULT_CONFIG)

    def shape(c: ConsortiumConfig) -> tuple[object, ...]:
        return c.orderer_org.name, c.orderer_count, tuple(o.name for o in c.companies), c.chaincode

    if shape(config) != shape(demo):
        raise NetworkConfigError(
            f"the docker runtime runs only the demo consortium that docker-compose.yaml describes "
            f"(orderer org {demo.orderer_org.name} with {demo.orderer_count} orderers; companies "
            f"{', '.join(o.name for o in demo.companies)}; chaincode '{demo.chaincode}'), but {source} has "
            f"orderer org {config.orderer_org.name} with {config.orderer_count} orderer(s); companies "
            f"{', '.join(o.name for o in config.companies)}; chaincode '{config.chaincode}' (only the base port, "
            "channel and block cutting may differ from the demo's). Run other consortia with --runtime native")


@functools.cache
def compose_command() -> tuple[str, ...]:
    """``docker compose`` (the v2 plugin) if present, else the older ``docker-compose``."""
    try:
        if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0:
            return ("docker", "compose")
    except (OSError, subprocess.TimeoutExpired):
        pass
    if shutil.which("docker-compose"):
        return ("docker-compose",)
    raise NetworkError("neither `docker compose` nor `docker-compose` is installed (Debian: docker-compose-v2 or "
                       "docker-compose); scripts/start-docker.sh installs one")


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise NetworkError("the docker client is not installed (Debian: docker.io); "
                           "scripts/start-docker.sh installs it and starts the engine") from None
    except subprocess.TimeoutExpired:
        raise NetworkError(f"`docker {' '.join(args[:2])}` timed out after {timeout:.0f} s; "
                           "is the Docker engine overloaded or stuck?") from None


def engine_answers() -> bool:
    """Whether a Docker engine answers this machine's docker client."""
    try:
        return _docker("info", "--format", "{{.ServerVersion}}", timeout=20).returncode == 0
    except NetworkError:
        return False


@dataclass(frozen=True)
class ContainerStatus(NodeStatus):
    """What ``status`` knows of one node run as a container (``pid`` is None; ``container`` names it)."""

    container: str | None

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "container": self.container}


@dataclass(frozen=True)
class _Container:
    name: str
    running: bool


class DockerNetwork:
    """The demo consortium run as containers of one compose project, its state under one home."""

    runtime = "docker"

    def __init__(self, config: ConsortiumConfig, home: Path, *, bin_dir: Path | None = None) -> None:
        self.config = config
        self.layout = Layout(home)
        self.bin_dir = bin_dir or cache_dir() / "bin"
        self.fabric_config = self.bin_dir.parent / "config"
        # One compose project per home, so a test network and a user's network never share containers.
        self.project = "fedledger-" + hashlib.sha256(str(self.layout.home).encode()).hexdigest()[:8]

    @classmethod
    def open(cls, home: Path, *, bin_dir: Path | None = None) -> DockerNetwork:
        """The network recorded in ``home``, with the configuration it was brought up with."""
        layout = Layout(home)
        state = layout.read_state()
        if state is None:
            raise NetworkStateError(f"no network in {home}; run `fedledger network up --runtime docker`")
        if state.get("runtime") != cls.runtime:
            raise NetworkStateError(f"the network in {home} runs with the {state.get('runtime')!r} runtime, "
                                    "not in containers")
        net = cls(ConsortiumConfig.from_dict(state["config"], source=str(layout.state_file)), home, bin_dir=bin_dir)
        net.project = str(state.get("compose_project", net.project))
        return net

    # ---------------------------------------------------------------- paths and variables

    @property
    def compose_env_file(self) -> Path:
        """The variables docker-compose.yaml reads, as a file for running compose by hand."""
        return self.layout.home / "compose.env"

    def chaincode_env_file(self, org: Organization) -> Path:
        """CHAINCODE_ID for ``org``'s chaincode service (docker-compose.yaml reads it as an env_file)."""
        return self.layout.node(self.config.chaincode_service(org)) / "chaincode.env"

    def _variables(self) -> dict[str, str]:
        """docker-compose.yaml's variables for this network: home, user, images and published ports."""
        variables = {"FEDLEDGER_HOME": str(self.layout.home), "FEDLEDGER_UID": str(os.getuid()),
                     "FEDLEDGER_GID": str(os.getgid())}
        variables |= {name: os.environ.get(name) or default for name, default in default_images().items()}
        for node in self.config.nodes():
            for kind, port in _published(node).items():
                variables[port_variable(node, kind)] = str(port)
        return variables

    # ---------------------------------------------------------------- state file

    def _read_state(self) -> dict[str, Any] | None:
        return self.layout.read_state()

    def _write_state(self, state: dict[str, Any]) -> None:
        self.layout.write_state(state)

    # ---------------------------------------------------------------- docker compose

    def _compose(self, variables: dict[str, str], *args: str, what: str, timeout: float = 180) -> str:
        argv = [*compose_command(), "--project-name", self.project, "--file", str(COMPOSE_FILE), *args]
        return run(argv, env=variables, cwd=REPO, what=what, timeout=timeout)

    def _up(self, variables: dict[str, str], nodes: Iterable[Node], what: str) -> None:
        # --no-deps: the services declare no dependencies; this runtime starts them in Fabric's order.
        self._compose(variables, "up", "--detach", "--no-deps", *(n.name for n in nodes), what=what)

    def _containers(self) -> dict[str, _Container]:
        """This project's containers (running or not), by compose service name."""
        listed = _docker("ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={self.project}")
        if listed.returncode != 0:
            raise NetworkError(f"docker ps failed: {listed.stderr.strip()}. Is the Docker engine up? "
                               "(scripts/start-docker.sh starts it)")
        ids = listed.stdout.split()
        if not ids:
            return {}
        inspected = _docker("inspect", "--format",
                            '{{index .Config.Labels "com.docker.compose.service"}}\t{{.Name}}\t{{.State.Running}}', *ids)
        found: dict[str, _Container] = {}
        for line in inspected.stdout.splitlines():
            service, name, running = line.split("\t")
            found[service] = _Container(name.lstrip("/"), running == "true")
        return found

    def _running(self, node: Node) -> bool:
        container = self._containers().get(node.name)
        return container is not None and container.running

    def _log_tail(self, node: Node, lines: int = 3) -> str:
        container = self._containers().get(node.name)
        if container is None:
            return "(no container)"
        done = _docker("logs", "--tail", str(lines), container.name)
        text = (done.stdout + done.stderr).strip().splitlines()
        return " | ".join(line.strip()[:300] for line in text[-lines:]) or "(empty log)"

    def _save_logs(self) -> None:
        """Copy every container's log to logs/<node>.log: ``compose down`` deletes containers and logs."""
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        for service, container in self._containers().items():
            with open(self.layout.logs / f"{service}.log", "wb") as log:
                subprocess.run(["docker", "logs", "--timestamps", container.name], stdout=log,
                               stderr=subprocess.STDOUT, timeout=60, check=False)

    def _wait(self, node: Node, check: Callable[[], bool], what: str, timeout: float = 60) -> None:
        """Poll ``check`` until it holds; a container that stops first, or a timeout, raises NodeError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if not self._running(node):
                raise NodeError(node.name, f"its container stopped before it could {what}: {self._log_tail(node)}",
                                self._log_hint(node))
            time.sleep(0.1)
        raise NodeError(node.name, f"did not {what} within {timeout:.0f} s: {self._log_tail(node)}",
                        self._log_hint(node))

    def _log_hint(self, node: Node) -> str:
        return f"`docker logs` of its container; a failed bring-up or a down copies it to {self.layout.log(node)}"

    # ---------------------------------------------------------------- up

    def up(self, *, progress: Progress = _quiet) -> UpReport:
        """Bring the consortium up, or restart the containers of a stopped one; refuse a half-started one."""
        began = time.monotonic()
        state = self._read_state()
        if state is not None:
            if not state.get("complete"):
                raise NetworkStateError(
                    f"a previous bring-up in {self.layout.home} did not finish; run "
                    "`fedledger network down --purge` to remove it, then `fedledger network up --runtime docker`")
            self._require_engine()
            report = self._resume(state, progress)
            report.seconds = time.monotonic() - began
            return report
        self._preflight()
        try:
            report = self._bring_up(progress)
        except BaseException:
            progress("bring-up failed; removing its containers and state (container logs are kept in logs/)")
            self._clean_failed()
            raise
        report.seconds = time.monotonic() - began
        return report

    @staticmethod
    def _require_engine() -> None:
        if not engine_answers():
            raise NetworkError("no Docker engine answers; start one with scripts/start-docker.sh")

    def _preflight(self) -> None:
        check_demo(self.config)
        if not COMPOSE_FILE.is_file():
            raise NetworkError(f"missing {COMPOSE_FILE}")
        missing = [t for t in HOST_TOOLS if not (self.bin_dir / t).is_file()]
        if missing:
            raise NetworkError(f"missing Fabric binaries in {self.bin_dir}: {', '.join(missing)} (the host runs "
                               "fabric-ca-server init, configtxgen, osnadmin and the peer CLI). "
                               "Run scripts/install-fabric.sh to build them")
        for name in ("core.yaml", "orderer.yaml"):
            if not (self.fabric_config / name).is_file():
                raise NetworkError(f"missing Fabric's default {name} in {self.fabric_config}. "
                                   "Run scripts/install-fabric.sh fabric")
        variables = self._variables()
        text = COMPOSE_FILE.read_text()
        unused = sorted(v for v in variables if "${" + v not in text)
        if unused:
            raise NetworkError(f"{COMPOSE_FILE.name} does not use the variables {', '.join(unused)}: the file and "
                               "this runtime have drifted apart")
        self._require_engine()
        compose_command()
        images = sorted({variables[name] for name in default_images()})
        absent = [image for image in images if _docker("image", "inspect", image).returncode != 0]
        if absent:
            raise NetworkError(
                f"images not present on this machine: {', '.join(absent)}. A bring-up never pulls: `docker pull` "
                "them where a registry is reachable, or build local images from the Fabric binaries with "
                "scripts/build-images.sh and use them with `eval \"$(scripts/build-images.sh)\"` "
                "(it sets FEDLEDGER_PEER_IMAGE, FEDLEDGER_ORDERER_IMAGE, FEDLEDGER_CA_IMAGE, FEDLEDGER_CHAINCODE_IMAGE)")
        if self._containers():
            raise NetworkError(f"compose project {self.project} already has containers but {self.layout.home} "
                               f"records no network; remove them with `docker compose -p {self.project} down`")
        busy = [(n.name, p) for n in self.config.nodes() for p in _published(n).values() if port_in_use(p)]
        if busy:
            names = ", ".join(f"{p} ({n})" for n, p in busy)
            raise NetworkError(f"ports already in use: {names}. Stop whatever holds them, or choose other "
                               "ports with --base-port (or base-port in the consortium file)")

    def _remove_project(self) -> None:
        """What ``compose down`` does, without compose: for when compose cannot load the project."""
        ids = [c.name for c in self._containers().values()]
        if ids:
            _docker("rm", "--force", *ids)
        networks = _docker("network", "ls", "--quiet", "--filter", f"label=com.docker.compose.project={self.project}")
        if networks.stdout.split():
            _docker("network", "rm", *networks.stdout.split())

    def _clean_failed(self) -> None:
        try:
            self._save_logs()
            self._compose(self._variables(), "down", "--remove-orphans", what="removing the failed bring-up's containers")
        except NetworkError:
            try:
                self._remove_project()
            except NetworkError:
                pass  # no engine: nothing of this project can be running
        for child in list(self.layout.home.iterdir()) if self.layout.home.exists() else []:
            if child != self.layout.logs:
                shutil.rmtree(child) if child.is_dir() else child.unlink()

    def _bring_up(self, progress: Progress) -> UpReport:
        layout, config = self.layout, self.config
        layout.home.mkdir(parents=True, exist_ok=True)
        report = UpReport(layout.home, resumed=False, already_up=False, seconds=0.0)
        variables = self._variables()
        state: dict[str, Any] = {
            "runtime": self.runtime, "complete": False, "home": str(layout.home), "config": config.to_dict(),
            "compose_project": self.project, "compose_file": str(COMPOSE_FILE), "compose_variables": variables,
            "nodes": {n.name: {"role": n.role, "org": n.org.name, "ports": _published(n)} for n in config.nodes()},
        }
        self._write_state(state)
        self._prepare_files(variables)

        def step(name: str, action: Callable[[], None]) -> None:
            t = time.monotonic()
            progress(f"{name} ...")
            action()
            report.steps.append((name, time.monotonic() - t))

        step("start the CAs", lambda: self._start_cas(variables))
        step("issue identities and TLS certificates from each CA", self._issue_crypto)
        block_holder: list[Path] = []
        step("make the channel's genesis block (configtxgen)",
             lambda: block_holder.append(genesis_block(config, layout, self.bin_dir / "configtxgen",
                                                       in_container_address)))
        block = block_holder[0]
        step("write the orderers' and peers' configuration", self._write_node_configs)
        step("start the Raft orderers and the peers", lambda: self._start_nodes(variables))
        step("join the orderers and the peers to the channel", lambda: self._join(block))
        step("install, approve and commit the chaincode; start its services",
             lambda: self._deploy_chaincode(variables))
        self._write_profile()
        step("wait until every peer has found the others (gossip)", self._wait_discovery)
        state["complete"] = True
        self._write_state(state)
        return report

    def _prepare_files(self, variables: dict[str, str]) -> None:
        self.compose_env_file.write_text(
            "# docker-compose.yaml's variables for this network, written by `fedledger network up --runtime docker`\n"
            + "".join(f"{k}={v}\n" for k, v in sorted(variables.items())))
        # compose reads every service's env_file whichever services it starts: until the chaincode
        # is installed, its services' files exist without a package id.
        for org in self.config.companies:
            path = self.chaincode_env_file(org)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("# the package id of the chaincode installed on this company's peer\nCHAINCODE_ID=\n")

    # -- CAs

    def _start_cas(self, variables: dict[str, str]) -> None:
        cas = [self.config.ca(org) for org in self.config.organizations]
        secrets_by_org: dict[str, str] = {}
        for node in cas:
            org, home = node.org, self.layout.ca_home(node.org)
            home.mkdir(parents=True, exist_ok=True)
            # Initialized by the host's fabric-ca-server (the same version as the image's), so the CA's
            # root exists before its container starts. The bootstrap registrar's secret exists only
            # for this bring-up: the registrar is enrolled once and its key kept (0600) in ca-admin.
            secret = secrets.token_urlsafe(24)
            secrets_by_org[org.name] = secret
            run([str(self.bin_dir / "fabric-ca-server"), "init", "-b", f"registrar:{secret}", "--home", str(home),
                 "--port", str(LISTEN_PORT["ca"]), "--tls.enabled", "--ca.name", org.ca_name, "--csr.cn", node.host,
                 "--csr.hosts", f"{node.host},localhost,127.0.0.1"], env={}, cwd=home, what=f"initializing {node.name}")
        self._up(variables, cas, "starting the CA containers")
        for node in cas:
            client = self._ca_client(node.org)
            self._wait(node, functools.partial(ca_answers, client), "answer on its TLS port", timeout=60)
            registrar = client.enroll("registrar", secrets_by_org[node.org.name])
            save_registrar(self.layout, node.org, registrar)

    def _ca_client(self, org: Organization) -> CAClient:
        return ca_client(self.config, self.layout, org)

    def _issue_crypto(self) -> None:
        issue_consortium(self.config, self.layout)

    # -- orderers and peers

    def _write_node_configs(self) -> None:
        for node in self.config.orderers():
            self._write_config(node, "orderer.yaml", self._orderer_settings(node))
        for org in self.config.companies:
            node = self.config.peer(org)
            self._write_config(node, "core.yaml", self._peer_settings(node))

    def _write_config(self, node: Node, name: str, settings: dict[str, Any]) -> None:
        directory = self.layout.config(node)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(yaml.safe_dump(settings, sort_keys=False))

    def _places(self, node: Node) -> NodePlaces:
        return NodePlaces(msp=NODE_ROOT / "msp", tls=NODE_ROOT / "tls", data=NODE_ROOT / "data", listen_host="0.0.0.0",
                          listen_port=LISTEN_PORT[node.role], announce=f"{node.host}:{LISTEN_PORT[node.role]}",
                          operations_port=OPERATIONS_PORT, admin_port=ORDERER_ADMIN_PORT,
                          chaincode_port=PEER_CHAINCODE_PORT)

    def _orderer_settings(self, node: Node) -> dict[str, Any]:
        """Fabric's default orderer.yaml with this node's in-container paths and ports."""
        return orderer_settings(self.fabric_config / "orderer.yaml", node, self._places(node))

    def _peer_settings(self, node: Node) -> dict[str, Any]:
        """Fabric's default core.yaml with this node's in-container paths, ports and host name.

        The host's peer CLI reads the same file (``lifecycle.admin_env``); it takes every path it
        needs from the environment, so the container paths in it do not matter there.
        """
        return peer_settings(self.fabric_config / "core.yaml", node, self._places(node),
                             network_id=f"fedledger-{self.config.base_port}", builder=BUILDER_ROOT,
                             chaincode_host=node.host)

    def _start_nodes(self, variables: dict[str, str]) -> None:
        # One compose call for both: a peer waits for nothing until it joins the channel.
        orderers = self.config.orderers()
        peers = [self.config.peer(org) for org in self.config.companies]
        self._up(variables, [*orderers, *peers], "starting the orderer and peer containers")
        for node in (*orderers, *peers):
            self._wait_healthy(node)

    def _wait_healthy(self, node: Node, timeout: float = 60) -> None:
        # /healthz can answer a moment before the gRPC listener accepts connections, and a published
        # port accepts TCP connections (Docker's proxy) before the node does: wait for a TLS handshake.
        root = self.layout.ca_root(node.org).read_bytes()
        self._wait(node, lambda: (http_ok(f"http://127.0.0.1:{node.operations_port}/healthz")
                                  and tls_answers("127.0.0.1", node.port, root_pem=root)),
                   "report healthy on /healthz and accept TLS connections", timeout=timeout)

    def _join(self, block: Path) -> None:
        for node in self.config.orderers():
            join_orderer(self.config, self.layout, self.bin_dir / "osnadmin", node, block)
        for org in self.config.companies:
            run([str(self.bin_dir / "peer"), "channel", "join", "-b", str(block)],
                env=lifecycle.admin_env(self.config, self.layout, org),
                what=f"{self.config.peer(org).name} joining channel {self.config.channel}")

    # -- chaincode

    def _deploy_chaincode(self, variables: dict[str, str]) -> None:
        config, layout, peer_bin = self.config, self.layout, self.bin_dir / "peer"
        orderers = config.orderers()
        services = [config.chaincode_service(org) for org in config.companies]
        for j, org in enumerate(config.companies):
            # The peer dials the service by its compose service name, from inside the network.
            pkg, package_id = lifecycle.package(config, layout, org, in_container_address(services[j]))
            lifecycle.install(peer_bin, config, layout, org, pkg)
            self.chaincode_env_file(org).write_text(
                "# the package id of the chaincode installed on this company's peer\n"
                f"CHAINCODE_ID={package_id}\n")
            lifecycle.approve(peer_bin, config, layout, org, package_id, orderers[j % len(orderers)])
        self._up(variables, services, "starting the chaincode service containers")
        for node in services:
            self._wait(node, functools.partial(self._chaincode_answers, node), "accept TLS connections", timeout=30)
        lifecycle.commit(peer_bin, config, layout, orderers[0])

    def _chaincode_answers(self, node: Node) -> bool:
        peer_tls = self.layout.tls(self.config.peer(node.org))
        return tls_answers("127.0.0.1", node.port, root_pem=(self.layout.tls(node) / "ca.crt").read_bytes(),
                           client=(str(peer_tls / "server.crt"), str(peer_tls / "server.key")))

    def _wait_discovery(self, timeout: float = 60) -> None:
        """Wait until each company's Gateway can gather endorsements from every company's peer.

        The probe endorses the read-only Version transaction and never submits it, so the ledger
        is unchanged; it succeeds only once gossip has told the peer where the others are.
        """
        everyone = [org.msp_id for org in self.config.companies]
        for org in self.config.companies:
            peer = self.config.peer(org)
            msp = self.layout.user(org, "client") / "msp"
            identity = Identity(org.msp_id, (msp / "signcerts" / "cert.pem").read_bytes())
            signer = Signer.from_pem((msp / "keystore" / "key.pem").read_bytes())
            deadline = time.monotonic() + timeout
            with connect(f"127.0.0.1:{peer.port}", identity=identity, signer=signer,
                         tls_root_certificates=self.layout.ca_root(org).read_bytes()) as gateway:
                contract = gateway.network(self.config.channel).contract(self.config.chaincode)
                while True:
                    try:
                        contract.new_proposal("Version", endorsing_organizations=everyone).endorse()
                        break
                    except GatewayError as err:
                        if time.monotonic() > deadline:
                            raise NodeError(peer.name, f"its Gateway could not reach every company's peer within "
                                                       f"{timeout:.0f} s: {err}",
                                            self._log_hint(peer)) from None
                    time.sleep(0.25)

    # -- connection profile

    def _write_profile(self) -> None:
        write_profile(self.config, self.layout)

    # ---------------------------------------------------------------- resume

    def _resume(self, state: dict[str, Any], progress: Progress) -> UpReport:
        containers = self._containers()
        nodes = self.config.nodes()
        stopped = [n for n in nodes if not (n.name in containers and containers[n.name].running)]
        if not stopped:
            return UpReport(self.layout.home, resumed=False, already_up=True, seconds=0.0)
        names = [n.name for n in stopped]
        report = UpReport(self.layout.home, resumed=True, already_up=False, seconds=0.0, restarted=names)
        busy = [(n.name, p) for n in stopped if n.name not in containers
                for p in _published(n).values() if port_in_use(p)]
        if busy:
            raise NetworkError("cannot restart: ports already in use: " + ", ".join(f"{p} ({n})" for n, p in busy)
                               + ". Stop whatever holds them and run `fedledger network up` again")
        # The variables recorded at bring-up (images, ports), not today's environment.
        variables = {str(k): str(v) for k, v in state.get("compose_variables", self._variables()).items()}
        t = time.monotonic()
        progress(f"restart {len(names)} container(s) of the recorded network: {', '.join(names)} ...")
        for role in _ROLES:
            batch = [n for n in stopped if n.role == role]
            if not batch:
                continue
            self._up(variables, batch, f"restarting the {role} containers")
            for node in batch:
                if role == "ca":
                    self._wait(node, functools.partial(ca_answers, self._ca_client(node.org)),
                               "answer on its TLS port")
                elif role == "chaincode":
                    self._wait(node, functools.partial(self._chaincode_answers, node), "accept TLS connections")
                else:
                    self._wait_healthy(node)
        report.steps.append(("restart containers", time.monotonic() - t))
        if any(n.role in ("orderer", "peer", "chaincode") for n in stopped):
            t = time.monotonic()
            self._wait_discovery()
            report.steps.append(("wait until every peer has found the others (gossip)", time.monotonic() - t))
        return report

    # ---------------------------------------------------------------- status / down

    def _answers(self, node: Node) -> bool:
        if node.role == "chaincode":
            return self._chaincode_answers(node)
        return http_ok(f"http://127.0.0.1:{node.operations_port}/healthz")

    def status(self) -> list[NodeStatus]:
        """Every node: its role, org, published address, container, whether it runs and answers."""
        state = self._read_state()
        if state is None:
            raise NetworkStateError(f"no network in {self.layout.home}; run `fedledger network up --runtime docker`")
        self._require_engine()
        containers = self._containers()
        by_name = {n.name: n for n in self.config.nodes()}
        result: list[NodeStatus] = []
        for name, entry in sorted(state["nodes"].items(), key=lambda kv: role_order(kv[1]["role"], kv[0])):
            container = containers.get(name)
            alive = container is not None and container.running
            node = by_name.get(name)
            answers = alive and node is not None and self._answers(node)
            log = f"docker logs {container.name}" if container is not None else str(self.layout.logs / f"{name}.log")
            result.append(ContainerStatus(name, entry["role"], entry["org"], f"127.0.0.1:{entry['ports']['listen']}",
                                          entry["ports"], None, alive, answers, log,
                                          container.name if container is not None else None))
        return result

    def down(self, *, purge: bool = False) -> list[str]:
        """Remove every container and the network of this consortium (keeping their logs in logs/);
        with ``purge`` also delete its ledgers and keys. Returns the containers removed."""
        state = self._read_state()
        if state is None:
            if purge and self.layout.home.exists():
                shutil.rmtree(self.layout.home)
            return []
        self._require_engine()
        containers = self._containers()
        if containers:
            self._save_logs()
        variables = {str(k): str(v) for k, v in state.get("compose_variables", self._variables()).items()}
        try:
            self._compose(variables, "down", "--remove-orphans", what="removing the consortium's containers")
        except NetworkError:
            self._remove_project()  # e.g. files compose reads were deleted by hand
        left = sorted(c.name for c in self._containers().values())
        if left:
            raise NetworkError(f"containers {left} are still there; remove them with `docker rm -f`")
        if purge:
            shutil.rmtree(self.layout.home)
        return sorted(c.name for c in containers.values())

