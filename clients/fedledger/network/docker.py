"""The docker runtime: the demo consortium as containers of docker-compose.yaml, one compose project a home.

Each node is a compose service named by its host name. It sees only its own directory of the
network home (bind-mounted at ``NODE_ROOT``), listens on Fabric's usual in-container ports, and is
published on 127.0.0.1 at the native port plan's ports. So the genesis block, node configurations
and chaincode packages name the in-container addresses (``peer0.warehouse.fedledger:7051``), while
the host tools (osnadmin, the peer CLI, the gateway client) and the connection profile use the
published ones, exactly as for the native runtime. The orchestrator's steps are the same for both.

docker-compose.yaml is static: it fixes each service's command, environment and mounts, so this
runtime supplies only what the file leaves open (its variables, and each chaincode service's
package id) and runs only the demo consortium it describes (network/consortium.toml; the base
port, channel and block cutting may differ).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final

from fedledger.errors import NetworkConfigError, NetworkError
from fedledger.network.channel import run
from fedledger.network.config import DEFAULT_CONFIG, ConsortiumConfig, Node, Organization
from fedledger.network.layout import Layout
from fedledger.network.nodeconfig import NodePlaces
from fedledger.network.runtime import Launch, Observation, Record, RuntimeFactory, Step, loopback

REPO = Path(__file__).resolve().parents[3]
COMPOSE_FILE = REPO / "docker-compose.yaml"

# Where each container sees its own node directory (MSP, TLS pair, config, ledger), and the
# chaincode-as-a-service builder scripts that docker-compose.yaml mounts into the peers.
NODE_ROOT = PurePosixPath("/var/hyperledger/fedledger")
BUILDER_ROOT = PurePosixPath("/opt/fedledger/builders/ccaas")

# Ports inside the containers: every node has its own network namespace, so all use Fabric's usual ones.
LISTEN_PORT = {"ca": 7054, "orderer": 7050, "peer": 7051, "chaincode": 9999}
ORDERER_ADMIN_PORT = 7053
PEER_CHAINCODE_PORT = 7052
OPERATIONS_PORT = 9443
_ROLE_WORDS = {"ca": "CA", "orderer": "orderer", "peer": "peer", "chaincode": "chaincode service"}

_IMAGE_VARIABLE = re.compile(r"\$\{(FEDLEDGER_[A-Z]+_IMAGE):-([^}]+)\}")


@functools.cache
def default_images() -> dict[str, str]:
    """docker-compose.yaml's image variables and their defaults there (the one place they are written):
    Hyperledger's official images, and ours for the chaincode service."""
    return dict(_IMAGE_VARIABLE.findall(COMPOSE_FILE.read_text()))


def _in_container_port(node: Node, kind: str) -> int:
    """The port of ``kind`` ``node`` listens on inside its container."""
    return {"listen": LISTEN_PORT[node.role], "admin": ORDERER_ADMIN_PORT, "operations": OPERATIONS_PORT,
            "chaincode": PEER_CHAINCODE_PORT}[kind]


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
class _Container:
    name: str
    running: bool



class DockerRuntime:
    """Nodes as containers of one compose project, published on 127.0.0.1."""

    name: Final = "docker"
    kind: Final = "containers"

    def __init__(self, config: ConsortiumConfig, layout: Layout, *, bin_dir: Path,
                 recorded: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.layout = layout
        # One compose project per home, so a test network and a user's network never share containers.
        self.project = "fedledger-" + hashlib.sha256(str(layout.home).encode()).hexdigest()[:8]
        self.variables = self._variables()
        if recorded is not None:
            # The project and variables (images, ports) recorded at bring-up, not today's environment.
            self.project = str(recorded.get("compose_project", self.project))
            self.variables = {str(k): str(v) for k, v in recorded.get("compose_variables", self.variables).items()}

    def record(self) -> dict[str, object]:
        return {"compose_project": self.project, "compose_file": str(COMPOSE_FILE), "compose_variables": self.variables}

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

    # ---------------------------------------------------------------- addresses

    def places(self, node: Node) -> NodePlaces:
        return NodePlaces(root=NODE_ROOT, listen_host="0.0.0.0", host=node.host,
                          ports={kind: _in_container_port(node, kind) for kind in node.ports()}, builder=BUILDER_ROOT)

    def host(self, node: Node) -> str:
        return loopback(node)[0]

    def ports(self, node: Node) -> dict[str, int]:
        return _published(node)

    # ---------------------------------------------------------------- docker compose

    def _compose(self, *args: str, what: str, timeout: float = 180) -> str:
        argv = [*compose_command(), "--project-name", self.project, "--file", str(COMPOSE_FILE), *args]
        return run(argv, env=self.variables, cwd=REPO, what=what, timeout=timeout)

    def _up(self, nodes: Iterable[Node], what: str) -> None:
        # --no-deps: the services declare no dependencies; the orchestrator starts them in Fabric's order.
        self._compose("up", "--detach", "--no-deps", *(n.name for n in nodes), what=what)

    def _containers(self) -> dict[str, _Container]:
        """This project's containers (running or not), by compose service name."""
        listed = _docker("ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={self.project}")
        if listed.returncode != 0:
            if not engine_answers():
                raise NetworkError("no Docker engine answers; start one with scripts/start-docker.sh")
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

    def _save_logs(self, containers: Mapping[str, _Container]) -> None:
        """Copy every container's log to logs/<node>.log: ``compose down`` deletes containers and logs."""
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        for service, container in containers.items():
            with open(self.layout.logs / f"{service}.log", "wb") as log:
                subprocess.run(["docker", "logs", "--timestamps", container.name], stdout=log,
                               stderr=subprocess.STDOUT, timeout=60, check=False)

    def _remove_project(self) -> None:
        """What ``compose down`` does, without compose: for when compose cannot load the project."""
        ids = [c.name for c in self._containers().values()]
        if ids:
            _docker("rm", "--force", *ids)
        networks = _docker("network", "ls", "--quiet", "--filter", f"label=com.docker.compose.project={self.project}")
        if networks.stdout.split():
            _docker("network", "rm", *networks.stdout.split())

    # ---------------------------------------------------------------- bring-up

    def preflight(self) -> None:
        check_demo(self.config)
        if not COMPOSE_FILE.is_file():
            raise NetworkError(f"missing {COMPOSE_FILE}")
        text = COMPOSE_FILE.read_text()
        unused = sorted(v for v in self.variables if "${" + v not in text)
        if unused:
            raise NetworkError(f"{COMPOSE_FILE.name} does not use the variables {', '.join(unused)}: the file and "
                               "this runtime have drifted apart")
        if not engine_answers():
            raise NetworkError("no Docker engine answers; start one with scripts/start-docker.sh")
        compose_command()
        images = sorted({self.variables[name] for name in default_images()})
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

    def prepare(self, step: Step) -> None:
        self.compose_env_file.write_text(
            "# docker-compose.yaml's variables for this network, written by `fedledger network up --runtime docker`\n"
            + "".join(f"{k}={v}\n" for k, v in sorted(self.variables.items())))
        # compose reads every service's env_file whichever services it starts: until the chaincode
        # is installed, its services' files exist without a package id.
        for org in self.config.companies:
            self._write_chaincode_env(org, "")

    def _write_chaincode_env(self, org: Organization, package_id: str) -> None:
        path = self.chaincode_env_file(org)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# the package id of the chaincode installed on this company's peer\nCHAINCODE_ID={package_id}\n")

    def start(self, launches: Sequence[Launch]) -> dict[str, Record]:
        # docker-compose.yaml fixes each service's command, environment and mounts; what it leaves
        # open is the chaincode's package id, read from each service's env_file.
        for launch in launches:
            if launch.node.role == "chaincode":
                self._write_chaincode_env(launch.node.org, launch.env["CHAINCODE_ID"])
        nodes = [launch.node for launch in launches]
        self._up(nodes, f"starting the {self._roles(nodes)} containers")
        return {}

    def restart(self, nodes: Sequence[Node], records: Mapping[str, Record]) -> dict[str, Record]:
        self._up(nodes, f"restarting the {self._roles(nodes)} containers")
        return {}

    @staticmethod
    def _roles(nodes: Sequence[Node]) -> str:
        return " and ".join(dict.fromkeys(_ROLE_WORDS[n.role] for n in nodes))

    # ---------------------------------------------------------------- inspection

    def observe(self, records: Mapping[str, Record]) -> dict[str, Observation]:
        containers = self._containers()
        seen = {}
        for name in records:
            container = containers.get(name)
            if container is None:
                seen[name] = Observation(False, str(self.layout.logs / f"{name}.log"))
            else:
                seen[name] = Observation(container.running, f"docker logs {container.name}", container=container.name)
        return seen

    def log(self, node: Node) -> str:
        return f"`docker logs` of its container; a failed bring-up or a down copies it to {self.layout.log(node)}"

    def log_tail(self, node: Node, lines: int = 3) -> str:
        container = self._containers().get(node.name)
        if container is None:
            return "(no container)"
        done = _docker("logs", "--tail", str(lines), container.name)
        text = (done.stdout + done.stderr).strip().splitlines()
        return " | ".join(line.strip()[:300] for line in text[-lines:]) or "(empty log)"

    # ---------------------------------------------------------------- stop

    def stop(self, nodes: Sequence[Node], records: Mapping[str, Record]) -> None:
        if nodes:
            self._compose("stop", *(n.name for n in nodes), what=f"stopping the {self._roles(nodes)} containers")

    def stop_all(self, records: Mapping[str, Record]) -> list[str]:
        """Remove every container and the network of this project, keeping their logs in logs/."""
        containers = self._containers()
        if containers:
            self._save_logs(containers)
        try:
            self._compose("down", "--remove-orphans", what="removing the consortium's containers")
        except NetworkError:
            self._remove_project()  # e.g. files compose reads were deleted by hand
        left = sorted(c.name for c in self._containers().values())
        if left:
            raise NetworkError(f"containers {left} are still there; remove them with `docker rm -f`")
        return sorted(c.name for c in containers.values())


if TYPE_CHECKING:
    # mypy checks here that the class is a runtime factory and makes runtimes (fedledger.network.runtime).
    _factory: RuntimeFactory = DockerRuntime
