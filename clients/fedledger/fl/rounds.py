"""One training round among companies, as the ledger records it (paper 003, steps 2-7).

The roles act in turn, each as its own Fabric identity and each from its own home:

- the **publisher** (the coordinator) opens round ``n`` with the cumulative epsilon it will have spent;
- each **participant** clips its model update to L2 norm S, adds its share of the noise (distributed
  mode), encrypts it under the task's threshold Paillier key, keeps the ciphertext and records its
  hash, size, sample count and compute time; the ciphertext itself travels in a message;
- the **leader** (the task's aggregator, a committee member's node) multiplies the ciphertexts the
  ledger lists, each checked against its recorded hash, weighted by n_k, and records the aggregate's
  hash with the updates it includes. It never sees a plaintext update: a partial decryption is
  given only for the recorded aggregate;
- each **committee member** checks the ciphertexts against the ledger, recomputes the aggregate and
  votes; once the ledger shows the quorum reached *and its own valid vote*, it partially decrypts
  *the aggregate whose hash is on the ledger* and nothing else;
- the leader combines t partials, each from a member whose valid vote is on the ledger, into the
  noised weighted average, updates the model, and closes the round with the new model's hash.

Nothing here imports Flower or talks to Fabric directly: the ledger is the small ``LedgerPort``
interface and bytes arrive as arguments (the data plane is the caller's), so unit tests can pass
fakes; each party keeps what it produced and received in its own ``ArtifactStore``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np
import numpy.typing as npt

from fedledger.crypto import (
    EncryptedVector,
    KeyShare,
    Layout,
    PublicKey,
    ThresholdPublicKey,
    aggregate,
    combine_partials,
    dump_partial,
    dump_vector,
    encrypt_vector,
    load_partial,
    load_vector,
    partial_decrypt,
)
from fedledger.crypto.opening import check_opening, dump_opening, load_opening, open_vector
from fedledger.crypto.paillier import PrivateKey
from fedledger.errors import CryptoError, FedLedgerError
from fedledger.fabric.ledger import RoundRecord, TaskRecord, UpdateRecord, VoteRecord
from fedledger.fl.artifacts import ArtifactStore, digest_of
from fedledger.fl.custody import Custody, TaskKey, load_task_key
from fedledger.privacy import RdpAccountant, clip_by_l2_norm, gaussian_noise

# Noise beyond this many standard deviations is clamped into the quantization range; the chance
# of any value reaching it is below 1e-15, so the distribution of the sum is unchanged in practice.
_NOISE_TAIL_SIGMAS = 8.0
VALUE_BITS = 16


class RoundStatus(StrEnum):
    """A round's status on the ledger (the chaincode's ``Round*`` constants)."""

    OPEN = "open"
    COLLECTING = "collecting"
    AGGREGATED = "aggregated"
    VERIFIED = "verified"
    CLOSED = "closed"
    FAILED = "failed"


class PrivacyUnit(StrEnum):
    """What one unit of differential privacy protects (the genesis' ``dp.unit``).

    ``record``: one record (a patient, a shipment) in any company's data; the epsilon bounds what
    the models reveal about it. ``company``: a company's whole dataset, i.e. whether it took part.
    """

    RECORD = "record"
    COMPANY = "company"


class NoiseMode(StrEnum):
    """Who adds the DP noise.

    ``distributed``: each company adds its share to what it encrypts, so only the sum carries the
    full noise (record unit: a DP-SGD step on the union of the companies' data; company unit: the
    clipped model updates). ``central`` (company unit): the leader adds it after decryption.
    ``local`` (record unit): each company runs DP-SGD itself for the round's local steps.
    """

    DISTRIBUTED = "distributed"
    CENTRAL = "central"
    LOCAL = "local"


class RoundError(FedLedgerError):
    """A round step was refused by the protocol (not by the ledger): says which and why."""


class LedgerPort(Protocol):
    """The ledger operations a round needs (``fedledger.fabric.Ledger`` provides them)."""

    def get_task(self, task_id: str) -> TaskRecord: ...
    def get_threshold_key(self, task_id: str) -> bytes: ...
    def get_round(self, task_id: str, round_number: int) -> RoundRecord: ...
    def list_updates(self, task_id: str, round_number: int) -> list[UpdateRecord]: ...
    def list_votes(self, task_id: str, round_number: int) -> list[VoteRecord]: ...
    def open_round(self, task_id: str, round_number: int, *, epsilon_after: float) -> str: ...
    def submit_update(self, task_id: str, round_number: int, *, artifact_sha256: str, size_bytes: int,
                      samples: int, compute_millis: int) -> str: ...
    def record_aggregate(self, task_id: str, round_number: int, *, included: Sequence[str],
                         aggregate_sha256: str) -> str: ...
    def vote(self, task_id: str, round_number: int, *, valid: bool, reason: str = "") -> str: ...
    def close_round(self, task_id: str, round_number: int, *, model_sha256: str) -> str: ...
    def fail_round(self, task_id: str, round_number: int, *, reason: str) -> str: ...


def model_bytes(vector: npt.ArrayLike) -> bytes:
    """A model's canonical bytes (float32 little-endian): what its ledger hash is taken over."""
    return np.asarray(vector, dtype="<f4").tobytes()


def model_from_bytes(data: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


@dataclass(frozen=True)
class Description:
    """What a task's ``model.description`` on the ledger says, as canonical JSON.

    It pins what a company needs to take part that the genesis has no field for: the model and
    dataset, the packing layout's weight cap, and the Paillier key size the dealer must use (the
    threshold public key itself is on the ledger too, recorded by the dealer: ``GetThresholdKey``).
    """

    model: str
    dataset: str
    max_weight: int
    key_bits: int

    def to_json(self) -> str:
        return json.dumps({"dataset": self.dataset, "key_bits": self.key_bits, "max_weight": self.max_weight,
                           "model": self.model}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Description:
        try:
            raw = json.loads(text)
            return cls(str(raw["model"]), str(raw["dataset"]), int(raw["max_weight"]), int(raw["key_bits"]))
        except (ValueError, KeyError, TypeError) as err:
            raise RoundError(f"the task's model description is not a FedLedger description: {err}") from None


@dataclass(frozen=True)
class TaskPlan:
    """A task's parameters, read once from its ledger record and checked against its key."""

    task: TaskRecord
    description: Description
    task_key: TaskKey

    @classmethod
    def load(cls, ledger: LedgerPort, task_id: str) -> TaskPlan:
        """Read the task and its dealt key from the ledger, and check one against the other."""
        task = ledger.get_task(task_id)
        description = Description.from_json(task["model"]["description"])
        task_key = load_task_key(Custody(task["he"]["key_custody"]), ledger.get_threshold_key(task_id))
        public_key = task_key.public_key
        if format(int(public_key.n), "x") != task["he"].get("paillier_n"):
            raise RoundError(f"the key on the ledger does not match task {task_id}'s Paillier modulus")
        if public_key.key_bits != description.key_bits:
            raise RoundError(f"the dealer's key has {public_key.key_bits} bits; task {task_id} asks for "
                             f"{description.key_bits}")
        threshold, parties = (task_key.threshold.threshold, task_key.threshold.parties) if task_key.threshold else \
            (task_key.escrow.threshold, task_key.escrow.parties) if task_key.escrow else (0, 0)
        if threshold != task["he"]["threshold"] or parties != task["he"]["committee_size"]:
            raise RoundError(f"the dealt key is {threshold} of {parties}, the task says "
                             f"{task['he']['threshold']} of {task['he']['committee_size']}")
        return cls(task, description, task_key)

    @property
    def custody(self) -> Custody:
        return self.task_key.custody

    @property
    def public_key(self) -> PublicKey:
        return self.task_key.public_key

    @property
    def key(self) -> ThresholdPublicKey:
        """The threshold key (threshold custody only)."""
        if self.task_key.threshold is None:
            raise RoundError(f"task {self.task_id} is under {self.custody} custody: it has no threshold key")
        return self.task_key.threshold

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
    def noise_mode(self) -> NoiseMode:
        return NoiseMode(self.task["dp"]["noise_mode"])

    @property
    def unit(self) -> PrivacyUnit:
        return PrivacyUnit(self.task["dp"]["unit"])

    @property
    def sample_rate(self) -> float:
        """q: each record's chance to be in a step's batch (1 for company-level DP: every company, every round)."""
        return float(self.task["dp"]["sample_rate"])

    @property
    def steps_per_round(self) -> int:
        return int(self.task["dp"]["steps_per_round"])

    @property
    def label_epsilon(self) -> float:
        """The epsilon of the label noise each company applies once per task (0: none)."""
        return float(self.task["dp"]["label_epsilon"])

    @property
    def gradient_sum(self) -> bool:
        """Whether companies send noised sums of clipped per-example gradients (record level, distributed)
        rather than model updates: one DP-SGD step a round on the union of their data."""
        return self.unit is PrivacyUnit.RECORD and self.noise_mode is NoiseMode.DISTRIBUTED

    @property
    def noise_participants(self) -> int:
        """How many noise shares the full noise is split into: the task's minimum number of participants.

        A round aggregates at least that many updates (the chaincode refuses fewer), so the noise
        booked is always present; more contributors only add noise.
        """
        return int(self.task["min_participants"])

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
        """The std of the noise on the (weighted) sum: sigma * S, times W (the weight cap) for model updates."""
        scale = 1 if self.gradient_sum else self.description.max_weight
        return self.noise_multiplier * self.clip_norm * scale

    def noise_share_std(self, weight: int) -> float:
        """The std of one company's noise share, before its weight multiplies it in the sum.

        Distributed mode only: the ``noise_participants`` shares, each weighted by w_k, sum to at
        least N(0, sum_noise_std^2).
        """
        if self.noise_mode is not NoiseMode.DISTRIBUTED or self.noise_multiplier <= 0:
            return 0.0
        return self.sum_noise_std / math.sqrt(self.noise_participants) / weight

    @property
    def min_noise_weight(self) -> int:
        """The smallest weight the quantization range is sized for in distributed mode (W/4).

        Company k's noise share has std sigma*S*W / (sqrt(K) * w_k): a company weighing less than
        W/4 would need a wider range for everyone, so its share is clamped at 8 of these stds'
        worth of the W/4 case (see ``contribute``).
        """
        return max(1, self.description.max_weight // 4)

    @property
    def value_bound(self) -> float:
        """The largest absolute value a company's vector may hold before noise.

        A clipped model update lies in [-S, S]. A sum of clipped per-example gradients over a batch
        of at most W records (``max_weight`` caps a company's records) lies in [-S W, S W].
        """
        return self.clip_norm * (self.description.max_weight if self.gradient_sum else 1)

    @property
    def layout(self) -> Layout:
        # Distributed noise widens the value range by 8 standard deviations of a noise share.
        spread = _NOISE_TAIL_SIGMAS * self.noise_share_std(1 if self.gradient_sum else self.min_noise_weight)
        return Layout(clip=self.value_bound + spread, max_summands=len(self.participants),
                      max_weight=1 if self.gradient_sum else self.description.max_weight, value_bits=VALUE_BITS)

    def weight(self, samples: int) -> int:
        """An update's weight in the sum: FedAvg's n_k capped at W, or 1 for gradient sums."""
        if self.gradient_sum:
            return 1
        return max(1, min(int(samples), self.description.max_weight))

    def accountant(self) -> RdpAccountant:
        """The task's RDP accountant: each round is ``steps_per_round`` steps of the Gaussian mechanism
        sampled at ``sample_rate`` (q = 1 at company level), plus the label noise once."""
        return RdpAccountant(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
                             steps_per_round=self.steps_per_round, label_epsilon=self.label_epsilon)

    def epsilon_after(self, rounds: int) -> float:
        """Cumulative epsilon (for the task's unit) once ``rounds`` rounds have closed."""
        if self.noise_multiplier <= 0:
            return math.inf
        return self.accountant().epsilon_after(rounds, delta=self.delta)



def open_round(plan: TaskPlan, ledger: LedgerPort, round_number: int) -> str:
    """The publisher opens round ``round_number`` with the epsilon spent once it closes."""
    epsilon = plan.epsilon_after(round_number)
    if not math.isfinite(epsilon):
        raise RoundError(f"task {plan.task_id} adds no DP noise, so its epsilon is unbounded; the ledger books "
                         "only a finite epsilon against the budget (publish it with a positive noise multiplier)")
    return ledger.open_round(plan.task_id, round_number, epsilon_after=epsilon)


def keep_checked(store: ArtifactStore, expected: Mapping[str, str], received: Mapping[str, bytes], *,
                 what: str) -> dict[str, bytes]:
    """Keep each received artifact in the party's own store after checking it against its ledger hash.

    ``expected`` maps an owner (a company) to the SHA-256 the ledger records; ``received`` the bytes a
    message carried. Returns the checked bytes of every owner in ``expected`` that was received;
    raises :class:`RoundError` naming the first owner whose bytes do not match the ledger.
    """
    checked: dict[str, bytes] = {}
    for owner, digest in sorted(expected.items()):
        data = received.get(owner)
        if data is None:
            continue
        if digest_of(data) != digest:
            raise RoundError(f"the {what} of {owner} that arrived hashes to {digest_of(data)[:16]}…, but the ledger "
                             f"records {digest[:16]}…: refusing it")
        store.put(data)
        checked[owner] = data
    return checked


@dataclass(frozen=True)
class UpdateReceipt:
    """What a participant recorded (hash, size, samples, tx id) and the ciphertext it sends on."""

    company: str
    artifact_sha256: str
    size_bytes: int
    samples: int
    tx_id: str
    data: bytes


def contribute(plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, *, company: str, round_number: int,
               update: npt.ArrayLike, samples: int, compute_millis: int) -> UpdateReceipt:
    """A participant's step: bound, noise (distributed mode), encrypt, keep, record.

    ``update`` is what the task's privacy asks a company to send:

    - record level, distributed: the *negative* sum of its Poisson batch's per-example gradients,
      each clipped to S (``fl.dpsgd.clipped_gradient_sum``); ``samples`` is its number of records;
    - otherwise the local model minus the global model (already private under local DP-SGD),
      clipped here to L2 norm S; ``samples`` is FedAvg's n_k.

    In distributed mode company k adds N(0, sum_noise_std^2 / m) / w_k, m the task's minimum number
    of participants, so that after weighting the shares of any m or more companies carry the full
    noise of the sum, and nobody, the committee included, ever sees an un-noised sum.
    """
    vector = np.asarray(update, dtype=np.float64)
    if plan.gradient_sum:
        # Per-example clipping happened in the company's training; this bounds what it may send.
        if not np.all(np.isfinite(vector)):
            raise RoundError("the gradient sum holds NaN or infinite values")
        if int(samples) > plan.description.max_weight:
            raise RoundError(f"{company} has {samples} records; task {plan.task_id} sizes its sums for at most "
                             f"{plan.description.max_weight} (max-weight)")
        clipped = np.clip(vector, -plan.value_bound, plan.value_bound)
    else:
        clipped, _ = clip_by_l2_norm(vector, clip_norm=plan.clip_norm)
    weight = plan.weight(samples)
    std = plan.noise_share_std(weight)
    if std > 0:
        clipped = clipped + gaussian_noise(clipped.shape, std=std)
    layout = plan.layout
    bounded = np.clip(clipped, -layout.clip, layout.clip)
    data = dump_vector(encrypt_vector(plan.public_key, bounded, layout))
    digest = digest_of(data)
    tx_id = ledger.submit_update(plan.task_id, round_number, artifact_sha256=digest, size_bytes=len(data),
                                 samples=int(samples), compute_millis=int(compute_millis))
    # Kept once the ledger names it: a refused update leaves nothing behind in the company's store.
    store.put(data)
    return UpdateReceipt(company, digest, len(data), int(samples), tx_id, data)


def aggregate_bytes(plan: TaskPlan, updates: Sequence[UpdateRecord], ciphertexts: Mapping[str, bytes]) -> bytes:
    """The weighted homomorphic sum of ``updates`` (ledger records), in company order."""
    ordered = sorted(updates, key=lambda u: u["company"])
    vectors = [load_vector(ciphertexts[u["company"]], plan.public_key, plan.layout) for u in ordered]
    return dump_vector(aggregate(vectors, [plan.weight(u["samples"]) for u in ordered]))


@dataclass(frozen=True)
class AggregateReceipt:
    included: tuple[str, ...]
    missing: tuple[str, ...]
    aggregate_sha256: str
    tx_id: str
    data: bytes


def lead(plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, *, round_number: int,
         updates: Mapping[str, bytes]) -> AggregateReceipt:
    """The leader's step: sum (homomorphically) the updates the ledger lists for the round.

    The list comes from the ledger, not from the messages: ``updates`` (company -> ciphertext, as
    relayed) must match the recorded hashes, and a listed update whose ciphertext did not arrive is
    named in ``missing`` rather than silently replaced.
    """
    listed = ledger.list_updates(plan.task_id, round_number)
    checked = keep_checked(store, {u["company"]: u["artifact_sha256"] for u in listed}, updates, what="update")
    included = [u for u in listed if u["company"] in checked]
    if len(included) < plan.noise_participants:
        # Each update carries 1/m of the noise: fewer than m would release less noise than booked.
        raise RoundError(f"round {round_number} of task {plan.task_id} has {len(included)} update(s) to aggregate; "
                         f"it needs at least {plan.noise_participants} (min-participants), or the noise booked "
                         "would not all be there")
    data = aggregate_bytes(plan, included, checked)
    digest = store.put(data)
    names = tuple(sorted(u["company"] for u in included))
    tx_id = ledger.record_aggregate(plan.task_id, round_number, included=names, aggregate_sha256=digest)
    missing = tuple(sorted(u["company"] for u in listed if u["company"] not in checked))
    return AggregateReceipt(names, missing, digest, tx_id, data)


def _recorded_aggregate(plan: TaskPlan, record: RoundRecord, round_number: int) -> tuple[str, list[str]]:
    recorded = record.get("aggregate")
    if recorded is None:
        raise RoundError(f"round {round_number} of task {plan.task_id} has no recorded aggregate")
    return recorded["sha256"], list(recorded["included"])


def verify(plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, *, round_number: int,
           updates: Mapping[str, bytes], aggregate_data: bytes) -> tuple[bool, str]:
    """A committee member's check and vote: recompute the recorded aggregate from the recorded updates."""
    record = ledger.get_round(plan.task_id, round_number)
    digest, included = _recorded_aggregate(plan, record, round_number)
    by_company = {u["company"]: u for u in ledger.list_updates(plan.task_id, round_number)}
    unknown = [c for c in included if c not in by_company]
    if unknown:
        valid, reason = False, f"the aggregate includes updates the ledger does not have: {', '.join(unknown)}"
    elif digest_of(aggregate_data) != digest:
        valid, reason = False, "the aggregate sent for checking is not the one recorded on the ledger"
    else:
        try:
            checked = keep_checked(store, {c: by_company[c]["artifact_sha256"] for c in included}, updates,
                                   what="update")
            absent = [c for c in included if c not in checked]
            if absent:
                raise RoundError(f"no ciphertext arrived to check for {', '.join(absent)}")
            mine = digest_of(aggregate_bytes(plan, [by_company[c] for c in included], checked))
            valid = mine == digest
            reason = "" if valid else f"recomputed aggregate {mine[:16]} differs from the recorded {digest[:16]}"
        except RoundError as err:
            valid, reason = False, str(err)
        if valid:
            store.put(aggregate_data)
    ledger.vote(plan.task_id, round_number, valid=valid, reason=reason)
    return valid, reason


def valid_voters(ledger: LedgerPort, task_id: str, round_number: int) -> set[str]:
    """The committee members whose valid vote on the round is on the ledger."""
    return {v["member"] for v in ledger.list_votes(task_id, round_number) if v["valid"]}


def await_verdict(plan: TaskPlan, ledger: LedgerPort, *, round_number: int, timeout: float,
                  poll: float = 0.1) -> RoundStatus:
    """Wait (reading the ledger) until the round is verified or has failed; return which.

    Raises :class:`RoundError` if the committee has not decided within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        status = RoundStatus(ledger.get_round(plan.task_id, round_number)["status"])
        if status is not RoundStatus.AGGREGATED:
            return status
        if time.monotonic() > deadline:
            raise RoundError(f"the committee of task {plan.task_id} has not reached its quorum on round "
                             f"{round_number} within {timeout:.0f} s")
        time.sleep(poll)


def _check_decryptable(plan: TaskPlan, ledger: LedgerPort, *, member: str, round_number: int,
                       aggregate_data: bytes) -> None:
    """Refuse unless the round is verified, ``member``'s own valid vote is on the ledger, and the
    bytes are the aggregate the ledger records: the one rule both custodies decrypt by."""
    record = ledger.get_round(plan.task_id, round_number)
    digest, _ = _recorded_aggregate(plan, record, round_number)
    if record["status"] != RoundStatus.VERIFIED:
        raise RoundError(f"round {round_number} of task {plan.task_id} is {record['status']}: "
                         "shares are given only for an aggregate whose votes reached the quorum")
    if member not in valid_voters(ledger, plan.task_id, round_number):
        raise RoundError(f"{member} has no valid vote on round {round_number} of task {plan.task_id} on the "
                         "ledger: a member decrypts only an aggregate it has itself checked and voted valid")
    if digest_of(aggregate_data) != digest:
        raise RoundError(f"{digest_of(aggregate_data)[:16]}… is not the aggregate recorded for round {round_number} "
                         f"({digest[:16]}…); refusing to decrypt it")


def decryption_share(plan: TaskPlan, ledger: LedgerPort, share: KeyShare, *, member: str, round_number: int,
                     aggregate_data: bytes) -> bytes:
    """A committee member's partial decryption of the round's aggregate, and of nothing else.

    Given only when the ledger shows the round verified (its quorum of valid votes reached), this
    member's own valid vote among them, and ``aggregate_data`` hashing to the recorded aggregate: a
    leader asking for any other ciphertext (say, one company's update) gets a RoundError.
    """
    _check_decryptable(plan, ledger, member=member, round_number=round_number, aggregate_data=aggregate_data)
    if share.index != plan.member_index(member):
        raise RoundError(f"{member}'s key share has index {share.index}, but the genesis places it at "
                         f"{plan.member_index(member)}")
    vector = load_vector(aggregate_data, plan.public_key, plan.layout)
    return dump_partial(partial_decrypt(share, vector))


def current_master(ledger: LedgerPort, task_id: str) -> str:
    """The escrow task's master as the ledger names it now (after any failover)."""
    return str(ledger.get_task(task_id).get("master", ""))


def master_opening(plan: TaskPlan, ledger: LedgerPort, private_key: PrivateKey, *, member: str, round_number: int,
                   aggregate_data: bytes) -> bytes:
    """The escrow master's decryption of the round's aggregate, opened so the leader can check it.

    The same rule as a partial decryption (verified round, own valid vote, the recorded aggregate
    only), and ``member`` must be the master the ledger names now.
    """
    _check_decryptable(plan, ledger, member=member, round_number=round_number, aggregate_data=aggregate_data)
    master = current_master(ledger, plan.task_id)
    if member != master:
        raise RoundError(f"{member} is not the master of task {plan.task_id} (the ledger names {master})")
    return dump_opening(open_vector(private_key, load_vector(aggregate_data, plan.public_key, plan.layout)))


@dataclass(frozen=True)
class ServerStep:
    """How the leader moves the model along the round's decrypted average (FedAvg by default).

    ``model_n = model_{n-1} + lr * average + momentum * (model_{n-1} - model_{n-2})``: heavy-ball
    momentum written with the two previous global models, both public and on the ledger by hash,
    so any leader can apply it without state of its own, and it is post-processing of what the
    rounds released. ``previous`` is model_{n-2} (None in round 1: no momentum yet).
    """

    lr: float = 1.0
    momentum: float = 0.0
    previous: npt.NDArray[np.float32] | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise RoundError(f"the server learning rate must be a positive number, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise RoundError(f"the server momentum must be in [0, 1), got {self.momentum!r}")

    def apply(self, model: npt.NDArray[np.float64], average: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        moved = model + self.lr * average
        if self.momentum and self.previous is not None:
            if self.previous.shape != model.shape:
                raise RoundError(f"the previous model has {self.previous.size} values, this one {model.size}")
            moved = moved + self.momentum * (model - self.previous.astype(np.float64))
        return moved


@dataclass(frozen=True)
class RoundResult:
    model: npt.NDArray[np.float32]
    model_sha256: str
    model_data: bytes
    average_update: npt.NDArray[np.float64]
    used_members: tuple[str, ...]
    rejected_members: dict[str, str]
    tx_id: str


def _verified_aggregate(plan: TaskPlan, ledger: LedgerPort, round_number: int,
                        aggregate_data: bytes) -> tuple[EncryptedVector, list[str]]:
    """The recorded aggregate of a verified round, loaded, and the companies it includes."""
    record = ledger.get_round(plan.task_id, round_number)
    digest, included = _recorded_aggregate(plan, record, round_number)
    if record["status"] != RoundStatus.VERIFIED:
        raise RoundError(f"round {round_number} of task {plan.task_id} is {record['status']}, not verified")
    if digest_of(aggregate_data) != digest:
        raise RoundError(f"the aggregate given to finish round {round_number} is not the one recorded on the ledger")
    return load_vector(aggregate_data, plan.public_key, plan.layout), included


def finish(plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, *, round_number: int,
           global_model: npt.ArrayLike, aggregate_data: bytes, partials: Mapping[str, bytes],
           step: ServerStep | None = None) -> RoundResult:
    """The leader's last step (threshold custody): combine t partials, then close the round.

    Only partials from members whose valid vote is on the ledger, at their genesis index, are
    combined; the others are named in ``rejected_members``.
    """
    vector, included = _verified_aggregate(plan, ledger, round_number, aggregate_data)
    voters = valid_voters(ledger, plan.task_id, round_number)
    rejected: dict[str, str] = {}
    usable = []
    by_index: dict[int, str] = {}
    for member, raw in sorted(partials.items()):
        if member not in voters:
            rejected[member] = "no valid vote of this member is on the ledger"
            continue
        try:
            partial = load_partial(raw)
        except FedLedgerError as err:
            rejected[member] = f"malformed partial decryption: {err}"
            continue
        if member not in plan.committee or partial.index != plan.member_index(member):
            rejected[member] = f"partial made with share {partial.index}, not this member's"
            continue
        usable.append(partial)
        by_index[partial.index] = member
    if len(usable) < plan.key.threshold:
        raise RoundError(f"round {round_number} of task {plan.task_id} has {len(usable)} usable partial "
                         f"decryptions, {plan.key.threshold} needed"
                         + (f" (refused: {'; '.join(f'{m}: {r}' for m, r in rejected.items())})" if rejected else ""))
    decrypted = combine_partials(plan.key, vector, usable)
    rejected.update({by_index[i]: reason for i, reason in decrypted.rejected.items()})
    return _close(plan, ledger, store, round_number, global_model, vector, included, decrypted.values,
                  tuple(by_index[i] for i in decrypted.used), rejected, step or ServerStep())


def finish_opened(plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, *, round_number: int,
                  global_model: npt.ArrayLike, aggregate_data: bytes, master: str, opening: bytes,
                  step: ServerStep | None = None) -> RoundResult:
    """The leader's last step (escrow custody): check the master's opening, then close the round.

    The opening must come from the master the ledger names, whose valid vote is on the ledger, and
    every ciphertext of the recorded aggregate must re-encrypt from it.
    """
    vector, included = _verified_aggregate(plan, ledger, round_number, aggregate_data)
    named = current_master(ledger, plan.task_id)
    if master != named:
        raise RoundError(f"the decryption came from {master}, but the ledger names {named} master of task "
                         f"{plan.task_id}")
    if master not in valid_voters(ledger, plan.task_id, round_number):
        raise RoundError(f"the master {master} has no valid vote on round {round_number} on the ledger")
    try:
        weighted_sum = check_opening(vector, load_opening(opening))
    except CryptoError as err:
        raise RoundError(f"the master {master}'s decryption of round {round_number} is refused: {err}") from None
    return _close(plan, ledger, store, round_number, global_model, vector, included, weighted_sum, (master,), {},
                  step or ServerStep())


def _close(plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, round_number: int, global_model: npt.ArrayLike,
           vector: EncryptedVector, included: list[str], weighted_sum: npt.NDArray[np.float64],
           used: tuple[str, ...], rejected: dict[str, str], step: ServerStep) -> RoundResult:
    """Average, update the model, keep it and close the round with its hash.

    The average is FedAvg's (the weighted sum over the total weight) or, for gradient sums, the
    noised sum over the expected batch ``q * sum(n_k)`` of the included companies, as DP-SGD
    normalizes; the model then takes ``step`` along it. In central mode the leader adds the noise
    here, to the decrypted weighted sum (paper 003's step 7): it then sees the un-noised average,
    which is the trust that mode places in it.
    """
    if plan.noise_mode is NoiseMode.CENTRAL and plan.noise_multiplier > 0:
        weighted_sum = weighted_sum + gaussian_noise(weighted_sum.shape, std=plan.sum_noise_std)
    if plan.gradient_sum:
        records = sum(int(u["samples"]) for u in ledger.list_updates(plan.task_id, round_number)
                      if u["company"] in included)
        average = weighted_sum / (plan.sample_rate * max(records, 1))
    else:
        average = weighted_sum / vector.total_weight
    model = step.apply(np.asarray(global_model, dtype=np.float64), average).astype(np.float32)
    data = model_bytes(model)
    model_digest = store.put(data)
    tx_id = ledger.close_round(plan.task_id, round_number, model_sha256=model_digest)
    return RoundResult(model, model_digest, data, average, used, rejected, tx_id)
