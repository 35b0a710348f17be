"""The consortium as local processes on 127.0.0.1: bring-up, status and teardown.

``up`` runs the steps a consortium's operators run, in order: start every organization's CA, issue
every identity and TLS pair from it, make the channel's genesis block, start the Raft orderers and
join them to the channel, start and join the peers, then install, approve and commit the chaincode
and start each company's chaincode service. The state file (network.json) records every process and
how to restart it, so ``down`` without ``--purge`` keeps ledgers and keys and a later ``up`` resumes.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fedledger.errors import NetworkError, NetworkStateError, NodeError
from fedledger.fabric.ca import CAClient
from fedledger.network import chaincode as lifecycle
from fedledger.network.channel import genesis_block, join_orderer, run
from fedledger.network.config import ConsortiumConfig, Node, Organization, role_order
from fedledger.network.layout import Layout, cache_dir
from fedledger.network.nodeconfig import NodePlaces, orderer_settings, peer_settings
from fedledger.network.pki import ca_answers, ca_client, issue_consortium, save_registrar
from fedledger.network.profile import write_profile
from fedledger.network.processes import (
    ProcessSpec,
    http_ok,
    port_in_use,
    running,
    start,
    stop,
    tls_answers,
    wait_until,
)

REPO = Path(__file__).resolve().parents[3]
BUILDER = REPO / "network" / "builders" / "ccaas"
FABRIC_TOOLS = ("fabric-ca-server", "orderer", "peer", "configtxgen", "osnadmin")
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class NodeStatus:
    """What ``status`` knows of one node."""

    name: str
    role: str
    org: str
    address: str
    ports: dict[str, int]
    pid: int | None
    running: bool
    answers: bool
    log: str

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "role": self.role, "org": self.org, "address": self.address,
                "ports": self.ports, "pid": self.pid, "running": self.running, "answers": self.answers,
                "log": self.log}


@dataclass
class UpReport:
    """The outcome of ``up``: what was done, where state lives and how long it took."""

    home: Path
    resumed: bool
    already_up: bool
    seconds: float
    steps: list[tuple[str, float]] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)


def _address(node: Node) -> tuple[str, int]:
    return "127.0.0.1", node.port


class NativeNetwork:
    """A consortium run as local processes under one home directory."""

    def __init__(self, config: ConsortiumConfig, home: Path, *, bin_dir: Path | None = None) -> None:
        self.config = config
        self.layout = Layout(home)
        self.bin_dir = bin_dir or cache_dir() / "bin"
        self.fabric_config = self.bin_dir.parent / "config"

    @classmethod
    def open(cls, home: Path, *, bin_dir: Path | None = None) -> NativeNetwork:
        """The network recorded in ``home``, with the configuration it was brought up with."""
        layout = Layout(home)
        state = layout.read_state()
        if state is None:
            raise NetworkStateError(f"no network in {home}; run `fedledger network up`")
        return cls(ConsortiumConfig.from_dict(state["config"], source=str(layout.state_file)), home, bin_dir=bin_dir)

    # ---------------------------------------------------------------- state file

    def _read_state(self) -> dict[str, Any] | None:
        return self.layout.read_state()

    def _write_state(self, state: dict[str, Any]) -> None:
        self.layout.write_state(state)

    @staticmethod
    def _alive(entry: dict[str, Any]) -> bool:
        pid = entry.get("pid")
        return isinstance(pid, int) and running(pid, str(entry["spec"]["argv"][0]))

    # ---------------------------------------------------------------- up

    def up(self, *, progress: Progress = _quiet) -> UpReport:
        """Bring the consortium up, or resume a stopped one; refuse a half-started one."""
        began = time.monotonic()
        state = self._read_state()
        if state is not None:
            nodes = state.get("nodes", {})
            alive = {name for name, entry in nodes.items() if self._alive(entry)}
            if not state.get("complete"):
                raise NetworkStateError(
                    f"a previous bring-up in {self.layout.home} did not finish"
                    f"{' and some of its processes still run' if alive else ''}; run "
                    "`fedledger network down --purge` to remove it, then `fedledger network up`")
            if alive == set(nodes):
                return UpReport(self.layout.home, resumed=False, already_up=True, seconds=0.0)
            # A stopped network, or one whose nodes crashed: restart exactly the nodes not running.
            report = self._resume(state, sorted(set(nodes) - alive), progress)
            report.seconds = time.monotonic() - began
            return report
        self._preflight()
        try:
            report = self._bring_up(progress)
        except BaseException:
            progress("bring-up failed; stopping what it started and removing its state (logs are kept)")
            self._clean_failed()
            raise
        report.seconds = time.monotonic() - began
        return report

    def _preflight(self) -> None:
        missing = [t for t in FABRIC_TOOLS if not (self.bin_dir / t).is_file()]
        if missing:
            raise NetworkError(f"missing Fabric binaries in {self.bin_dir}: {', '.join(missing)}. "
                               "Run scripts/install-fabric.sh to build them")
        for name in ("core.yaml", "orderer.yaml"):
            if not (self.fabric_config / name).is_file():
                raise NetworkError(f"missing Fabric's default {name} in {self.fabric_config}. "
                                   "Run scripts/install-fabric.sh fabric")
        if shutil.which("go") is None:
            raise NetworkError("the Go toolchain is not on PATH; it builds the chaincode service")
        busy = [(n.name, p) for n in self.config.nodes() for p in n.ports().values() if port_in_use(p)]
        if busy:
            names = ", ".join(f"{p} ({n})" for n, p in busy)
            raise NetworkError(f"ports already in use: {names}. Stop whatever holds them, or choose other "
                               "ports with --base-port (or base-port in the consortium file)")

    def _clean_failed(self) -> None:
        state = self._read_state() or {}
        stop(self._targets(state))
        for child in list(self.layout.home.iterdir()) if self.layout.home.exists() else []:
            if child != self.layout.logs:
                shutil.rmtree(child) if child.is_dir() else child.unlink()

    def _bring_up(self, progress: Progress) -> UpReport:
        layout, config = self.layout, self.config
        layout.home.mkdir(parents=True, exist_ok=True)
        report = UpReport(layout.home, resumed=False, already_up=False, seconds=0.0)
        state: dict[str, Any] = {"runtime": "native", "complete": False, "home": str(layout.home),
                                 "config": config.to_dict(), "nodes": {}}
        self._write_state(state)

        def step(name: str, action: Callable[[], None]) -> None:
            t = time.monotonic()
            progress(f"{name} ...")
            action()
            report.steps.append((name, time.monotonic() - t))

        binary = layout.home / "bin" / "fedledger-chaincode"
        step("build the chaincode service", lambda: self._build_chaincode(binary))
        step("start the CAs", lambda: self._start_cas(state))
        step("issue identities and TLS certificates from each CA", self._issue_crypto)
        block_holder: list[Path] = []
        step("make the channel's genesis block (configtxgen)",
             lambda: block_holder.append(genesis_block(config, layout, self.bin_dir / "configtxgen", _address)))
        block = block_holder[0]
        step("start the Raft orderers and join them to the channel", lambda: self._start_orderers(state, block))
        step("start the peers and join them to the channel", lambda: self._start_peers(state, block))
        step("install, approve and commit the chaincode; start its services",
             lambda: self._deploy_chaincode(state, binary))
        self._write_profile()
        step("wait until every peer's Gateway reaches every other organization", self._wait_gossip)
        state["complete"] = True
        self._write_state(state)
        return report

    def _build_chaincode(self, binary: Path) -> None:
        binary.parent.mkdir(parents=True, exist_ok=True)
        run(["go", "build", "-o", str(binary), "./cmd/fedledger-chaincode"], env={"CGO_ENABLED": "0"},
            cwd=REPO / "chaincode", what="building the chaincode service", timeout=600)

    def _launch(self, state: dict[str, Any], node: Node, spec: ProcessSpec) -> int:
        pid = start(spec)
        state["nodes"][node.name] = {"role": node.role, "org": node.org.name, "ports": node.ports(),
                                     "pid": pid, "spec": spec.to_json()}
        self._write_state(state)
        return pid

    def _alive_check(self, state: dict[str, Any], node: Node) -> Callable[[], bool]:
        return lambda: self._alive(state["nodes"][node.name])

    # -- CAs

    def _ca_spec(self, node: Node) -> ProcessSpec:
        org = node.org
        assert node.operations_port is not None
        argv = (str(self.bin_dir / "fabric-ca-server"), "start", "--home", str(self.layout.ca_home(org)),
                "--address", "127.0.0.1", "--port", str(node.port), "--tls.enabled",
                "--ca.name", org.ca_name, "--csr.cn", node.host,
                "--csr.hosts", f"{node.host},localhost,127.0.0.1",
                "--operations.listenaddress", f"127.0.0.1:{node.operations_port}")
        return ProcessSpec(argv, {}, str(self.layout.log(node)), str(self.layout.ca_home(org)))

    def _start_cas(self, state: dict[str, Any]) -> None:
        secrets_by_org: dict[str, str] = {}
        import secrets

        for org in self.config.organizations:
            node = self.config.ca(org)
            spec = self._ca_spec(node)
            home = self.layout.ca_home(org)
            home.mkdir(parents=True, exist_ok=True)
            # The bootstrap registrar's secret exists only for this bring-up: it is used once to
            # enroll the registrar, whose key is then kept (0600) in the org's ca-admin folder.
            secret = secrets.token_urlsafe(24)
            secrets_by_org[org.name] = secret
            run([spec.argv[0], "init", "-b", f"registrar:{secret}", *spec.argv[2:]], env={}, cwd=home,
                what=f"initializing {node.name}")
            self._launch(state, node, spec)
        for org in self.config.organizations:
            node = self.config.ca(org)
            client = self._ca_client(org)
            wait_until(functools.partial(ca_answers, client), node=node.name, what="answer on its TLS port",
                       log=str(self.layout.log(node)), timeout=30, alive=self._alive_check(state, node))
            registrar = client.enroll("registrar", secrets_by_org[org.name])
            save_registrar(self.layout, org, registrar)

    def _ca_client(self, org: Organization) -> CAClient:
        return ca_client(self.config, self.layout, org)

    def _issue_crypto(self) -> None:
        issue_consortium(self.config, self.layout)

    # -- orderers

    def _places(self, node: Node) -> NodePlaces:
        layout = self.layout
        return NodePlaces(msp=layout.msp(node), tls=layout.tls(node), data=layout.data(node), listen_host="127.0.0.1",
                          listen_port=node.port, announce=f"127.0.0.1:{node.port}",
                          operations_port=node.operations_port or 0, admin_port=node.admin_port or 0,
                          chaincode_port=node.chaincode_port or 0)

    def _orderer_spec(self, node: Node) -> ProcessSpec:
        layout = self.layout
        settings = orderer_settings(self.fabric_config / "orderer.yaml", node, self._places(node))
        config_dir = layout.config(node)
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "orderer.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
        return ProcessSpec((str(self.bin_dir / "orderer"),), {"FABRIC_CFG_PATH": str(config_dir)},
                           str(layout.log(node)), str(config_dir))

    def _start_orderers(self, state: dict[str, Any], block: Path) -> None:
        orderers = self.config.orderers()
        for node in orderers:
            self._launch(state, node, self._orderer_spec(node))
        for node in orderers:
            self._wait_healthy(state, node)
        for node in orderers:
            join_orderer(self.config, self.layout, self.bin_dir / "osnadmin", node, block)

    def _wait_healthy(self, state: dict[str, Any], node: Node, timeout: float = 60) -> None:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{node.operations_port}/healthz"), node=node.name,
                   what="report healthy on /healthz", log=str(self.layout.log(node)), timeout=timeout,
                   alive=self._alive_check(state, node))

    # -- peers

    def _peer_spec(self, node: Node) -> ProcessSpec:
        layout = self.layout
        settings = peer_settings(self.fabric_config / "core.yaml", node, self._places(node),
                                 network_id=f"fedledger-{self.config.base_port}", builder=BUILDER,
                                 chaincode_host="127.0.0.1")
        config_dir = layout.config(node)
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "core.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
        return ProcessSpec((str(self.bin_dir / "peer"), "node", "start"), {"FABRIC_CFG_PATH": str(config_dir)},
                           str(layout.log(node)), str(config_dir))

    def _start_peers(self, state: dict[str, Any], block: Path) -> None:
        peers = [self.config.peer(org) for org in self.config.companies]
        for node in peers:
            self._launch(state, node, self._peer_spec(node))
        for node in peers:
            self._wait_healthy(state, node)
        for org in self.config.companies:
            join = [str(self.bin_dir / "peer"), "channel", "join", "-b", str(block)]
            what = f"{self.config.peer(org).name} joining channel {self.config.channel}"
            # /healthz can answer a moment before the peer's gRPC listener accepts connections.
            deadline = time.monotonic() + 20
            while True:
                try:
                    run(join, env=lifecycle.admin_env(self.config, self.layout, org), what=what)
                    break
                except NetworkError as err:
                    if "connection refused" not in str(err) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)

    # -- chaincode

    def _chaincode_spec(self, node: Node, binary: Path, package_id: str) -> ProcessSpec:
        tls = self.layout.tls(node)
        env = {"CHAINCODE_ID": package_id, "CHAINCODE_SERVER_ADDRESS": f"127.0.0.1:{node.port}",
               "CHAINCODE_TLS_KEY_FILE": str(tls / "server.key"), "CHAINCODE_TLS_CERT_FILE": str(tls / "server.crt"),
               "CHAINCODE_TLS_CLIENT_CA_FILE": str(tls / "ca.crt")}
        return ProcessSpec((str(binary),), env, str(self.layout.log(node)), str(self.layout.node(node)))

    def _deploy_chaincode(self, state: dict[str, Any], binary: Path) -> None:
        config, layout, peer_bin = self.config, self.layout, self.bin_dir / "peer"
        orderers = config.orderers()
        for j, org in enumerate(config.companies):
            service = config.chaincode_service(org)
            pkg, package_id = lifecycle.package(config, layout, org, _address(service))
            lifecycle.install(peer_bin, config, layout, org, pkg)
            self._launch(state, service, self._chaincode_spec(service, binary, package_id))
            lifecycle.approve(peer_bin, config, layout, org, package_id, orderers[j % len(orderers)])
        for org in config.companies:
            self._wait_chaincode(state, config.chaincode_service(org))
        lifecycle.commit(peer_bin, config, layout, orderers[0])

    def _chaincode_answers(self, node: Node) -> bool:
        peer_tls = self.layout.tls(self.config.peer(node.org))
        return tls_answers("127.0.0.1", node.port, root_pem=(self.layout.tls(node) / "ca.crt").read_bytes(),
                           client=(str(peer_tls / "server.crt"), str(peer_tls / "server.key")))

    def _wait_chaincode(self, state: dict[str, Any], node: Node) -> None:
        wait_until(lambda: self._chaincode_answers(node), node=node.name, what="accept TLS connections",
                   log=str(self.layout.log(node)), timeout=30, alive=self._alive_check(state, node))

    def _wait_gossip(self, timeout: float = 60) -> None:
        """Evaluate through each org's Gateway on every other org's peer until all of them answer.

        That is when a submit can gather endorsements from a majority: the Gateway finds the
        other orgs' peers (and their chaincode) through gossip, not through configuration.
        """
        from fedledger.errors import GatewayError
        from fedledger.fabric.gateway import connect
        from fedledger.fabric.identity import Identity, Signer

        deadline = time.monotonic() + timeout
        for org in self.config.companies:
            msp = self.layout.user(org, "client") / "msp"
            identity = Identity(org.msp_id, (msp / "signcerts" / "cert.pem").read_bytes())
            signer = Signer.from_pem((msp / "keystore" / "key.pem").read_bytes())
            peer = self.config.peer(org)
            with connect(f"127.0.0.1:{peer.port}", identity=identity, signer=signer,
                         tls_root_certificates=self.layout.ca_root(org).read_bytes()) as gateway:
                contract = gateway.network(self.config.channel).contract(self.config.chaincode)
                for other in self.config.companies:
                    while True:
                        try:
                            contract.evaluate("Version", endorsing_organizations=[other.msp_id])
                            break
                        except GatewayError as err:
                            if time.monotonic() > deadline:
                                raise NodeError(peer.name, f"its Gateway cannot reach {other.name}'s peer "
                                                f"after {timeout:.0f} s: {err}", str(self.layout.log(peer))) from None
                            time.sleep(0.2)

    # -- connection profile

    def _write_profile(self) -> None:
        write_profile(self.config, self.layout)

    # ---------------------------------------------------------------- resume

    def _resume(self, state: dict[str, Any], names: list[str], progress: Progress) -> UpReport:
        report = UpReport(self.layout.home, resumed=True, already_up=False, seconds=0.0, restarted=names)
        specs = {name: ProcessSpec.from_json(state["nodes"][name]["spec"]) for name in names}
        busy = [(n, p) for n in names for p in state["nodes"][n]["ports"].values() if port_in_use(p)]
        if busy:
            raise NetworkError("cannot restart: ports already in use: " + ", ".join(f"{p} ({n})" for n, p in busy)
                               + ". Stop whatever holds them and run `fedledger network up` again")
        t = time.monotonic()
        if any(state["nodes"][n]["role"] == "chaincode" for n in names):
            # The chaincode services run this checkout's contract: rebuild it (seconds when cached),
            # so a restarted network never serves a stale one. The package id, and so the
            # definition on the channel, does not change: it names the service, not its code.
            self._build_chaincode(self.layout.home / "bin" / "fedledger-chaincode")
        progress(f"restart {len(names)} node(s) from their recorded configuration: {', '.join(names)} ...")
        by_name = {n.name: n for n in self.config.nodes()}
        started: list[str] = []
        try:
            for role in ("ca", "orderer", "peer", "chaincode"):
                batch = [n for n in names if state["nodes"][n]["role"] == role]
                for name in batch:
                    state["nodes"][name]["pid"] = start(specs[name])
                    started.append(name)
                self._write_state(state)
                for name in batch:
                    self._wait_answers(state, by_name[name])
        except BaseException:
            # Leave the network as it was found: stop only what this call started.
            stop([(state["nodes"][n]["pid"], specs[n].argv[0]) for n in started])
            raise
        report.steps.append(("restart nodes", time.monotonic() - t))
        if any(state["nodes"][n]["role"] in ("peer", "orderer") for n in names):
            t = time.monotonic()
            self._wait_gossip()
            report.steps.append(("wait until every peer's Gateway reaches every other organization",
                                 time.monotonic() - t))
        return report

    def _wait_answers(self, state: dict[str, Any], node: Node) -> None:
        if node.role == "chaincode":
            self._wait_chaincode(state, node)
        else:
            self._wait_healthy(state, node)

    # ---------------------------------------------------------------- status / down

    def _answers(self, node: Node) -> bool:
        if node.role == "chaincode":
            return self._chaincode_answers(node)
        return http_ok(f"http://127.0.0.1:{node.operations_port}/healthz")

    def status(self) -> list[NodeStatus]:
        """Every node of the network: its role, org, address, pid, whether it runs and answers."""
        state = self._read_state()
        if state is None:
            raise NetworkStateError(f"no network in {self.layout.home}; run `fedledger network up`")
        by_name = {n.name: n for n in self.config.nodes()}
        result = []
        for name, entry in sorted(state["nodes"].items(), key=lambda kv: role_order(kv[1]["role"], kv[0])):
            alive = self._alive(entry)
            node = by_name.get(name)
            answers = alive and node is not None and self._answers(node)
            result.append(NodeStatus(name, entry["role"], entry["org"], f"127.0.0.1:{entry['ports']['listen']}",
                                     entry["ports"], entry.get("pid"), alive, answers, entry["spec"]["log"]))
        return result

    @staticmethod
    def _targets(state: dict[str, Any]) -> list[tuple[int, str]]:
        nodes = sorted(state.get("nodes", {}).values(), key=lambda e: -role_order(e["role"], "")[0])
        return [(e["pid"], str(e["spec"]["argv"][0])) for e in nodes if isinstance(e.get("pid"), int)]

    def down(self, *, purge: bool = False) -> list[int]:
        """Stop every node this network started; with ``purge`` also delete its ledgers and keys."""
        state = self._read_state()
        if state is None:
            if purge and self.layout.home.exists():
                shutil.rmtree(self.layout.home)
            return []
        stopped = stop(self._targets(state))
        left = [pid for pid, exe in self._targets(state) if running(pid, exe)]
        if left:
            raise NetworkError(f"processes {left} did not stop; stop them by hand")
        if purge:
            shutil.rmtree(self.layout.home)
        return stopped

