"""The native runtime: every node a local process on 127.0.0.1, at the port plan's ports.

Each node runs from the binaries of scripts/install-fabric.sh (the chaincode service from a binary
built from this checkout) in its own session, logging to ``<home>/logs/<node>.log``. The state
file records each node's pid and how to start it again, so a later ``up`` restarts exactly the
processes that are gone.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fedledger.errors import NetworkError
from fedledger.network.channel import run
from fedledger.network.config import ConsortiumConfig, Node, role_order
from fedledger.network.hosts import LOCAL, Placement
from fedledger.network.layout import Layout
from fedledger.network.nodeconfig import NodePlaces
from fedledger.network.processes import ProcessSpec, log_tail, require_binaries, running, start, stop
from fedledger.network.runtime import Launch, Observation, Record, RuntimeFactory, Step

REPO = Path(__file__).resolve().parents[3]
BUILDER = REPO / "network" / "builders" / "ccaas"
# The Fabric binaries this runtime runs as nodes (besides the tools every runtime runs).
NODE_BINARIES = ("fabric-ca-server", "orderer", "peer")
CHAINCODE_PROGRAM = "fedledger-chaincode"


def targets(records: Mapping[str, Record]) -> list[tuple[int, str]]:
    """The (pid, executable) of every recorded node, in reverse start order (chaincode first, CAs last)."""
    entries = sorted(records.values(), key=lambda e: -role_order(e["role"], "")[0])
    return [(e["pid"], str(e["spec"]["argv"][0])) for e in entries if isinstance(e.get("pid"), int)]


def _alive(entry: Record) -> bool:
    pid = entry.get("pid")
    return isinstance(pid, int) and running(pid, str(entry["spec"]["argv"][0]))


class NativeRuntime:
    """Nodes as local processes on 127.0.0.1 (each where ``placement`` puts it: the netns runtime
    places each in a namespace of its own)."""

    name = "native"
    kind: Final = "processes"

    def __init__(self, config: ConsortiumConfig, layout: Layout, *, bin_dir: Path,
                 recorded: Mapping[str, Any] | None = None) -> None:
        self.layout = layout
        self.bin_dir = bin_dir

    @property
    def chaincode_binary(self) -> Path:
        """The chaincode service, built from this checkout into the home."""
        return self.layout.home / "bin" / CHAINCODE_PROGRAM

    def record(self) -> dict[str, object]:
        return {}

    # ---------------------------------------------------------------- addresses

    def placement(self, node: Node) -> Placement:
        """Where ``node`` runs and the address it binds: this machine's own network, 127.0.0.1."""
        return LOCAL

    def places(self, node: Node) -> NodePlaces:
        # A node binds the one address it is reached at, from this machine and from the other nodes.
        address = self.placement(node).address
        return NodePlaces(root=self.layout.root(node), listen_host=address, host=address, ports=node.ports(),
                          builder=BUILDER)

    def host(self, node: Node) -> str:
        return self.placement(node).address

    def ports(self, node: Node) -> dict[str, int]:
        return node.ports()

    # ---------------------------------------------------------------- bring-up

    def preflight(self) -> None:
        require_binaries(self.bin_dir, NODE_BINARIES)
        if shutil.which("go") is None:
            raise NetworkError("the Go toolchain is not on PATH; it builds the chaincode service")

    def prepare(self, step: Step) -> None:
        step("build the chaincode service", self._build_chaincode)

    def _build_chaincode(self) -> None:
        self.chaincode_binary.parent.mkdir(parents=True, exist_ok=True)
        run(["go", "build", "-o", str(self.chaincode_binary), "./cmd/fedledger-chaincode"], env={"CGO_ENABLED": "0"},
            cwd=REPO / "chaincode", what="building the chaincode service", timeout=600)

    def _spec(self, launch: Launch) -> ProcessSpec:
        program, *args = launch.command
        path = self.chaincode_binary if program == CHAINCODE_PROGRAM else self.bin_dir / program
        return ProcessSpec((str(path), *args), launch.env, str(self.layout.log(launch.node)), str(launch.workdir),
                           self.placement(launch.node).namespace)

    def _start_all(self, specs: Mapping[str, ProcessSpec]) -> dict[str, int]:
        pids: dict[str, int] = {}
        try:
            for name, spec in specs.items():
                pids[name] = start(spec)
        except BaseException:
            stop([(pid, specs[name].argv[0]) for name, pid in pids.items()])
            raise
        return pids

    def start(self, launches: Sequence[Launch]) -> dict[str, Record]:
        specs = {launch.node.name: self._spec(launch) for launch in launches}
        pids = self._start_all(specs)
        return {name: {"pid": pids[name], "spec": spec.to_json()} for name, spec in specs.items()}

    def restart(self, nodes: Sequence[Node], records: Mapping[str, Record]) -> dict[str, Record]:
        if any(node.role == "chaincode" for node in nodes):
            # The chaincode services run this checkout's contract: rebuild it (seconds when cached),
            # so a restarted network never serves a stale one. The package id, and so the
            # definition on the channel, does not change: it names the service, not its code.
            self._build_chaincode()
        specs = {node.name: ProcessSpec.from_json(records[node.name]["spec"]) for node in nodes}
        return {name: {"pid": pid} for name, pid in self._start_all(specs).items()}

    # ---------------------------------------------------------------- inspection

    def observe(self, records: Mapping[str, Record]) -> dict[str, Observation]:
        return {name: Observation(_alive(entry), str(entry["spec"]["log"]), pid=entry.get("pid"))
                for name, entry in records.items()}

    def log(self, node: Node) -> str:
        return str(self.layout.log(node))

    def log_tail(self, node: Node, lines: int = 3) -> str:
        return log_tail(self.log(node), lines)

    # ---------------------------------------------------------------- stop

    def stop(self, nodes: Sequence[Node], records: Mapping[str, Record]) -> None:
        stop(targets({node.name: records[node.name] for node in nodes if node.name in records}))

    def stop_all(self, records: Mapping[str, Record]) -> list[int]:
        stopped = stop(targets(records))
        left = [pid for pid, exe in targets(records) if running(pid, exe)]
        if left:
            raise NetworkError(f"processes {left} did not stop; stop them by hand")
        return stopped



if TYPE_CHECKING:
    # mypy checks here that the class is a runtime factory and makes runtimes (fedledger.network.runtime).
    _factory: RuntimeFactory = NativeRuntime
