"""Unit tests of the orchestrator's seam: a network is opened with the runtime it was brought up
with, and every address a client uses comes from the runtime, never from a fixed 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, Literal

import pytest

from fedledger.errors import NetworkStateError
from fedledger.network import ConsortiumConfig, Layout, Network, Node, NodeStatus, Observation, open_network
from fedledger.network.docker import DockerRuntime
from fedledger.network.native import NativeRuntime
from fedledger.network.nodeconfig import NodePlaces
from fedledger.network.processes import port_in_use
from fedledger.network.runtime import Launch, Record, Step

SOLO = {"base-port": 23000, "orderer-org": {"orderers": 1}, "company": [{"name": "Solo"}]}


class BridgeRuntime:
    """A runtime whose nodes each have their own address on a bridge (10.77.0.x), as network
    namespaces would give them. Only the addresses and the inspection are real here."""

    name = "bridge"
    kind: Literal["processes", "containers"] = "processes"

    def __init__(self, config: ConsortiumConfig, layout: Layout, *, bin_dir: Path,
                 recorded: Mapping[str, Any] | None = None) -> None:
        self.ips = {node.name: f"10.77.0.{i + 2}" for i, node in enumerate(config.nodes())}
        self.layout = layout

    def record(self) -> dict[str, object]:
        return {}

    def places(self, node: Node) -> NodePlaces:
        return NodePlaces(root=self.layout.root(node), listen_host=self.ips[node.name], host=self.ips[node.name],
                          ports=node.ports(), builder=PurePath("/builders/ccaas"))

    def host(self, node: Node) -> str:
        return self.ips[node.name]

    def ports(self, node: Node) -> dict[str, int]:
        return node.ports()

    def preflight(self) -> None:
        pass

    def prepare(self, step: Step) -> None:
        pass

    def start(self, launches: Sequence[Launch]) -> dict[str, Record]:
        raise AssertionError("not started in a unit test")

    def restart(self, nodes: Sequence[Node], records: Mapping[str, Record]) -> dict[str, Record]:
        raise AssertionError("not started in a unit test")

    def observe(self, records: Mapping[str, Record]) -> dict[str, Observation]:
        return {name: Observation(False, f"/logs/{name}", pid=entry.get("pid")) for name, entry in records.items()}

    def log(self, node: Node) -> str:
        return f"/logs/{node.name}"

    def log_tail(self, node: Node, lines: int = 3) -> str:
        return ""

    def stop(self, nodes: Sequence[Node], records: Mapping[str, Record]) -> None:
        pass

    def stop_all(self, records: Mapping[str, Record]) -> list[int]:
        return []


def _record(home: Path, state: dict[str, Any]) -> None:
    home.mkdir(parents=True)
    (home / "network.json").write_text(json.dumps(state))


def test_open_network_gives_back_the_runtime_and_compose_project_the_home_was_brought_up_with(tmp_path: Path) -> None:
    config = ConsortiumConfig.load()
    _record(tmp_path / "d", {"runtime": "docker", "complete": True, "config": config.to_dict(), "nodes": {},
                             "compose_project": "fedledger-0badcafe", "compose_variables": {"FEDLEDGER_HOME": "/x"}})
    _record(tmp_path / "n", {"complete": True, "config": config.to_dict(), "nodes": {}})

    docker, native = open_network(tmp_path / "d"), open_network(tmp_path / "n")

    assert isinstance(docker.runtime, DockerRuntime) and docker.runtime.name == "docker"
    assert docker.runtime.project == "fedledger-0badcafe" and docker.runtime.variables == {"FEDLEDGER_HOME": "/x"}
    assert isinstance(native.runtime, NativeRuntime)  # a state file from before runtimes were recorded
    assert docker.config == native.config == config


def test_open_network_names_a_missing_network_and_an_unknown_runtime(tmp_path: Path) -> None:
    _record(tmp_path / "odd", {"runtime": "podman", "complete": True, "config": ConsortiumConfig.load().to_dict()})

    with pytest.raises(NetworkStateError, match="no network in .*fedledger network up"):
        open_network(tmp_path / "none")
    with pytest.raises(NetworkStateError, match="'podman'.*native, docker"):
        open_network(tmp_path / "odd")


def test_a_runtime_with_an_address_per_node_sets_every_address_a_client_uses(tmp_path: Path) -> None:
    config = ConsortiumConfig.from_dict(SOLO)
    net = Network(config, tmp_path / "h", runtime=BridgeRuntime)
    peer, ca, orderer = config.peer(config.company("Solo")), config.ca(config.company("Solo")), config.orderers()[0]
    net.layout.home.mkdir()
    net.layout.write_state({"runtime": "bridge", "complete": True, "config": config.to_dict(), "nodes": {
        n.name: {"role": n.role, "org": n.org.name, "ports": n.ports(), "pid": 4242} for n in (ca, orderer, peer)}})

    net._write_profile()
    profile = json.loads(net.layout.profile.read_text())
    status = {s.name: s for s in net.status()}

    assert net.address(orderer, "admin") == ("10.77.0.4", 23011)
    assert profile["orgs"]["Solo"]["peer"]["address"] == "10.77.0.5:23110"
    assert profile["orgs"]["Solo"]["ca"]["url"] == "https://10.77.0.3:23100"
    assert profile["orderers"] == [{"address": "10.77.0.4:23010", "tls_ca": str(net.layout.ca_root(config.orderer_org))}]
    assert status[peer.name] == NodeStatus(peer.name, "peer", "Solo", "10.77.0.5:23110", peer.ports(), 4242,
                                           running=False, answers=False, log=f"/logs/{peer.name}")
    assert [s.name for s in net.status()] == [ca.name, orderer.name, peer.name]


def test_a_port_at_an_address_this_machine_does_not_have_is_not_in_use_here() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        assert port_in_use(port)
        assert not port_in_use(port, "192.0.2.1")  # TEST-NET-1: never an address of this machine
