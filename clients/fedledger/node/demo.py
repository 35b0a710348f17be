"""``fedledger train``: publish a task and train it across the companies, every round on the ledger.

It checks the consortium is up, enrolls the coordinator and the companies it is missing (each at
its own org's CA, each recorded on the ledger by itself), publishes the task (genesis, threshold
key, initial model), has every committee member store its key share in its own org's private
data, then runs the FedLedger Flower app on Flower's deployment engine: a SuperLink and one
SuperNode process per company.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.errors import FedLedgerError, NetworkStateError, PrivacyError
from fedledger.fl import task as tasks
from fedledger.fl.company import CompanySession
from fedledger.fl.deployment import REPO, FlowerDeployment
from fedledger.fl.publish import TaskSpec, publish_task, store_own_share
from fedledger.fl.rounds import model_from_bytes
from fedledger.network import NativeNetwork
from fedledger.privacy import RdpAccountant
from fedledger.network.companies import Consortium

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Company:
    name: str
    org: str


@dataclass
class TrainingConfig:
    """A training run: who takes part, the model, privacy and key parameters, and local training."""

    companies: tuple[Company, ...]
    coordinator: Company
    model: str = "breast-cancer-logreg"
    rounds: int = 3
    task_id: str = ""
    threshold: int = 2
    quorum: int = 2
    min_participants: int = 2
    epsilon_budget: float = 3.0
    delta: float = 1e-5
    clip_norm: float = 4.0
    noise_multiplier: float = 1.0
    noise_mode: str = "distributed"
    key_bits: int = 2048
    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 0.05
    seed: int = 0
    partitioner: str = "iid"
    alpha: float = 0.5
    round_timeout: float = 600
    flower_port: int = 0
    extra_run_config: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingResult:
    task_id: str
    metrics: dict[str, Any]
    model_path: Path
    model_sha256: str
    seconds: float


def ensure_company(consortium: Consortium, company: Company, roles: str, progress: Progress) -> None:
    try:
        consortium.wallet.get(company.name)
    except FedLedgerError:
        progress(f"enrolling {company.name} at {company.org}'s CA with roles {roles}")
        consortium.enroll(company.name, org=company.org, roles=roles)
    with CompanySession.open(consortium.net.layout.home, company.name) as session:
        try:
            session.ledger.get_company(company.name)
        except FedLedgerError as err:
            if "is not registered" not in str(err):
                raise
            progress(f"recording {company.name} on the ledger")
            session.ledger.register_company(company.name, roles=roles.split(","),
                                            cert_fingerprint=session.enrollment.identity.fingerprint)


def publish(home: Path, spec: TaskSpec, *, publisher: str, initial_model: Any, progress: Progress) -> None:
    """Publish ``spec`` as ``publisher`` and have every committee member store its own key share.

    The members must be in this network's wallet (in a real consortium each member runs this
    last step itself, from the share the dealer handed it).
    """
    progress(f"publishing task {spec.task_id}: dealing a {spec.threshold}-of-{len(spec.committee)} threshold "
             f"Paillier key ({spec.key_bits} bits)")
    with CompanySession.open(home, publisher) as session:
        published = publish_task(spec, session.ledger, session.store, initial_model=initial_model)
    for member in spec.committee:
        with CompanySession.open(home, member) as session:
            store_own_share(session.ledger, spec.task_id, published.share_bytes(member),
                            own_msp=session.enrollment.identity.msp_id, other_msps=session.org_msp_ids)
    progress("each committee member stored its key share in its own org's private data; the dealer kept none")


def train(home: Path, config: TrainingConfig, *, progress: Progress) -> TrainingResult:
    """Publish a task and run it to its last round; return the per-round metrics and the model."""
    began = time.monotonic()
    net = NativeNetwork.open(home)
    down = [n.name for n in net.status() if not (n.running and n.answers)]
    if down:
        raise NetworkStateError(f"the network in {home} is not fully up ({', '.join(down)}); run `fedledger network up`")
    consortium = Consortium(net)
    names = [c.name for c in config.companies]
    if len(set(names)) != len(names) or config.coordinator.name in names:
        raise FedLedgerError("company names must be distinct, and the coordinator is not one of the companies")
    ensure_company(consortium, config.coordinator, "participant,publisher", progress)
    for company in config.companies:
        ensure_company(consortium, company, "committee,participant", progress)

    if config.noise_multiplier <= 0:
        config.noise_multiplier = calibrate_noise(config.epsilon_budget, config.delta, config.rounds)
        progress(f"noise multiplier {config.noise_multiplier}: the smallest that fits {config.rounds} rounds "
                 f"in epsilon {config.epsilon_budget} (delta {config.delta})")
    affordable = RdpAccountant(noise_multiplier=config.noise_multiplier).max_steps(
        epsilon_budget=config.epsilon_budget, delta=config.delta)
    if affordable < config.rounds:
        raise PrivacyError(f"noise multiplier {config.noise_multiplier} allows only {affordable} round(s) within "
                           f"epsilon {config.epsilon_budget}; raise --noise-multiplier or --epsilon, or train "
                           f"fewer --rounds")
    task_id = config.task_id or f"task-{secrets.token_hex(4)}"
    dataset = tasks.load_dataset(config.model, seed=config.seed)
    sizes = [len(part) for part in _partition_sizes(dataset.y_train, len(names), config)]
    initial = tasks.get_flat(tasks.build_model(config.model, seed=config.seed))
    spec = TaskSpec(task_id=task_id, model=config.model, dataset="bundled", rounds=config.rounds,
                    participants=tuple(names), committee=tuple(names), aggregator=config.coordinator.name,
                    threshold=config.threshold, quorum=config.quorum, min_participants=config.min_participants,
                    max_weight=max(sizes), epsilon_budget=config.epsilon_budget, delta=config.delta,
                    clip_norm=config.clip_norm, noise_multiplier=config.noise_multiplier,
                    noise_mode=config.noise_mode, key_bits=config.key_bits)
    publish(home, spec, publisher=config.coordinator.name, initial_model=initial, progress=progress)

    flower_port = config.flower_port or net.config.base_port + 900
    deployment = FlowerDeployment(home / "runs" / task_id, flower_port)
    metrics_path = home / "runs" / task_id / "metrics.json"
    try:
        progress(f"starting Flower: a SuperLink and {len(names)} SuperNodes (one process per company)")
        deployment.start_superlink()
        for index, name in enumerate(names):
            deployment.start_supernode(name, index=index, node_config={
                "home": str(home), "company": name, "partition-id": index, "num-partitions": len(names)})
        run_config = {"home": str(home), "coordinator": config.coordinator.name, "task-id": task_id,
                      "metrics-json": str(metrics_path), "local-epochs": config.local_epochs,
                      "batch-size": config.batch_size, "lr": config.lr, "seed": config.seed,
                      "partitioner": config.partitioner, "alpha": config.alpha,
                      "round-timeout": config.round_timeout, **config.extra_run_config}
        progress(f"flwr run: {config.rounds} rounds of {config.model} (logs: {deployment.root / 'logs'})")
        deployment.run(REPO, run_config, timeout=config.round_timeout * (config.rounds + 1), progress=progress)
    finally:
        deployment.stop()
    if not metrics_path.exists():
        raise FedLedgerError(f"the run wrote no metrics; see {deployment.root / 'logs'}")
    metrics = json.loads(metrics_path.read_text())
    failed = [r["error"] for r in metrics["rounds"] if "error" in r]
    if failed:
        raise FedLedgerError(f"task {task_id} failed: {failed[0]} (logs: {deployment.root / 'logs'})")
    metrics["rounds"] = [r for r in metrics["rounds"] if "round" in r]
    final = metrics["rounds"][-1]
    with CompanySession.open(home, config.coordinator.name) as coordinator:
        model = model_from_bytes(coordinator.store.get(final["model_sha256"]))
    model_path = home / "runs" / task_id / "model.f32"
    model_path.write_bytes(np.asarray(model, dtype="<f4").tobytes())
    return TrainingResult(task_id, metrics, model_path, final["model_sha256"], time.monotonic() - began)


def calibrate_noise(epsilon_budget: float, delta: float, rounds: int) -> float:
    """The smallest noise multiplier (to 0.01) whose ``rounds`` full-participation rounds fit the budget."""
    low, high = 0.01, 100.0
    if RdpAccountant(noise_multiplier=high).epsilon_after(rounds, delta=delta) > epsilon_budget:
        raise PrivacyError(f"no noise multiplier up to {high} fits {rounds} rounds in epsilon {epsilon_budget}")
    while high - low > 0.005:
        mid = (low + high) / 2
        if RdpAccountant(noise_multiplier=mid).epsilon_after(rounds, delta=delta) > epsilon_budget:
            low = mid
        else:
            high = mid
    return math.ceil(high * 100) / 100


def _partition_sizes(labels: Any, parts: int, config: TrainingConfig) -> Sequence[Any]:
    from fedledger.fl.data import partition_dirichlet, partition_iid

    if config.partitioner == "dirichlet":
        return partition_dirichlet(labels, parts, alpha=config.alpha, seed=config.seed)
    return partition_iid(len(labels), parts, seed=config.seed)


def plot(metrics: dict[str, Any], path: Path) -> None:
    """A PNG of test accuracy and cumulative epsilon per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [r["round"] for r in metrics["rounds"]]
    fig, left = plt.subplots(figsize=(6, 3.5))
    left.plot(rounds, [r["accuracy"] for r in metrics["rounds"]], "o-", color="tab:blue")
    left.set_xlabel("round")
    left.set_ylabel("test accuracy", color="tab:blue")
    right = left.twinx()
    right.plot(rounds, [r["epsilon"] for r in metrics["rounds"]], "s--", color="tab:red")
    right.set_ylabel("epsilon spent", color="tab:red")
    left.set_title(f"task {metrics['task_id']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
