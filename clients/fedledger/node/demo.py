"""``fedledger train``: the whole consortium's part in one task, on one machine, party by party.

It does what each party would do on its own machine, each from its own home under
``<network home>/parties/<name>`` and each step as that party's own process:

1. the org admins register every party at its org's CA (one-time secrets), and each party runs
   ``fedledger node init`` from its own home: enrolls (its key is generated there), records itself
   on the ledger and, for a company, the public halves of its sealing and node keys;
2. the coordinator publishes the task (``fedledger task create``): genesis and initial model;
3. the dealer, a party with no other role in the task, deals the threshold key
   (``fedledger node deal``): each share sealed to its member, nothing kept;
4. Flower's deployment engine runs the rounds: the coordinator's SuperLink and ServerApp, and one
   SuperNode per company whose ClientApp works from that company's home only.

Each party's processes run where its ``Placement`` says: all on this machine at 127.0.0.1 by
default, or each party on a host of its own (a network namespace at its own address, as
``fedledger.network.hosts`` makes them), reaching the others only at their addresses.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.errors import FedLedgerError, NetworkStateError, PrivacyError
from fedledger.fl import task as tasks
from fedledger.fl.company import CompanySession
from fedledger.fl.config import PLAIN_BASELINE_CONSENT, Protocol, RunConfig
from fedledger.fl.custody import Custody
from fedledger.fl.party import PartyHome, PartyKind
from fedledger.fl.reference import company_parts
from fedledger.fl.rounds import NoiseMode, PrivacyUnit, model_from_bytes
from fedledger.network import LOCAL, Placement, open_network
from fedledger.network.companies import Consortium
from fedledger.node.deployment import REPO, FlowerDeployment
from fedledger.node.settings import DEMO
from fedledger.privacy import RdpAccountant, calibrate_noise

Progress = Callable[[str], None]

ROLES = {PartyKind.COMPANY: "committee,participant", PartyKind.COORDINATOR: "publisher",
         PartyKind.DEALER: "dealer"}


class PartyProcessError(FedLedgerError):
    """A party's own command (node init, task create, node deal) failed; carries its words."""


@dataclass(frozen=True)
class Party:
    """A party of the run: its name, its organization, and where its processes run."""

    name: str
    org: str
    placement: Placement = LOCAL


@dataclass(frozen=True)
class DemoConfig:
    """A training run on one machine: who takes part, the task's parameters, and the run's."""

    companies: tuple[Party, ...]
    coordinator: Party
    dealer: Party
    model: str = "breast-cancer-logreg"
    rounds: int = 3
    task_id: str = ""
    threshold: int = 2
    quorum: int = 2
    min_participants: int = 2
    epsilon_budget: float = DEMO.epsilon_budget
    delta: float = DEMO.delta
    clip_norm: float = DEMO.clip_norm
    noise_multiplier: float = 0.0
    unit: PrivacyUnit = PrivacyUnit.RECORD
    noise_mode: NoiseMode = NoiseMode.DISTRIBUTED
    sample_rate: float = DEMO.sample_rate
    steps_per_round: int = 1
    label_epsilon: float = 0.0
    data_path: Path | None = None
    key_bits: int = 2048
    custody: Custody = Custody.THRESHOLD
    leader_window_seconds: int = 15
    run: RunConfig = field(default_factory=RunConfig)
    flower_port: int = 0

    def __post_init__(self) -> None:
        names = [p.name for p in self.companies]
        if len(set(names)) != len(names) or {self.coordinator.name, self.dealer.name} & set(names) or \
                self.coordinator.name == self.dealer.name:
            raise FedLedgerError("company names must be distinct, and the coordinator and the dealer are two "
                                 "further parties, neither of them a company")


@dataclass
class TrainingResult:
    task_id: str
    metrics: dict[str, Any]
    model_path: Path
    model_sha256: str
    seconds: float
    homes: dict[str, Path]


def party_root(network_home: Path, name: str) -> Path:
    """Where the one-machine demo keeps party ``name``'s own home."""
    return network_home / "parties" / name


def fedledger_command(*args: str, placement: Placement = LOCAL, stdin: str = "", what: str) -> str:
    """Run ``fedledger ARGS`` as a separate process (a party acting on its own) where ``placement``
    says; return its stdout."""
    done = subprocess.run(placement.command([sys.executable, "-m", "fedledger.cli.app", *args]), input=stdin,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "clients")})
    if done.returncode != 0:
        raise PartyProcessError(f"{what} failed: {done.stderr.strip()[-600:]}")
    return done.stdout


def ensure_party(consortium: Consortium, network_home: Path, party: Party, kind: PartyKind,
                 progress: Progress) -> PartyHome:
    """The party's home, created and enrolled by the party's own ``fedledger node init`` if missing."""
    home = PartyHome(party_root(network_home, party.name))
    if (home.root / "wallet" / party.name).exists():
        return home
    progress(f"{party.name}: registered at {party.org}'s CA; enrolling from its own home {home.root}")
    secret = consortium.register(party.name, org=party.org, roles=ROLES[kind])
    fedledger_command("node", "init", "--home", str(home.root), "--name", party.name, "--org", party.org,
                      "--kind", str(kind), "--network-home", str(network_home), "--secret-stdin",
                      placement=party.placement, stdin=secret + "\n", what=f"{party.name}'s node init")
    return home


def train(network_home: Path, config: DemoConfig, *, progress: Progress) -> TrainingResult:
    """Publish a task and run it to its last round; return the per-round metrics and the model."""
    began = time.monotonic()
    net = open_network(network_home)
    down = [n.name for n in net.status() if not (n.running and n.answers)]
    if down:
        raise NetworkStateError(f"the network in {network_home} is not fully up ({', '.join(down)}); "
                                "run `fedledger network up`")
    consortium = Consortium(net)
    coordinator = ensure_party(consortium, network_home, config.coordinator, PartyKind.COORDINATOR, progress)
    dealer = ensure_party(consortium, network_home, config.dealer, PartyKind.DEALER, progress)
    homes = {p.name: ensure_party(consortium, network_home, p, PartyKind.COMPANY, progress) for p in config.companies}

    if config.noise_multiplier <= 0:
        sigma = calibrate_noise(epsilon_budget=config.epsilon_budget, delta=config.delta, rounds=config.rounds,
                                sample_rate=config.sample_rate, steps_per_round=config.steps_per_round,
                                label_epsilon=config.label_epsilon)
        config = replace(config, noise_multiplier=sigma)
        progress(f"noise multiplier {config.noise_multiplier}: the smallest that fits {config.rounds} rounds "
                 f"in {config.unit}-level epsilon {config.epsilon_budget} (delta {config.delta}, sample rate "
                 f"{config.sample_rate}, {config.steps_per_round} step(s) a round, label epsilon {config.label_epsilon})")
    affordable = RdpAccountant(noise_multiplier=config.noise_multiplier, sample_rate=config.sample_rate,
                               steps_per_round=config.steps_per_round,
                               label_epsilon=config.label_epsilon).max_rounds(
        epsilon_budget=config.epsilon_budget, delta=config.delta)
    if affordable < config.rounds:
        raise PrivacyError(f"noise multiplier {config.noise_multiplier} allows only {affordable} round(s) within "
                           f"epsilon {config.epsilon_budget}; raise --noise-multiplier or --epsilon, or train "
                           f"fewer --rounds")
    task_id = config.task_id or f"task-{secrets.token_hex(4)}"
    names = [p.name for p in config.companies]
    dataset = tasks.load_dataset(config.model, data_path=config.data_path, seed=config.run.seed)
    sizes = [len(part) for part in company_parts(dataset.y_train, len(names), partitioner=config.run.partitioner,
                                                 alpha=config.run.alpha, seed=config.run.seed)]
    task_file = coordinator.root / "tasks" / f"{task_id}.json"
    task_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    task_file.write_text(json.dumps({
        "task-id": task_id, "model": config.model, "rounds": config.rounds, "participants": names,
        "committee": names, "dealer": config.dealer.name, "threshold": config.threshold,
        "quorum": config.quorum, "min-participants": config.min_participants, "max-weight": max(sizes),
        "epsilon-budget": config.epsilon_budget, "delta": config.delta, "clip-norm": config.clip_norm,
        "noise-multiplier": config.noise_multiplier, "noise-mode": str(config.noise_mode),
        "privacy-unit": str(config.unit), "sample-rate": config.sample_rate,
        "steps-per-round": config.steps_per_round, "label-epsilon": config.label_epsilon,
        "key-bits": config.key_bits, "key-custody": str(config.custody),
        "server-lr": config.run.server_lr, "server-momentum": config.run.server_momentum,
        "leader-window-seconds": config.leader_window_seconds,
        **({"master": names[1 % len(names)]} if config.custody is Custody.ESCROW else {})}, indent=2))
    progress(f"{config.coordinator.name} publishes task {task_id} (leaders elected each round among "
             f"{', '.join(names)}; dealer {config.dealer.name})")
    fedledger_command("task", "create", str(task_file), "--party-home", str(coordinator.root), "--json",
                      placement=config.coordinator.placement, what=f"{config.coordinator.name}'s task create")
    progress(f"{config.dealer.name} deals the task's {config.key_bits}-bit Paillier key under {config.custody} "
             f"custody ({config.threshold} of {len(names)}), each secret sealed to its holder")
    fedledger_command("node", "deal", task_id, "--party-home", str(dealer.root), placement=config.dealer.placement,
                      what=f"{config.dealer.name}'s deal")

    run_root = coordinator.root / "runs" / task_id
    flower_port = config.flower_port or net.config.base_port + 900
    deployment = FlowerDeployment(run_root, flower_port, superlink=config.coordinator.placement)
    try:
        progress(f"starting Flower: {config.coordinator.name}'s SuperLink (TLS, SuperNode authentication) and "
                 "one SuperNode per company")
        deployment.start_superlink()
        with CompanySession.open(coordinator) as session:
            deployment.admit(session.ledger, names)
        for index, company in enumerate(config.companies):
            name, home = company.name, homes[company.name]
            deployment.start_supernode(name, home=home.root, node_key=home.node_key_path, index=index,
                                       node_config={"home": str(home.root), "partition-id": index,
                                                    "num-partitions": len(names),
                                                    **({"data-path": str(config.data_path)} if config.data_path
                                                       else {}),
                                                    # The yardstick sends updates in the clear: a node
                                                    # answers it only by its own config's consent.
                                                    **(PLAIN_BASELINE_CONSENT
                                                       if config.run.protocol is Protocol.PLAIN_FEDAVG else {})},
                                       placement=company.placement)
        progress(f"flwr run: {config.rounds} rounds of {config.model} (logs: {deployment.root / 'logs'})")
        run = replace(config.run, task_id=task_id, data_path=str(config.data_path or ""))
        metrics = coordinate(deployment, coordinator, run, rounds=config.rounds,
                             progress=progress)
    finally:
        deployment.stop()
    final = metrics["rounds"][-1]
    model = model_from_bytes(coordinator.store.get(final["model_sha256"]))
    model_path = run_root / "model.f32"
    model_path.write_bytes(np.asarray(model, dtype="<f4").tobytes())
    all_homes = {config.coordinator.name: coordinator.root, config.dealer.name: dealer.root,
                 **{n: h.root for n, h in homes.items()}}
    return TrainingResult(task_id, metrics, model_path, final["model_sha256"], time.monotonic() - began, all_homes)


def coordinate(deployment: FlowerDeployment, coordinator: PartyHome, run: RunConfig, *, rounds: int,
               progress: Progress) -> dict[str, Any]:
    """As the coordinator, run task ``run.task_id`` on ``deployment``'s SuperLink; return its metrics.

    The SuperLink is up and the companies' nodes admitted (``FlowerDeployment.admit``); the
    ServerApp works from the coordinator's home. Raises if the run failed, naming why.
    """
    metrics_path = deployment.home / "metrics.json"
    run = replace(run, home=str(coordinator.root), metrics_json=str(metrics_path))
    deployment.run(REPO, run.to_flower(), timeout=run.connect_timeout + run.round_timeout * rounds, progress=progress)
    if not metrics_path.exists():
        raise FedLedgerError(f"the run wrote no metrics; see {deployment.root / 'logs'}")
    metrics: dict[str, Any] = json.loads(metrics_path.read_text())
    failed = [r["error"] for r in metrics["rounds"] if "error" in r]
    if failed:
        raise FedLedgerError(f"task {run.task_id} failed: {failed[0]} (logs: {deployment.root / 'logs'})")
    # A failed round is on the ledger with its reason; the task went on without it.
    metrics["failed_rounds"] = [r for r in metrics["rounds"] if "failed" in r]
    metrics["stopped"] = [r["stopped"] for r in metrics["rounds"] if "stopped" in r]
    metrics["rounds"] = [r for r in metrics["rounds"] if "accuracy" in r]
    return metrics


def plot(metrics: dict[str, Any], path: Path, reference: Sequence[float] | None = None) -> None:
    """A PNG of test accuracy and cumulative epsilon per round (and plain FedAvg's accuracy, if given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [r["round"] for r in metrics["rounds"]]
    fig, left = plt.subplots(figsize=(6, 3.5))
    left.plot(rounds, [r["accuracy"] for r in metrics["rounds"]], "o-", color="tab:blue", label="FedLedger")
    if reference is not None:
        left.plot(range(len(reference)), reference, "x:", color="tab:gray", label="no privacy (plain FedAvg)")
        left.legend(loc="lower right")
    left.set_xlabel("round")
    left.set_ylabel("test accuracy", color="tab:blue")
    right = left.twinx()
    right.plot(rounds, [r["epsilon"] for r in metrics["rounds"]], "s--", color="tab:red")
    right.set_ylabel("epsilon spent", color="tab:red")
    left.set_title(f"task {metrics['task_id']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
