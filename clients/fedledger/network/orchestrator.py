"""The consortium's bring-up, resume, status and teardown, written once for every runtime.

``up`` runs the steps a consortium's operators run, in order: start every organization's CA, issue
every identity and TLS pair from it, make the channel's genesis block, start the Raft orderers and
join them to the channel (osnadmin), start and join the peers, then install, approve and commit the
chaincode with each company's chaincode service running, wait until gossip lets every Gateway reach
every organization, and write the connection profile. Where and how a node runs (a local process,
a container) is the ``Runtime``'s business (``fedledger.network.runtime``); everything else is here.
The state file (network.json) records the runtime and every node, so ``down`` without ``--purge``
keeps ledgers and keys and a later ``up`` resumes, restarting exactly the nodes that do not run.
"""

from __future__ import annotations

import functools
import secrets
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fedledger.errors import GatewayError, NetworkConfigError, NetworkError, NetworkStateError, NodeError
from fedledger.fabric.ca import CAClient
from fedledger.fabric.gateway import connect
from fedledger.fabric.identity import Identity, Signer
from fedledger.network import chaincode as lifecycle
from fedledger.network.channel import genesis_block, join_orderer, run
from fedledger.network.config import ConsortiumConfig, Node, Organization, role_order
from fedledger.network.layout import Layout, cache_dir
from fedledger.network.nodeconfig import orderer_settings, peer_settings
from fedledger.network.pki import ca_answers, ca_client, issue_consortium, save_registrar
from fedledger.network.processes import http_ok, port_in_use, require_binaries, tls_answers
from fedledger.network.profile import write_profile
from fedledger.network.runtime import Launch, Record, RuntimeFactory, load_runtime

# The Fabric tools this machine runs whatever the runtime: CA init, configtxgen, osnadmin, the peer CLI.
HOST_TOOLS = ("fabric-ca-server", "configtxgen", "osnadmin", "peer")
ROLES = ("ca", "orderer", "peer", "chaincode")
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


@dataclass(frozen=True)
class ContainerStatus(NodeStatus):
    """What ``status`` knows of one node run as a container (``pid`` is None; ``container`` names it)."""

    container: str | None

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "container": self.container}


@dataclass
class UpReport:
    """The outcome of ``up``: what was done, where state lives and how long it took."""

    home: Path
    resumed: bool
    already_up: bool
    seconds: float
    steps: list[tuple[str, float]] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)


class Network:
    """A consortium under one home directory, its nodes run by one runtime.

    Parameters
    ----------
    config, home
        The consortium and the directory its state, keys, ledgers and logs live in.
    runtime
        A runtime's name (``native``, the default, or ``docker``: ``fedledger.network.RUNTIMES``)
        or a ``RuntimeFactory``.
    bin_dir
        The Fabric binaries (default ``~/.cache/fedledger/bin``); Fabric's default configuration is
        read from ``bin_dir/../config``.
    recorded
        The state file of a network brought up already; ``open`` passes it.
    """

    def __init__(self, config: ConsortiumConfig, home: Path, *, runtime: str | RuntimeFactory = "native",
                 bin_dir: Path | None = None, recorded: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.layout = Layout(home)
        self.bin_dir = bin_dir or cache_dir() / "bin"
        self.fabric_config = self.bin_dir.parent / "config"
        factory = load_runtime(runtime) if isinstance(runtime, str) else runtime
        self.runtime = factory(config, self.layout, bin_dir=self.bin_dir, recorded=recorded)

    @classmethod
    def open(cls, home: Path, *, bin_dir: Path | None = None) -> Network:
        """The network recorded in ``home``, with the configuration and runtime it was brought up with."""
        layout = Layout(home)
        state = layout.read_state()
        if state is None:
            raise NetworkStateError(f"no network in {home}; run `fedledger network up`")
        name = str(state.get("runtime", "native"))
        try:
            factory = load_runtime(name)
        except NetworkConfigError as err:
            raise NetworkStateError(f"the network in {home} was brought up with a runtime this fedledger "
                                    f"does not have: {err}") from None
        config = ConsortiumConfig.from_dict(state["config"], source=str(layout.state_file))
        return cls(config, home, runtime=factory, bin_dir=bin_dir, recorded=state)

    # ---------------------------------------------------------------- addresses

    def address(self, node: Node, kind: str = "listen") -> tuple[str, int]:
        """Where this machine's tools and clients reach ``node``'s ``kind`` port."""
        return self.runtime.host(node), self.runtime.ports(node)[kind]

    def _internal(self, node: Node) -> tuple[str, int]:
        """Where the other nodes reach ``node``'s listener."""
        at = self.runtime.places(node)
        return at.host, at.ports["listen"]

    def _tls_hosts(self, node: Node) -> tuple[str, ...]:
        # A node's TLS certificate names it as every client reaches it: by its DNS name, from this
        # machine and from the other nodes.
        names = (node.host, "localhost", self.runtime.host(node), self.runtime.places(node).host)
        return tuple(dict.fromkeys(names))

    # ---------------------------------------------------------------- state file

    def _read_state(self) -> dict[str, Any] | None:
        return self.layout.read_state()

    def _write_state(self, state: dict[str, Any]) -> None:
        self.layout.write_state(state)

    def _running(self, state: dict[str, Any], node: Node) -> bool:
        records = state["nodes"]
        return node.name in records and self.runtime.observe({node.name: records[node.name]})[node.name].running

    # ---------------------------------------------------------------- up

    def up(self, *, progress: Progress = _quiet) -> UpReport:
        """Bring the consortium up, or restart the nodes of a stopped one; refuse a half-started one."""
        began = time.monotonic()
        state = self._read_state()
        if state is not None:
            records: dict[str, Record] = state.get("nodes", {})
            if not state.get("complete"):
                raise NetworkStateError(
                    f"a previous bring-up in {self.layout.home} did not finish{self._some_still_run(records)}; "
                    "run `fedledger network down --purge` to remove it, then `fedledger network up`")
            seen = self.runtime.observe(records)
            stopped = sorted(name for name in records if not seen[name].running)
            if not stopped:
                return UpReport(self.layout.home, resumed=False, already_up=True, seconds=0.0)
            # A stopped network, or one whose nodes crashed: restart exactly the nodes not running.
            report = self._resume(state, stopped, progress)
            report.seconds = time.monotonic() - began
            return report
        self._preflight()
        try:
            report = self._bring_up(progress)
        except BaseException:
            progress("bring-up failed; stopping what it started and removing its state (logs are kept in logs/)")
            self._clean_failed(progress)
            raise
        report.seconds = time.monotonic() - began
        return report

    def _some_still_run(self, records: Mapping[str, Record]) -> str:
        try:
            alive = any(seen.running for seen in self.runtime.observe(records).values())
        except NetworkError:
            return ""  # the runtime cannot tell (no Docker engine): then nothing of it runs
        return " and some of its nodes still run" if alive else ""

    def _preflight(self) -> None:
        require_binaries(self.bin_dir, HOST_TOOLS)
        for name in ("core.yaml", "orderer.yaml"):
            if not (self.fabric_config / name).is_file():
                raise NetworkError(f"missing Fabric's default {name} in {self.fabric_config}. "
                                   "Run scripts/install-fabric.sh fabric")
        self.runtime.preflight()
        busy = [(n.name, port) for n in self.config.nodes() for port in self.runtime.ports(n).values()
                if port_in_use(port, self.runtime.host(n))]
        if busy:
            names = ", ".join(f"{p} ({n})" for n, p in busy)
            raise NetworkError(f"ports already in use: {names}. Stop whatever holds them, or choose other "
                               "ports with --base-port (or base-port in the consortium file)")

    def _clean_failed(self, progress: Progress) -> None:
        try:
            state = self._read_state() or {}
            self.runtime.stop_all(state.get("nodes", {}))
        except NetworkError as err:
            progress(f"could not stop everything the bring-up started: {err}")
        home = self.layout.home
        for child in list(home.iterdir()) if home.exists() else []:
            if child != self.layout.logs:
                shutil.rmtree(child) if child.is_dir() else child.unlink()

    def _bring_up(self, progress: Progress) -> UpReport:
        layout, config = self.layout, self.config
        layout.home.mkdir(parents=True, exist_ok=True)
        report = UpReport(layout.home, resumed=False, already_up=False, seconds=0.0)
        state: dict[str, Any] = {"runtime": self.runtime.name, "complete": False, "home": str(layout.home),
                                 "config": config.to_dict(), "nodes": {}, **self.runtime.record()}
        self._write_state(state)

        def step(name: str, action: Callable[[], None]) -> None:
            t = time.monotonic()
            progress(f"{name} ...")
            action()
            report.steps.append((name, time.monotonic() - t))

        self.runtime.prepare(step)
        step("start the CAs", lambda: self._start_cas(state))
        step("issue identities and TLS certificates from each CA",
             lambda: issue_consortium(config, layout, address=self.address, hosts=self._tls_hosts))
        block_holder: list[Path] = []
        step("make the channel's genesis block (configtxgen)",
             lambda: block_holder.append(genesis_block(config, layout, self.bin_dir / "configtxgen", self._internal)))
        block = block_holder[0]
        step("start the Raft orderers and join them to the channel", lambda: self._start_orderers(state, block))
        step("start the peers and join them to the channel", lambda: self._start_peers(state, block))
        step("install, approve and commit the chaincode; start its services", lambda: self._deploy_chaincode(state))
        self._write_profile()
        step("wait until every peer's Gateway reaches every other organization", self._wait_gossip)
        state["complete"] = True
        self._write_state(state)
        return report

    def _start(self, state: dict[str, Any], launches: Sequence[Launch]) -> None:
        records = self.runtime.start(launches)
        for launch in launches:
            node = launch.node
            state["nodes"][node.name] = {"role": node.role, "org": node.org.name, "ports": self.runtime.ports(node),
                                         **records.get(node.name, {})}
        self._write_state(state)

    def _wait(self, state: dict[str, Any], node: Node, check: Callable[[], bool], what: str,
              timeout: float = 60) -> None:
        """Poll ``check`` until it holds; a node that stops first, or a timeout, raises NodeError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if not self._running(state, node):
                raise NodeError(node.name, f"stopped before it could {what}: {self.runtime.log_tail(node)}",
                                self.runtime.log(node))
            time.sleep(0.1)
        raise NodeError(node.name, f"did not {what} within {timeout:.0f} s: {self.runtime.log_tail(node)}",
                        self.runtime.log(node))

    # -- CAs

    def _start_cas(self, state: dict[str, Any]) -> None:
        cas = [self.config.ca(org) for org in self.config.organizations]
        # The bootstrap registrar's secret exists only for this bring-up: it is used once to
        # enroll the registrar, whose key is then kept (0600) in the org's ca-admin folder.
        registrar_secrets = {node.name: secrets.token_urlsafe(24) for node in cas}

        def init(node: Node) -> None:
            # On this machine, whatever the runtime: the CA's root exists before the CA starts.
            home = self.layout.ca_home(node.org)
            home.mkdir(parents=True, exist_ok=True)
            run([str(self.bin_dir / "fabric-ca-server"), "init", "-b", f"registrar:{registrar_secrets[node.name]}",
                 "--home", str(home), *self._ca_flags(node)], env={}, cwd=home, what=f"initializing {node.name}")

        with ThreadPoolExecutor(max_workers=len(cas)) as pool:
            for future in [pool.submit(init, node) for node in cas]:
                future.result()
        launches = []
        for node in cas:
            at = self.runtime.places(node)
            launches.append(Launch(node, ("fabric-ca-server", "start", "--home", str(at.root), *self._ca_flags(node)),
                                   {}, at.root))
        self._start(state, launches)
        for node in cas:
            client = self._ca_client(node.org)
            self._wait(state, node, functools.partial(ca_answers, client), "answer on its TLS port")
            registrar = client.enroll("registrar", registrar_secrets[node.name])
            save_registrar(self.layout, node.org, registrar)

    def _ca_flags(self, node: Node) -> list[str]:
        at = self.runtime.places(node)
        return ["--address", at.listen_host, "--port", str(at.ports["listen"]), "--tls.enabled",
                "--ca.name", node.org.ca_name, "--csr.cn", node.host, "--csr.hosts", ",".join(self._tls_hosts(node)),
                "--operations.listenaddress", f"{at.listen_host}:{at.ports['operations']}"]

    def _ca_client(self, org: Organization) -> CAClient:
        return ca_client(self.config, self.layout, org, address=self.address)

    # -- orderers and peers

    def _write_config(self, node: Node, name: str, settings: dict[str, Any]) -> None:
        directory = self.layout.config(node)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(yaml.safe_dump(settings, sort_keys=False))

    def _orderer_launch(self, node: Node) -> Launch:
        at = self.runtime.places(node)
        self._write_config(node, "orderer.yaml", orderer_settings(self.fabric_config / "orderer.yaml", node, at))
        return Launch(node, ("orderer",), {"FABRIC_CFG_PATH": str(at.config)}, at.config)

    def _peer_launch(self, node: Node) -> Launch:
        # The peer CLI on this machine reads the same core.yaml (``lifecycle.admin_env``); it takes
        # every path it needs from the environment, so the node's own paths in it do not matter there.
        at = self.runtime.places(node)
        settings = peer_settings(self.fabric_config / "core.yaml", node, at,
                                 network_id=f"fedledger-{self.config.base_port}")
        self._write_config(node, "core.yaml", settings)
        return Launch(node, ("peer", "node", "start"), {"FABRIC_CFG_PATH": str(at.config)}, at.config)

    def _start_orderers(self, state: dict[str, Any], block: Path) -> None:
        orderers = self.config.orderers()
        self._start(state, [self._orderer_launch(node) for node in orderers])
        for node in orderers:
            self._wait_healthy(state, node)
        for node in orderers:
            join_orderer(self.config, self.layout, self.bin_dir / "osnadmin", node, block, address=self.address)

    def _start_peers(self, state: dict[str, Any], block: Path) -> None:
        peers = [self.config.peer(org) for org in self.config.companies]
        self._start(state, [self._peer_launch(node) for node in peers])
        for node in peers:
            self._wait_healthy(state, node)
        for org in self.config.companies:
            join = [str(self.bin_dir / "peer"), "channel", "join", "-b", str(block)]
            what = f"{self.config.peer(org).name} joining channel {self.config.channel}"
            deadline = time.monotonic() + 20
            while True:
                try:
                    run(join, env=lifecycle.admin_env(self.config, self.layout, org, address=self.address), what=what)
                    break
                except NetworkError as err:
                    if "connection refused" not in str(err) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)

    def _healthy(self, node: Node) -> bool:
        host, port = self.address(node, "operations")
        return http_ok(f"http://{host}:{port}/healthz")

    def _wait_healthy(self, state: dict[str, Any], node: Node, timeout: float = 60) -> None:
        # /healthz can answer a moment before the gRPC listener accepts connections, and a published
        # port accepts TCP connections (Docker's proxy) before the node does: wait for a TLS handshake.
        root = self.layout.ca_root(node.org).read_bytes()
        host, port = self.address(node)
        self._wait(state, node, lambda: self._healthy(node) and tls_answers(host, port, root_pem=root),
                   "report healthy on /healthz and accept TLS connections", timeout=timeout)

    # -- chaincode

    def _chaincode_launch(self, node: Node, package_id: str) -> Launch:
        at = self.runtime.places(node)
        env = {"CHAINCODE_ID": package_id, "CHAINCODE_SERVER_ADDRESS": f"{at.listen_host}:{at.ports['listen']}",
               "CHAINCODE_TLS_KEY_FILE": str(at.tls / "server.key"), "CHAINCODE_TLS_CERT_FILE": str(at.tls / "server.crt"),
               "CHAINCODE_TLS_CLIENT_CA_FILE": str(at.tls / "ca.crt")}
        return Launch(node, ("fedledger-chaincode",), env, at.root)

    def _deploy_chaincode(self, state: dict[str, Any]) -> None:
        config, layout, peer_bin = self.config, self.layout, self.bin_dir / "peer"
        orderers = config.orderers()
        services = [config.chaincode_service(org) for org in config.companies]

        def install(org: Organization, service: Node) -> str:
            # The peer dials its org's service where the other nodes reach it.
            pkg, package_id = lifecycle.package(config, layout, org, self._internal(service))
            lifecycle.install(peer_bin, config, layout, org, pkg, address=self.address)
            return package_id

        def approve(j: int, org: Organization, package_id: str) -> None:
            lifecycle.approve(peer_bin, config, layout, org, package_id, orderers[j % len(orderers)],
                              address=self.address)

        # Each company installs on its own peer and approves for itself alone (its approval is in
        # its own implicit collection), so the companies do both at once: the approvals share a block.
        with ThreadPoolExecutor(max_workers=len(config.companies)) as pool:
            package_ids = list(pool.map(install, config.companies, services))
            self._start(state, [self._chaincode_launch(node, pid) for node, pid in zip(services, package_ids)])
            for future in [pool.submit(approve, j, org, package_id)
                           for j, (org, package_id) in enumerate(zip(config.companies, package_ids))]:
                future.result()
        for node in services:
            self._wait(state, node, functools.partial(self._chaincode_answers, node), "accept TLS connections",
                       timeout=30)
        lifecycle.commit(peer_bin, config, layout, orderers[0], address=self.address)

    def _chaincode_answers(self, node: Node) -> bool:
        peer_tls = self.layout.tls(self.config.peer(node.org))
        host, port = self.address(node)
        return tls_answers(host, port, root_pem=(self.layout.tls(node) / "ca.crt").read_bytes(),
                           client=(str(peer_tls / "server.crt"), str(peer_tls / "server.key")))

    def _wait_gossip(self, timeout: float = 60) -> None:
        """Evaluate through each org's Gateway on every other org's peer until all of them answer.

        That is when a submit can gather endorsements from a majority: the Gateway finds the
        other orgs' peers (and their chaincode) through gossip, not through configuration. The
        probe is the read-only Version transaction, so the ledger is unchanged.
        """
        deadline = time.monotonic() + timeout
        for org in self.config.companies:
            msp = self.layout.user(org, "client") / "msp"
            identity = Identity(org.msp_id, (msp / "signcerts" / "cert.pem").read_bytes())
            signer = Signer.from_pem((msp / "keystore" / "key.pem").read_bytes())
            peer = self.config.peer(org)
            with connect("%s:%d" % self.address(peer), identity=identity, signer=signer,
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
                                                f"after {timeout:.0f} s: {err}", self.runtime.log(peer)) from None
                            time.sleep(0.2)

    # -- connection profile

    def _write_profile(self) -> None:
        write_profile(self.config, self.layout, address=self.address)

    # ---------------------------------------------------------------- resume

    def _resume(self, state: dict[str, Any], names: list[str], progress: Progress) -> UpReport:
        records: dict[str, Record] = state["nodes"]
        by_name = {n.name: n for n in self.config.nodes()}
        nodes = [by_name[name] for name in names]
        report = UpReport(self.layout.home, resumed=True, already_up=False, seconds=0.0, restarted=names)
        busy = [(n.name, port) for n in nodes for port in self.runtime.ports(n).values()
                if port_in_use(port, self.runtime.host(n))]
        if busy:
            raise NetworkError("cannot restart: ports already in use: " + ", ".join(f"{p} ({n})" for n, p in busy)
                               + ". Stop whatever holds them and run `fedledger network up` again")
        t = time.monotonic()
        progress(f"restart {len(names)} node(s) from their recorded configuration: {', '.join(names)} ...")
        started: list[Node] = []
        try:
            for role in ROLES:
                batch = [n for n in nodes if n.role == role]
                if not batch:
                    continue
                for name, changed in self.runtime.restart(batch, records).items():
                    records[name].update(changed)
                started += batch
                self._write_state(state)
                for node in batch:
                    self._wait_answers(state, node)
        except BaseException:
            # Leave the network as it was found: stop only what this call started.
            self.runtime.stop(started, records)
            raise
        report.steps.append(("restart nodes", time.monotonic() - t))
        if any(n.role != "ca" for n in nodes):
            t = time.monotonic()
            self._wait_gossip()
            report.steps.append(("wait until every peer's Gateway reaches every other organization",
                                 time.monotonic() - t))
        return report

    def _wait_answers(self, state: dict[str, Any], node: Node) -> None:
        if node.role == "ca":
            self._wait(state, node, functools.partial(ca_answers, self._ca_client(node.org)), "answer on its TLS port")
        elif node.role == "chaincode":
            self._wait(state, node, functools.partial(self._chaincode_answers, node), "accept TLS connections",
                       timeout=30)
        else:
            self._wait_healthy(state, node)

    # ---------------------------------------------------------------- status / down

    def _answers(self, node: Node) -> bool:
        if node.role == "chaincode":
            return self._chaincode_answers(node)
        return self._healthy(node)

    def status(self) -> list[NodeStatus]:
        """Every node of the network: its role, org, address, pid or container, whether it runs and answers."""
        state = self._read_state()
        if state is None:
            raise NetworkStateError(f"no network in {self.layout.home}; run `fedledger network up`")
        records: dict[str, Record] = state["nodes"]
        seen = self.runtime.observe(records)
        nodes = sorted((n for n in self.config.nodes() if n.name in records), key=lambda n: role_order(n.role, n.name))
        result: list[NodeStatus] = []
        for node in nodes:
            entry, observed = records[node.name], seen[node.name]
            answers = observed.running and self._answers(node)
            fields = (node.name, entry["role"], entry["org"], f"{self.runtime.host(node)}:{entry['ports']['listen']}",
                      entry["ports"], observed.pid, observed.running, answers, observed.log)
            if self.runtime.kind == "containers":
                result.append(ContainerStatus(*fields, container=observed.container))
            else:
                result.append(NodeStatus(*fields))
        return result

    def down(self, *, purge: bool = False) -> list[int] | list[str]:
        """Stop every node of this network (the pids or containers stopped are returned); with
        ``purge`` also delete its ledgers, keys and logs."""
        state = self._read_state()
        if state is None:
            if purge and self.layout.home.exists():
                shutil.rmtree(self.layout.home)
            return []
        stopped = self.runtime.stop_all(state.get("nodes", {}))
        if purge:
            shutil.rmtree(self.layout.home)
        return stopped


def open_network(home: Path, *, bin_dir: Path | None = None) -> Network:
    """The network recorded in ``home``, run by the runtime it was brought up with.

    Raises NetworkStateError when ``home`` holds no network, or one of a runtime this fedledger lacks.
    """
    return Network.open(home, bin_dir=bin_dir)
