"""The seam between the orchestrator and where nodes run: the ``Runtime`` protocol and its values.

The orchestrator (``fedledger.network.orchestrator``) decides what the consortium is made of and
the order its nodes come up in. A runtime decides only how one node is started, stopped and
inspected (is it running? where is its log?), and at which address it is reached: from this
machine's tools and clients (``host`` and ``ports``) and from the other nodes (``places``). Three
runtimes are here: local processes (``native``) and containers of docker-compose.yaml (``docker``),
both reaching every node at 127.0.0.1, and local processes each in a network namespace of its own
(``netns``), reaching each node at its own address on a bridge; the orchestrator is the same for all.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Literal, Protocol

from fedledger.errors import NetworkConfigError
from fedledger.network.config import ConsortiumConfig, Node
from fedledger.network.layout import Layout
from fedledger.network.nodeconfig import NodePlaces

# Where this machine reaches a node's port of a kind ("listen", "admin", "operations"): (host, port).
Address = Callable[[Node, str], tuple[str, int]]
# A node's entry in the state file (network.json): the orchestrator's keys and the runtime's.
Record = dict[str, Any]
# Runs one named, timed step of a bring-up: ``step("build the chaincode service", build)``.
Step = Callable[[str, Callable[[], None]], None]


def loopback(node: Node, kind: str = "listen") -> tuple[str, int]:
    """The port plan's ``kind`` port of ``node`` on 127.0.0.1, where both runtimes here reach it."""
    return "127.0.0.1", node.ports()[kind]


@dataclass(frozen=True)
class Launch:
    """What the orchestrator asks a runtime to run as one node, every path as the node sees it.

    ``command`` starts with the program's name (a Fabric binary, or ``fedledger-chaincode``); the
    runtime decides where that program comes from (a host binary, an image) and how it is run.
    """

    node: Node
    command: tuple[str, ...]
    env: dict[str, str]
    workdir: PurePath


@dataclass(frozen=True)
class Observation:
    """What a runtime sees of one node: whether it runs, where its log is, and what names it."""

    running: bool
    log: str
    pid: int | None = None
    container: str | None = None


class Runtime(Protocol):
    """How nodes are run: started, stopped, inspected, and the addresses they are reached at."""

    @property
    def name(self) -> str:
        """Recorded in network.json, so a later command opens the home with the same runtime."""

    @property
    def kind(self) -> Literal["processes", "containers"]:
        """What a node is: a process (status shows its pid) or a container (status names it)."""

    def record(self) -> dict[str, object]:
        """What this runtime keeps in the state file beside the nodes (read back by its factory)."""

    def places(self, node: Node) -> NodePlaces:
        """Where ``node`` finds its files and listens, and the address the other nodes reach it at."""

    def host(self, node: Node) -> str:
        """The address this machine's tools and clients reach ``node`` at."""

    def ports(self, node: Node) -> dict[str, int]:
        """The ports, by kind, at which this machine reaches ``node`` (at ``host``)."""

    def preflight(self) -> None:
        """Refuse, naming the fix, what would stop this runtime from running the consortium."""

    def prepare(self, step: Step) -> None:
        """Work of this runtime's own before a bring-up's first node starts."""

    def start(self, launches: Sequence[Launch]) -> dict[str, Record]:
        """Start the nodes; return what to record of each (by node name) to find or restart it."""

    def restart(self, nodes: Sequence[Node], records: Mapping[str, Record]) -> dict[str, Record]:
        """Start stopped ``nodes`` again as recorded at bring-up; return what changed in their records."""

    def observe(self, records: Mapping[str, Record]) -> dict[str, Observation]:
        """What this runtime sees of each recorded node, by name."""

    def log(self, node: Node) -> str:
        """Where ``node``'s log is, for an error message."""

    def log_tail(self, node: Node, lines: int = 3) -> str:
        """The last lines of ``node``'s log, for an error message."""

    def stop(self, nodes: Sequence[Node], records: Mapping[str, Record]) -> None:
        """Stop ``nodes``, keeping what a restart needs."""

    def stop_all(self, records: Mapping[str, Record]) -> list[int] | list[str]:
        """Stop every node of the network and what the runtime made for them; return the pids or
        container names stopped. Raises NetworkError when one is left."""


class RuntimeFactory(Protocol):
    """Makes a runtime for a network: ``recorded`` is the state file of a network it runs already."""

    def __call__(self, config: ConsortiumConfig, layout: Layout, *, bin_dir: Path,
                 recorded: Mapping[str, Any] | None = None) -> Runtime: ...


# Runtimes by the name ``--runtime`` and network.json give them, imported when first used.
RUNTIMES = {"native": "fedledger.network.native:NativeRuntime", "docker": "fedledger.network.docker:DockerRuntime",
            "netns": "fedledger.network.netns:NetnsRuntime"}


def load_runtime(name: str) -> RuntimeFactory:
    """The runtime called ``name`` (``native``, ``docker``, ``netns``)."""
    try:
        module, _, attribute = RUNTIMES[name].partition(":")
    except KeyError:
        raise NetworkConfigError(f"unknown runtime {name!r}; the runtimes are {', '.join(RUNTIMES)}") from None
    factory: RuntimeFactory = getattr(importlib.import_module(module), attribute)
    return factory
