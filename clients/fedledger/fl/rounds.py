"""One training round among companies, as the ledger records it (paper 003, steps 2-7).

Four roles act in turn, each as its own Fabric identity:

- the **publisher** opens round ``n`` with the cumulative epsilon it will have spent;
- each **participant** clips its model update to L2 norm S, adds its share of the noise (distributed
  mode), encrypts it under the task's threshold Paillier key, stores the ciphertext and records
  its hash, size, sample count and compute time;
- the **leader** (the task's aggregator) multiplies the ciphertexts listed on the ledger, weighted
  by n_k, and records the aggregate's hash with the updates it includes. It holds no key share:
  it never sees a plaintext update;
- each **committee member** recomputes the aggregate from the ledger's hashes and votes; once the
  round is verified, it partially decrypts *the aggregate whose hash is on the ledger* and nothing
  else, so nobody can have a single company's update decrypted;
- the leader combines t partials into the noised weighted average, updates the model, and closes
  the round with the new model's hash.

Nothing here imports Flower or talks to Fabric directly: the ledger is the small ``LedgerPort``
interface, artifacts an ``ArtifactStore``, so unit tests can pass fakes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from fedledger.crypto import (
    KeyShare,
    Layout,
    ThresholdPublicKey,
    aggregate,
    combine_partials,
    dump_partial,
    dump_vector,
    encrypt_vector,
    load_partial,
    load_threshold_key,
    load_vector,
    partial_decrypt,
)
from fedledger.errors import FedLedgerError
from fedledger.fabric.ledger import RoundRecord, TaskRecord, UpdateRecord
from fedledger.fl.artifacts import ArtifactStore, digest_of
from fedledger.privacy import RdpAccountant, clip_by_l2_norm, gaussian_noise

# Noise beyond this many standard deviations is clamped into the quantization range; the chance
# of any value reaching it is below 1e-15, so the distribution of the sum is unchanged in practice.
_NOISE_TAIL_SIGMAS = 8.0
VALUE_BITS = 16


class RoundError(FedLedgerError):
    """A round step was refused by the protocol (not by the ledger): says which and why."""


class LedgerPort(Protocol):
    """The ledger operations a round needs (``fedledger.fabric.Ledger`` provides them)."""

    def get_task(self, task_id: str) -> TaskRecord: ...
    def get_round(self, task_id: str, round_number: int) -> RoundRecord: ...
    def list_updates(self, task_id: str, round_number: int) -> list[UpdateRecord]: ...
    def open_round(self, task_id: str, round_number: int, *, epsilon_after: float) -> str: ...
    def submit_update(self, task_id: str, round_number: int, *, artifact_sha256: str, size_bytes: int,
                      samples: int, compute_millis: int) -> str: ...
    def record_aggregate(self, task_id: str, round_number: int, *, included: Sequence[str],
                         aggregate_sha256: str) -> str: ...
    def vote(self, task_id: str, round_number: int, *, valid: bool, reason: str = "") -> str: ...
    def close_round(self, task_id: str, round_number: int, *, model_sha256: str) -> str: ...


def model_bytes(vector: npt.ArrayLike) -> bytes:
    """A model's canonical bytes (float32 little-endian): what its ledger hash is taken over."""
    return np.asarray(vector, dtype="<f4").tobytes()


def model_from_bytes(data: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


@dataclass(frozen=True)
class Description:
    """What a task's ``model.description`` on the ledger says, as canonical JSON.

    It pins everything a company needs to take part that the genesis has no field for: the
    model and dataset, the packing layout's weight cap, and the threshold public key's hash (the
    key itself is an artifact; its Paillier modulus is also ``he.paillier_n`` in the genesis).
    """

    model: str
    dataset: str
    max_weight: int
    threshold_key_sha256: str

    def to_json(self) -> str:
        return json.dumps({"dataset": self.dataset, "max_weight": self.max_weight, "model": self.model,
                           "threshold_key_sha256": self.threshold_key_sha256}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Description:
        try:
            raw = json.loads(text)
            return cls(str(raw["model"]), str(raw["dataset"]), int(raw["max_weight"]), str(raw["threshold_key_sha256"]))
        except (ValueError, KeyError, TypeError) as err:
            raise RoundError(f"the task's model description is not a FedLedger description: {err}") from None


@dataclass(frozen=True)
class TaskPlan:
    """A task's parameters, read once from its ledger record and checked against its key."""

    task: TaskRecord
    description: Description
    key: ThresholdPublicKey

    @classmethod
    def load(cls, ledger: LedgerPort, store: ArtifactStore, task_id: str) -> TaskPlan:
        task = ledger.get_task(task_id)
        description = Description.from_json(task["model"]["description"])
        key = load_threshold_key(store.get(description.threshold_key_sha256))
        if format(int(key.public_key.n), "x") != task["he"]["paillier_n"]:
            raise RoundError(f"the threshold key artifact does not match task {task_id}'s Paillier modulus")
        if key.threshold != task["he"]["threshold"] or key.parties != task["he"]["committee_size"]:
            raise RoundError(f"the threshold key is {key.threshold} of {key.parties}, the task says "
                             f"{task['he']['threshold']} of {task['he']['committee_size']}")
        return cls(task, description, key)

    @property
    def task_id(self) -> str:
        return self.task["task_id"]

    @property
    def clip_norm(self) -> float:
        return float(self.task["dp"]["clip_norm"])

    @property
    def noise_multiplier(self) -> float:
        return float(self.task["dp"]["noise_multiplier"])

    @property
    def delta(self) -> float:
        return float(self.task["dp"]["delta"])

    @property
    def noise_mode(self) -> str:
        return self.task["dp"]["noise_mode"]

    @property
    def participants(self) -> tuple[str, ...]:
        return tuple(self.task["participants"])

    @property
    def committee(self) -> tuple[str, ...]:
        return tuple(self.task["committee"])

    def member_index(self, company: str) -> int:
        """A committee member's share index (1-based, its place in the genesis committee)."""
        if company not in self.committee:
            raise RoundError(f"{company} is not on the committee of task {self.task_id}")
        return self.committee.index(company) + 1

    @property
    def sum_noise_std(self) -> float:
        """The std of the noise on the weighted sum: sigma * S * W (W caps each weight)."""
        return self.noise_multiplier * self.clip_norm * self.description.max_weight

    @property
    def min_noise_weight(self) -> int:
        """The smallest weight the quantization range is sized for in distributed mode (W/4).

        Company k's noise share has std sigma*S*W / (sqrt(K) * w_k): a company weighing less than
        W/4 would need a wider range for everyone, so its share is clamped at 8 of these stds'
        worth of the W/4 case (see ``contribute``).
        """
        return max(1, self.description.max_weight // 4)

    @property
    def layout(self) -> Layout:
        # Every value of a clipped update lies in [-S, S]; distributed noise widens that range.
        spread = 0.0
        if self.noise_mode == "distributed" and self.noise_multiplier > 0:
            spread = (_NOISE_TAIL_SIGMAS * self.sum_noise_std
                      / (math.sqrt(len(self.participants)) * self.min_noise_weight))
        return Layout(clip=self.clip_norm + spread, max_summands=len(self.participants),
                      max_weight=self.description.max_weight, value_bits=VALUE_BITS)

    def weight(self, samples: int) -> int:
        """FedAvg's weight n_k, capped at the layout's declared maximum."""
        return max(1, min(int(samples), self.description.max_weight))

    def epsilon_after(self, rounds: int) -> float:
        """Cumulative epsilon after ``rounds`` rounds: every company takes part in every round (q = 1)."""
        if self.noise_multiplier <= 0:
            return math.inf
        return RdpAccountant(noise_multiplier=self.noise_multiplier).epsilon_after(rounds, delta=self.delta)


def open_round(plan: TaskPlan, ledger: LedgerPort, round_number: int) -> str:
    """The publisher opens round ``round_number`` with the epsilon spent once it closes."""
    epsilon = plan.epsilon_after(round_number)
    if not math.isfinite(epsilon):
        raise RoundError(f"task {plan.task_id} adds no DP noise, so its epsilon is unbounded; the ledger books "
                         "only a finite epsilon against the budget (publish it with a positive noise multiplier)")
    return ledger.open_round(plan.task_id, round_number, epsilon_after=epsilon)


@dataclass(frozen=True)
class UpdateReceipt:
    """What a participant recorded: the ciphertext's hash and size, and the ledger's tx id."""

    company: str
    artifact_sha256: str
    size_bytes: int
    samples: int
    tx_id: str


def contribute(plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, *, company: str, round_number: int,
               update: npt.ArrayLike, samples: int, compute_millis: int) -> UpdateReceipt:
    """A participant's step: clip, noise (distributed mode), encrypt, store, record.

    ``update`` is the local model minus the global model. In distributed mode company k adds
    N(0, (sigma S W)^2 / K) / w_k, so that after weighting by w_k the K shares sum to the full
    noise of the weighted sum and nobody, the committee included, ever sees an un-noised sum.
    """
    clipped, _ = clip_by_l2_norm(update, clip_norm=plan.clip_norm)
    weight = plan.weight(samples)
    if plan.noise_mode == "distributed" and plan.noise_multiplier > 0:
        std = plan.sum_noise_std / math.sqrt(len(plan.participants)) / weight
        clipped = clipped + gaussian_noise(clipped.shape, std=std)
    layout = plan.layout
    bounded = np.clip(clipped, -layout.clip, layout.clip)
    data = dump_vector(encrypt_vector(plan.key.public_key, bounded, layout))
    digest = store.put(data)
    tx_id = ledger.submit_update(plan.task_id, round_number, artifact_sha256=digest, size_bytes=len(data),
                                 samples=int(samples), compute_millis=int(compute_millis))
    return UpdateReceipt(company, digest, len(data), int(samples), tx_id)


def _aggregate_of(plan: TaskPlan, store: ArtifactStore, updates: Sequence[UpdateRecord]) -> bytes:
    vectors = [load_vector(store.get(u["artifact_sha256"]), plan.key.public_key, plan.layout) for u in updates]
    return dump_vector(aggregate(vectors, [plan.weight(u["samples"]) for u in updates]))


@dataclass(frozen=True)
class AggregateReceipt:
    included: tuple[str, ...]
    aggregate_sha256: str
    tx_id: str


def lead(plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, *, round_number: int) -> AggregateReceipt:
    """The leader's step: sum (homomorphically) every update the ledger lists for the round.

    The list comes from the ledger, not from the participants' messages, and each ciphertext is
    checked against its recorded hash on the way out of the store.
    """
    updates = sorted(ledger.list_updates(plan.task_id, round_number), key=lambda u: u["company"])
    if not updates:
        raise RoundError(f"round {round_number} of task {plan.task_id} has no updates to aggregate")
    data = _aggregate_of(plan, store, updates)
    digest = store.put(data)
    included = tuple(u["company"] for u in updates)
    tx_id = ledger.record_aggregate(plan.task_id, round_number, included=included, aggregate_sha256=digest)
    return AggregateReceipt(included, digest, tx_id)


def verify(plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, *, round_number: int) -> tuple[bool, str]:
    """A committee member's check and vote: recompute the aggregate from the recorded updates."""
    record = ledger.get_round(plan.task_id, round_number)
    recorded = record.get("aggregate")
    if recorded is None:
        raise RoundError(f"round {round_number} of task {plan.task_id} has no recorded aggregate to verify")
    by_company = {u["company"]: u for u in ledger.list_updates(plan.task_id, round_number)}
    missing = [c for c in recorded["included"] if c not in by_company]
    if missing:
        valid, reason = False, f"the aggregate includes updates the ledger does not have: {', '.join(missing)}"
    else:
        mine = digest_of(_aggregate_of(plan, store, [by_company[c] for c in sorted(recorded["included"])]))
        valid = mine == recorded["sha256"]
        reason = "" if valid else f"recomputed aggregate {mine[:16]} differs from the recorded {recorded['sha256'][:16]}"
    ledger.vote(plan.task_id, round_number, valid=valid, reason=reason)
    return valid, reason


def decryption_share(plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, share: KeyShare, *,
                     round_number: int, aggregate_sha256: str) -> bytes:
    """A committee member's partial decryption of the round's aggregate, and of nothing else.

    Refused unless the committee has verified the round and ``aggregate_sha256`` is the hash the
    ledger holds for it: a leader asking for any other ciphertext (say, one company's update)
    gets a RoundError, not a decryption.
    """
    record = ledger.get_round(plan.task_id, round_number)
    recorded = record.get("aggregate")
    if record["status"] != "verified" or recorded is None:
        raise RoundError(f"round {round_number} of task {plan.task_id} is {record['status']}: "
                         "shares are given only for a verified aggregate")
    if aggregate_sha256 != recorded["sha256"]:
        raise RoundError(f"{aggregate_sha256[:16]}… is not the aggregate recorded for round {round_number} "
                         f"({recorded['sha256'][:16]}…); refusing to decrypt it")
    vector = load_vector(store.get(aggregate_sha256), plan.key.public_key, plan.layout)
    return dump_partial(partial_decrypt(share, vector))


@dataclass(frozen=True)
class RoundResult:
    model: npt.NDArray[np.float32]
    model_sha256: str
    average_update: npt.NDArray[np.float64]
    used_members: tuple[int, ...]
    rejected_members: dict[int, str]
    tx_id: str


def finish(plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, *, round_number: int,
           global_model: npt.ArrayLike, partials: Sequence[bytes]) -> RoundResult:
    """The leader's last step: combine t partials, average, update the model, close the round.

    In central mode the leader adds the noise here, to the decrypted weighted sum (paper 003's
    step 7): it then sees the un-noised average, which is the trust that mode places in it.
    """
    record = ledger.get_round(plan.task_id, round_number)
    recorded = record.get("aggregate")
    if recorded is None:
        raise RoundError(f"round {round_number} of task {plan.task_id} has no aggregate")
    vector = load_vector(store.get(recorded["sha256"]), plan.key.public_key, plan.layout)
    decrypted = combine_partials(plan.key, vector, [load_partial(p) for p in partials])
    weighted_sum = decrypted.values
    if plan.noise_mode == "central" and plan.noise_multiplier > 0:
        weighted_sum = weighted_sum + gaussian_noise(weighted_sum.shape, std=plan.sum_noise_std)
    average = weighted_sum / vector.total_weight
    model = (np.asarray(global_model, dtype=np.float64) + average).astype(np.float32)
    data = model_bytes(model)
    digest = store.put(data)
    tx_id = ledger.close_round(plan.task_id, round_number, model_sha256=digest)
    return RoundResult(model, digest, average, decrypted.used, decrypted.rejected, tx_id)
