"""Every party on a host of its own: two rounds trained with each node and party in its own network namespace.

The test makes a bridge on a private /24 that is free on this machine, one namespace with its own
address per Fabric node (each org's CA, peer and chaincode service, the three orderers) and per
party (each company, the dealer, the coordinator), brings the consortium up there (netns runtime),
and trains breast-cancer-logreg for two rounds with each party's commands and Flower processes in
its namespace. While it trains, a sampler notes which processes run in which namespace and what
they listen on. Then everything is torn down, and the test checks that nothing is left.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fedledger.errors import NetworkError
from fedledger.fl.company import CompanySession
from fedledger.fl.config import RunConfig
from fedledger.network import ConsortiumConfig, HostPlan, Network, separate_hosts
from fedledger.network.hosts import NETNS_DIR, require_privileges
from fedledger.network.netns import NetnsRuntime
from fedledger.network.processes import tcp_sockets
from fedledger.node.demo import DemoConfig, Party, TrainingResult, train

COMPANIES = (("manufacturer-co", "Manufacturer"), ("warehouse-co", "Warehouse"), ("carrier-co", "Carrier"))
COORDINATOR, DEALER = ("coordinator", "Manufacturer"), ("kmc", "Carrier")
TASK = "netns-train"
HOST = "host"  # the sampler's name for this machine's own namespace


def _unused_subnet() -> str:
    """A private /24 that no address or route of this machine overlaps."""
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    used = [ipaddress.ip_network(m, strict=False) for m in re.findall(r"inet (\S+)", shown)]
    used += [ipaddress.ip_network(m, strict=False) for m in re.findall(r"^(?:\S+ )?(\d+\.\d+\.\d+\.\d+(?:/\d+)?)",
                                                                        routes, re.M)]
    for third in range(7, 250):
        candidate = ipaddress.ip_network(f"10.213.{third}.0/24")
        if not any(candidate.overlaps(net) for net in used if net.prefixlen > 0):
            return str(candidate)
    raise AssertionError("no free /24 in 10.213.0.0/16 for the test's bridge")


def _inode(path: str) -> int:
    return os.stat(path).st_ino


def _program(cmdline: list[str]) -> str:
    """What a process runs, in a word: a Python script's or module's name, else the binary's."""
    if Path(cmdline[0]).name.startswith("python") and len(cmdline) > 1:
        return cmdline[2] if cmdline[1] == "-m" and len(cmdline) > 2 else Path(cmdline[1]).name
    return Path(cmdline[0]).name


@dataclass
class Sampler:
    """Notes, every few tenths of a second, each process of the run: the namespace it runs in, and
    what every party namespace listens on."""

    plan: HostPlan
    home: Path
    programs: dict[str, set[str]] = field(default_factory=dict)
    listeners: dict[str, set[tuple[str, int]]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        namespaces = {_inode(str(NETNS_DIR / self.plan.namespace(h))): h for h in self.plan.hosts}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = [a.decode() for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
                where = namespaces.get(_inode(str(entry / "ns" / "net")), HOST)
            except OSError:
                continue
            # `ip netns exec` before it has entered its namespace is not yet the party's process.
            if not cmdline or Path(cmdline[0]).name == "ip" or (where == HOST and str(self.home) not in
                                                                 " ".join(cmdline)):
                continue
            self.programs.setdefault(where, set()).add(_program(cmdline))
            if where != HOST:
                self.listeners.setdefault(where, set()).update(
                    s.local for s in tcp_sockets(int(entry.name)) if s.listening)

    def run(self) -> None:
        while not self.stop.wait(0.3):
            self.sample()


@dataclass
class HostsRun:
    plan: HostPlan
    config: ConsortiumConfig
    home: Path
    result: TrainingResult
    nodes: dict[str, dict[str, Any]]  # node name -> its pid's namespace inode and its namespace's listeners
    namespaces: dict[str, int]  # host -> its namespace's inode, while it existed
    routes: dict[str, str]  # host -> `ip route` in its namespace
    sampler: Sampler
    ledger: dict[str, Any]
    logs: dict[str, str]  # node name -> its log
    left: list[str]  # what of the plan is still on the machine after teardown


def _left_behind(plan: HostPlan) -> list[str]:
    left = [f"namespace {n.name}" for n in NETNS_DIR.glob(f"{plan.prefix}-*")] if NETNS_DIR.exists() else []
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    left += [f"link {name}" for name in re.findall(rf"^\d+: ({plan.prefix}[^:@]*)", links, re.M)]
    rules = subprocess.run(["iptables", "-w", "-S", "FORWARD"], capture_output=True, text=True).stdout
    left += [f"rule {line}" for line in rules.splitlines() if plan.bridge in line.split()]
    return left


@pytest.fixture(scope="module")
def hosts_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostsRun]:
    try:
        require_privileges()
    except NetworkError as err:
        pytest.fail(f"this test puts every party in a network namespace of its own: {err}", pytrace=False)
    config = ConsortiumConfig.load()
    parties = [party for party, _ in (*COMPANIES, COORDINATOR, DEALER)]
    plan = HostPlan(_unused_subnet(), (*(n.name for n in config.nodes()), *parties),
                    prefix=f"fl{os.getpid() & 0xffff:x}")
    home = tmp_path_factory.mktemp("netns") / "home"

    def party(name: str, org: str) -> Party:
        return Party(name, org, plan.placement(name))

    demo = DemoConfig(companies=tuple(party(*c) for c in COMPANIES), coordinator=party(*COORDINATOR),
                      dealer=party(*DEALER), rounds=2, task_id=TASK, key_bits=1024, noise_multiplier=0.1,
                      epsilon_budget=1000, run=RunConfig(round_timeout=120))
    with separate_hosts(plan):
        namespaces = {h: _inode(str(NETNS_DIR / plan.namespace(h))) for h in plan.hosts}
        routes = {h: subprocess.run(["ip", "-n", plan.namespace(h), "-4", "route"], capture_output=True,
                                    text=True).stdout for h in plan.hosts}
        net = Network(config, home, runtime=NetnsRuntime.on(plan))
        sampler = Sampler(plan, home)
        watcher = threading.Thread(target=sampler.run, daemon=True)
        try:
            net.up()
            nodes = {s.name: {"netns": _inode(f"/proc/{s.pid}/ns/net"),
                              "listeners": {t.local for t in tcp_sockets(s.pid) if t.listening}}
                     for s in net.status() if s.pid is not None}
            watcher.start()
            result = train(home, demo, progress=lambda _: None)
            with CompanySession.open(result.homes[COORDINATOR[0]]) as session:
                ledger = {"task": session.ledger.get_task(TASK),
                          "rounds": [session.ledger.get_round(TASK, n) for n in (1, 2)]}
        finally:
            sampler.stop.set()
            if watcher.is_alive():
                watcher.join()
            net.down()
    logs = {n.name: net.layout.log(n).read_text(errors="replace") for n in config.nodes()}
    yield HostsRun(plan, config, home, result, nodes, namespaces, routes, sampler, ledger, logs, _left_behind(plan))


def test_the_task_trains_two_rounds_closed_on_the_ledger_with_every_party_on_its_own_host(hosts_run: HostsRun) -> None:
    task, rounds = hosts_run.ledger["task"], hosts_run.ledger["rounds"]

    assert task["status"] == "finished"
    assert [r["status"] for r in rounds] == ["closed", "closed"]
    assert [r["round"] for r in hosts_run.result.metrics["rounds"]] == [0, 1, 2]
    assert rounds[-1]["model_sha256"] == hosts_run.result.model_sha256


def test_every_party_works_from_a_home_of_its_own(hosts_run: HostsRun) -> None:
    homes = hosts_run.result.homes

    assert sorted(homes) == sorted(p for p, _ in (*COMPANIES, COORDINATOR, DEALER))
    for name, root in homes.items():
        assert root == hosts_run.home / "parties" / name and (root / "party.json").is_file()
        assert not any(other != root and root.is_relative_to(other) for other in homes.values())
    for company, _ in COMPANIES:  # each SuperNode kept its logs in its own company's home
        assert (homes[company] / "flower" / "logs" / "supernode.log").is_file()


def test_every_fabric_node_runs_in_its_own_namespace_and_listens_only_on_its_own_address(
        hosts_run: HostsRun) -> None:
    plan = hosts_run.plan

    assert sorted(hosts_run.nodes) == sorted(n.name for n in hosts_run.config.nodes())
    for name, seen in hosts_run.nodes.items():
        assert seen["netns"] == hosts_run.namespaces[name], f"{name} does not run in {plan.namespace(name)}"
        # Nothing on 127.0.0.1 (nor on every address): no other host can reach it over its own loopback.
        assert seen["listeners"] and {address for address, _ in seen["listeners"]} == {plan.address(name)}, \
            f"{name} listens on {sorted(seen['listeners'])}"


def test_each_partys_flower_processes_and_commands_ran_in_its_own_namespace(hosts_run: HostsRun) -> None:
    programs, plan = hosts_run.sampler.programs, hosts_run.plan
    coordinator = COORDINATOR[0]

    assert "flower-superlink" in programs.get(coordinator, set()), programs
    for company, _ in COMPANIES:
        assert "fedledger.node.supernode" in programs.get(company, set()), programs
    # No Flower process of the run, and no party command, ran in this machine's own namespace.
    assert programs.get(HOST, set()) == set(), programs
    assert programs.get(DEALER[0], set()) <= {"fedledger.cli.app"}, programs
    # The SuperLink binds only the coordinator's address (its certificate names it); a SuperNode's
    # only listener is its runtime API on its own loopback, which no other host shares.
    assert {a for a, _ in hosts_run.sampler.listeners[coordinator]} == {plan.address(coordinator)}
    for company, _ in COMPANIES:
        assert {a for a, _ in hosts_run.sampler.listeners[company]} == {"127.0.0.1"}


def _clients(log: str) -> set[str]:
    """The client addresses a node's log names: Fabric's gRPC servers and the CA's HTTP access log."""
    grpc = re.findall(r"grpc\.peer_address=([\d.]+):\d+", log)
    http = re.findall(r"\[INFO\] ([\d.]+):\d+ (?:GET|POST|PUT|DELETE) ", log)
    return set(grpc) | set(http)


def test_every_party_reached_the_network_from_its_own_address_and_nobody_over_127_0_0_1(
        hosts_run: HostsRun) -> None:
    plan, config, logs = hosts_run.plan, hosts_run.config, hosts_run.logs
    seen = {name: _clients(log) for name, log in logs.items()}
    everyone = set().union(*seen.values())
    network = ipaddress.ip_network(plan.subnet)

    assert everyone and all(ipaddress.ip_address(a) in network for a in everyone), sorted(everyone)
    # Each party enrolled at its org's CA from its own address (`fedledger node init` in its namespace).
    for name, org in (*COMPANIES, COORDINATOR, DEALER):
        ca = config.ca(config.company(org)).name
        assert re.search(rf"\] {re.escape(plan.address(name))}:\d+ POST /api/v1/enroll 201", logs[ca]), \
            f"{name} did not enroll at {ca} from {plan.address(name)}"
    # Each party used the ledger from its own address: the coordinator (task create, ServerApp),
    # the dealer (node deal) and each company (its ClientApp).
    gateway = set()
    for org in config.companies:
        log = logs[config.peer(org).name]
        gateway |= set(re.findall(r"grpc\.service=gateway\.Gateway .*?grpc\.peer_address=([\d.]+):", log))
    assert {plan.address(p) for p, _ in (*COMPANIES, COORDINATOR, DEALER)} <= gateway, sorted(gateway)


def test_no_namespace_has_a_route_beyond_the_bridge(hosts_run: HostsRun) -> None:
    for host, routes in hosts_run.routes.items():
        assert routes.split()[:1] == [hosts_run.plan.subnet] and len(routes.strip().splitlines()) == 1, \
            f"{host}: {routes}"


def test_teardown_leaves_no_namespace_bridge_link_or_firewall_rule(hosts_run: HostsRun) -> None:
    assert hosts_run.left == []
