"""Unit tests of separate hosts' plan and placements, and of seeing a namespace's sockets from /proc."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from fedledger.errors import NetworkConfigError
from fedledger.network import LOCAL, ConsortiumConfig, HostPlan, Network, Placement, open_network
from fedledger.network.netns import NetnsRuntime
from fedledger.network.processes import ProcessSpec, listening, tcp_sockets

SOLO = {"base-port": 23000, "orderer-org": {"orderers": 1}, "company": [{"name": "Solo"}]}


def test_a_host_plan_gives_this_machine_dot_one_and_each_host_its_own_address_namespace_and_veth() -> None:
    plan = HostPlan("10.213.9.0/24", ("peer0.solo.fedledger", "warehouse-co"), prefix="flt")

    assert (plan.bridge, plan.host_address) == ("fltbr", "10.213.9.1")
    assert plan.placement("peer0.solo.fedledger") == Placement("10.213.9.2", "flt-peer0.solo.fedledger")
    assert plan.placement("warehouse-co") == Placement("10.213.9.3", "flt-warehouse-co")
    assert plan.veth("warehouse-co") == ("flt1", "flt1b")
    assert HostPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


@pytest.mark.parametrize(("subnet", "hosts", "prefix", "message"), [
    ("8.8.8.0/24", ("a",), "fl", "private /24"),
    ("10.213.0.0/16", ("a",), "fl", "private /24"),
    ("127.0.0.0/24", ("a",), "fl", "private /24"),
    ("10.213.9.0/24", ("a", "a"), "fl", "1 repeated"),
    ("10.213.9.0/24", ("a",), "toolongprefix", "at most 15 characters"),
    ("10.213.9.0/24", ("a/b",), "fl", "cannot name a network namespace"),
])
def test_a_host_plan_refuses_what_cannot_be_made_into_separate_hosts(subnet: str, hosts: tuple[str, ...],
                                                                      prefix: str, message: str) -> None:
    with pytest.raises(NetworkConfigError, match=message):
        HostPlan(subnet, hosts, prefix=prefix)


def test_a_host_outside_the_plan_is_named_with_the_plans_hosts() -> None:
    plan = HostPlan("10.213.9.0/24", ("a", "b"))

    with pytest.raises(NetworkConfigError, match="c has no place in the host plan .*a, b"):
        plan.placement("c")


def test_a_placement_runs_a_command_in_its_namespace_and_the_local_one_as_it_is() -> None:
    placed = Placement("10.213.9.3", "flt-warehouse-co").command(["flwr", "run"])

    assert LOCAL.command(["flwr", "run"]) == ["flwr", "run"] and LOCAL.local
    assert os.path.basename(placed[0]) == "ip" and placed[1:] == ["netns", "exec", "flt-warehouse-co", "flwr", "run"]


def test_a_process_spec_keeps_its_namespace_through_the_state_file() -> None:
    spec = ProcessSpec(("/bin/peer", "node", "start"), {"A": "1"}, "/logs/p.log", "/p", "flt-peer0")
    recorded_before_namespaces = {"argv": ["/bin/peer"], "env": {}, "log": "/l", "cwd": "/"}

    assert ProcessSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    assert ProcessSpec.from_json(recorded_before_namespaces).namespace is None


def test_a_listening_socket_is_seen_in_proc_at_its_address_and_port() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        seen = [s for s in tcp_sockets(os.getpid()) if s.local == ("127.0.0.1", port)]
        assert [s.state for s in seen] == ["LISTEN"]
        assert listening(os.getpid(), "127.0.0.1", port)
        assert not listening(os.getpid(), "10.213.9.2", port)


def test_the_netns_runtime_places_every_node_at_its_own_address_and_a_reopened_network_keeps_the_plan(
        tmp_path: Path) -> None:
    config = ConsortiumConfig.from_dict(SOLO)  # its CAs, orderer and peer: .2 to .5
    plan = HostPlan("10.213.9.0/24", tuple(n.name for n in config.nodes()), prefix="flt")
    net = Network(config, tmp_path / "h", runtime=NetnsRuntime.on(plan))
    peer = config.peer(config.company("Solo"))

    at = net.runtime.places(peer)
    net.layout.write_state({"runtime": "netns", "complete": True, "config": config.to_dict(), "nodes": {},
                            **net.runtime.record()})
    reopened = open_network(net.layout.home)

    assert at.listen_host == at.host == net.runtime.host(peer) == "10.213.9.5"
    assert net.address(peer) == ("10.213.9.5", 23110)
    assert isinstance(reopened.runtime, NetnsRuntime) and reopened.runtime.plan == plan
    with pytest.raises(NetworkConfigError, match="needs a host plan"):
        Network(config, net.layout.home, runtime="netns")
