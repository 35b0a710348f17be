"""One training round among companies, as the ledger records and enforces it (paper 003, steps 2-7).

The roles act in turn, each as its own Fabric identity and each from its own home:

- the **publisher** (the coordinator) opens round ``n``; the chaincode computes the epsilon the task
  will have spent and refuses a round past the budget, and fixes the round's election seed;
- each **committee member** proves its VRF on that seed (``stand_for_leader``); the chaincode
  verifies every proof;
- each **participant** clips its model update to L2 norm S, adds its share of the noise (distributed
  mode), encrypts it under the task's threshold Paillier key, keeps the ciphertext and records its
  hash, size, sample count and compute time; the ciphertext itself travels in a message;
- the publisher **closes collection**: the ledger fixes the set of updates and ranks the members
  that proved by stake-weighted sortition;
- the first-ranked **leader** (the next, after its window of ledger time) multiplies exactly the
  fixed ciphertexts, each checked against its recorded hash, weighted by n_k, and records the
  aggregate's hash; the chaincode refuses one that omits or adds an update;
- each **committee member** recomputes the aggregate from the ledger's updates and votes; with a
  valid verdict it partially decrypts *the aggregate it has just recomputed* and nothing else, and
  records the partial's hash with its vote;
- the leader combines t partials, each from a member whose counted valid vote records its hash,
  into the noised weighted average, steps the model as the task's description says, and closes the
  round naming the members it combined, so anyone can re-derive the model.

Nothing here imports Flower or talks to Fabric directly: the ledger is the small ``LedgerPort``
interface and bytes arrive as arguments (the data plane is the caller's), so unit tests can pass
fakes; each party keeps what it produced and received in its own ``ArtifactStore``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
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
from fedledger.crypto.sortition import sortition_input
from fedledger.crypto.vrf import VrfKeyPair
from fedledger.crypto.vrf import prove as vrf_prove
from fedledger.errors import CryptoError, FedLedgerError
from fedledger.fabric.ledger import (
    CompanyRecord,
    DPSpec,
    ElectionProofRecord,
    RoundRecord,
    TaskRecord,
    UpdateRecord,
    VoteRecord,
)
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
    COLLECTING = "collecting"  # chaincode 0.2.0 and earlier: a round with updates, not yet collected
    COLLECTED = "collected"
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
    def get_company(self, name: str) -> CompanyRecord: ...
    def get_threshold_key(self, task_id: str) -> bytes: ...
    def get_round(self, task_id: str, round_number: int) -> RoundRecord: ...
    def list_updates(self, task_id: str, round_number: int) -> list[UpdateRecord]: ...
    def list_votes(self, task_id: str, round_number: int) -> list[VoteRecord]: ...
    def list_election_proofs(self, task_id: str, round_number: int) -> list[ElectionProofRecord]: ...
    def open_round(self, task_id: str, round_number: int) -> str: ...
    def submit_election_proof(self, task_id: str, round_number: int, *, proof: bytes) -> str: ...
    def submit_update(self, task_id: str, round_number: int, *, artifact_sha256: str, size_bytes: int,
                      samples: int, compute_millis: int) -> str: ...
    def close_collection(self, task_id: str, round_number: int) -> str: ...
    def record_aggregate(self, task_id: str, round_number: int, *, included: Sequence[str],
                         aggregate_sha256: str) -> str: ...
    def vote(self, task_id: str, round_number: int, *, valid: bool, reason: str = "",
             partial_sha256: str = "") -> str: ...
    def record_partial(self, task_id: str, round_number: int, *, partial_sha256: str) -> str: ...
    def close_round(self, task_id: str, round_number: int, *, model_sha256: str,
                    decrypted_by: Sequence[str]) -> str: ...
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
    dataset, the packing layout's weight cap, the Paillier key size the dealer must use (the
    threshold public key itself is on the ledger too, recorded by the dealer: ``GetThresholdKey``),
    and the server step every leader applies (``ServerStep``), so anyone can re-derive each model.
    """

    model: str
    dataset: str
    max_weight: int
    key_bits: int
    server_lr: float = 1.0
    server_momentum: float = 0.0

    def to_json(self) -> str:
        return json.dumps({"dataset": self.dataset, "key_bits": self.key_bits, "max_weight": self.max_weight,
                           "model": self.model, "server_lr": repr(float(self.server_lr)),
                           "server_momentum": repr(float(self.server_momentum))},
                          sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Description:
        try:
            raw = json.loads(text)
            return cls(str(raw["model"]), str(raw["dataset"]), int(raw["max_weight"]), int(raw["key_bits"]),
                       float(raw.get("server_lr", "1.0")), float(raw.get("server_momentum", "0.0")))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise RoundError(f"the task's model description is not a FedLedger description: {err}") from None

    def server_step(self, previous: npt.NDArray[np.float32] | None = None) -> ServerStep:
        """The step the leader takes along a round's average (``previous``: the model two rounds back)."""
        return ServerStep(lr=self.server_lr, momentum=self.server_momentum, previous=previous)


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
        """The task's RDP accountant (see ``dp_accountant``)."""
        return dp_accountant(self.task["dp"])

    def epsilon_after(self, rounds: int) -> float:
        """Cumulative epsilon (for the task's unit) once ``rounds`` rounds have closed."""
        if self.noise_multiplier <= 0:
            return math.inf
        return self.accountant().epsilon_after(rounds, delta=self.delta)



def last_closed_round(ledger: LedgerPort, task_id: str, before: int) -> int:
    """The last round before ``before`` that closed (0: none; the task starts from its initial model)."""
    for n in range(before - 1, 0, -1):
        if ledger.get_round(task_id, n)["status"] == RoundStatus.CLOSED:
            return n
    return 0


def starting_model_sha256(plan: TaskPlan, ledger: LedgerPort, round_number: int) -> str:
    """The hash of the model round ``round_number`` starts from: the last closed round's, or the initial one."""
    closed = last_closed_round(ledger, plan.task_id, round_number)
    if closed == 0:
        return plan.task["model"]["initial_weights_sha256"]
    return ledger.get_round(plan.task_id, closed).get("model_sha256", "")


def dp_accountant(dp: DPSpec) -> RdpAccountant:
    """A task's RDP accountant from its genesis's ``dp``: each round is ``steps_per_round`` steps of the
    Gaussian mechanism sampled at ``sample_rate`` (q = 1 at company level), plus the label noise once."""
    return RdpAccountant(noise_multiplier=float(dp["noise_multiplier"]), sample_rate=float(dp["sample_rate"]),
                         steps_per_round=int(dp["steps_per_round"]), label_epsilon=float(dp["label_epsilon"]))


def open_round(plan: TaskPlan, ledger: LedgerPort, round_number: int) -> str:
    """The publisher opens round ``round_number``; the chaincode books its epsilon with its own accountant."""
    return ledger.open_round(plan.task_id, round_number)


def election_input(plan: TaskPlan, record: RoundRecord) -> bytes:
    """The VRF input every committee member proves on for a round: its ledger seed, task and number."""
    return sortition_input(plan.task_id, int(record["number"]), bytes.fromhex(record["seed"]))


def stand_for_leader(plan: TaskPlan, ledger: LedgerPort, key: VrfKeyPair, *, round_number: int) -> str:
    """A committee member's VRF proof on the round's seed, recorded on the ledger (which verifies it)."""
    proof = vrf_prove(key.secret_key, election_input(plan, ledger.get_round(plan.task_id, round_number)))
    return ledger.submit_election_proof(plan.task_id, round_number, proof=proof)


def close_collection(plan: TaskPlan, ledger: LedgerPort, round_number: int) -> RoundRecord:
    """The publisher ends collection: the ledger fixes the round's updates and ranks its leaders."""
    ledger.close_collection(plan.task_id, round_number)
    return ledger.get_round(plan.task_id, round_number)


def leader_slot(record: RoundRecord, company: str) -> float:
    """The ledger time (seconds) from which ``company`` may record the round's aggregate."""
    election = record.get("election")
    if election is None or company not in election["ranking"]:
        raise RoundError(f"{company} is not ranked in round {record['number']}'s election")
    return float(election["closed_at"] + election["ranking"].index(company) * election["window_seconds"])


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
    # The ledger's sample count is the weight the update carries in the sum (FedAvg's n_k capped at
    # W), which the committee's recomputation holds it to; the claimed compute is capped at the
    # task's declared cost per sample, as the chaincode caps it.
    claimed = int(samples) if plan.gradient_sum else min(int(samples), plan.description.max_weight)
    compute = min(int(compute_millis), claimed * int(plan.task["millis_per_sample"]))
    tx_id = ledger.submit_update(plan.task_id, round_number, artifact_sha256=digest, size_bytes=len(data),
                                 samples=claimed, compute_millis=compute)
    # Kept once the ledger names it: a refused update leaves nothing behind in the company's store.
    store.put(data)
    return UpdateReceipt(company, digest, len(data), claimed, tx_id, data)


def aggregate_vector(plan: TaskPlan, updates: Sequence[UpdateRecord],
                     ciphertexts: Mapping[str, bytes]) -> EncryptedVector:
    """The weighted homomorphic sum of ``updates`` (ledger records), in company order."""
    ordered = sorted(updates, key=lambda u: u["company"])
    vectors = [load_vector(ciphertexts[u["company"]], plan.public_key, plan.layout) for u in ordered]
    return aggregate(vectors, [plan.weight(u["samples"]) for u in ordered])


def aggregate_bytes(plan: TaskPlan, updates: Sequence[UpdateRecord], ciphertexts: Mapping[str, bytes]) -> bytes:
    """``aggregate_vector``, serialized: what the aggregate's ledger hash is taken over."""
    return dump_vector(aggregate_vector(plan, updates, ciphertexts))


@dataclass(frozen=True)
class AggregateReceipt:
    included: tuple[str, ...]
    missing: tuple[str, ...]
    aggregate_sha256: str
    tx_id: str
    data: bytes


def lead(plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, *, company: str, round_number: int,
         updates: Mapping[str, bytes], clock: Callable[[], float] = time.time,
         sleep: Callable[[float], None] = time.sleep) -> AggregateReceipt:
    """A ranked leader's step: sum (homomorphically) exactly the updates the ledger fixed for the round.

    The set comes from the ledger (fixed when collection closed), not from the messages: every one
    of its ciphertexts must have arrived, matching its recorded hash, or nothing is recorded. A
    member ranked below first waits until its slot has come in ledger time (the chaincode refuses
    it earlier; a transaction's timestamp is its proposer's clock, so the wait is on that clock).
    """
    record = ledger.get_round(plan.task_id, round_number)
    if record["status"] != RoundStatus.COLLECTED:
        raise RoundError(f"round {round_number} of task {plan.task_id} is {record['status']}: "
                         "an aggregate is made once collection has closed, and once")
    collected = list(record.get("collected", []))
    listed = {u["company"]: u for u in ledger.list_updates(plan.task_id, round_number)}
    checked = keep_checked(store, {c: listed[c]["artifact_sha256"] for c in collected}, updates, what="update")
    missing = tuple(c for c in collected if c not in checked)
    if missing:
        raise RoundError(f"round {round_number} of task {plan.task_id} fixed the updates of {', '.join(collected)}; "
                         f"no ciphertext arrived for {', '.join(missing)}, so no complete aggregate can be made")
    slot = leader_slot(record, company)
    if company != record["election"]["ranking"][0]:
        # Half a second past the slot: the chaincode compares whole seconds of the transaction's time.
        # The first ranked may record at once, so it does not wait.
        wait = slot + 0.5 - clock()
        if wait > 0:
            sleep(wait)
    data = aggregate_bytes(plan, [listed[c] for c in collected], checked)
    digest = store.put(data)
    tx_id = ledger.record_aggregate(plan.task_id, round_number, included=collected, aggregate_sha256=digest)
    return AggregateReceipt(tuple(collected), (), digest, tx_id, data)


def _recorded_aggregate(plan: TaskPlan, record: RoundRecord, round_number: int) -> tuple[str, list[str]]:
    recorded = record.get("aggregate")
    if recorded is None:
        raise RoundError(f"round {round_number} of task {plan.task_id} has no recorded aggregate")
    return recorded["sha256"], list(recorded["included"])


@dataclass(frozen=True)
class Verdict:
    """A committee member's vote on a round's aggregate, and its partial decryption if it gave one."""

    valid: bool
    reason: str
    partial: bytes = b""


def verify(plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, *, member: str, round_number: int,
           updates: Mapping[str, bytes], aggregate_data: bytes, share: KeyShare | None = None,
           decrypt: bool = True) -> Verdict:
    """A committee member's check and vote: recompute the recorded aggregate from the fixed updates.

    With a key share (and ``decrypt``: the coordinator asks only the few members it needs), a member
    whose vote counts (it is active) decrypts its share of the aggregate it has just recomputed and
    found valid, keeps the partial and votes with its hash: one exchange per member. It never
    decrypts anything it has not recomputed itself from the ledger's updates.
    """
    record = ledger.get_round(plan.task_id, round_number)
    digest, included = _recorded_aggregate(plan, record, round_number)
    by_company = {u["company"]: u for u in ledger.list_updates(plan.task_id, round_number)}
    collected = sorted(record.get("collected", []))
    vector = None
    if sorted(included) != collected:
        valid, reason = False, (f"the aggregate includes {', '.join(sorted(included))}, not exactly the updates fixed "
                                f"when collection closed ({', '.join(collected)})")
    elif digest_of(aggregate_data) != digest:
        valid, reason = False, "the aggregate sent for checking is not the one recorded on the ledger"
    else:
        try:
            checked = keep_checked(store, {c: by_company[c]["artifact_sha256"] for c in included}, updates,
                                   what="update")
            absent = [c for c in included if c not in checked]
            if absent:
                raise RoundError(f"no ciphertext arrived to check for {', '.join(absent)}")
            recomputed = aggregate_vector(plan, [by_company[c] for c in included], checked)
            mine = digest_of(dump_vector(recomputed))
            valid = mine == digest
            reason = "" if valid else f"recomputed aggregate {mine[:16]} differs from the recorded {digest[:16]}"
            if valid:
                vector = recomputed
        except RoundError as err:
            valid, reason = False, str(err)
        if valid:
            store.put(aggregate_data)
    partial = b""
    if vector is not None and share is not None and decrypt and ledger.get_company(member)["status"] == "active":
        if share.index != plan.member_index(member):
            raise RoundError(f"{member}'s key share has index {share.index}, but the genesis places it at "
                             f"{plan.member_index(member)}")
        partial = dump_partial(partial_decrypt(share, vector))
    ledger.vote(plan.task_id, round_number, valid=valid, reason=reason,
                partial_sha256=digest_of(partial) if partial else "")
    if partial:
        # Kept once the ledger names it: a refused vote leaves no partial behind.
        store.put(partial)
    return Verdict(valid, reason, partial)


def valid_voters(ledger: LedgerPort, task_id: str, round_number: int) -> dict[str, str]:
    """The committee members whose counted valid vote on the round is on the ledger, each with the
    hash of its partial decryption ("" if it has recorded none)."""
    return {v["member"]: v.get("partial_sha256", "") for v in ledger.list_votes(task_id, round_number)
            if v["valid"] and v.get("counted", True)}


def await_verdict(plan: TaskPlan, ledger: LedgerPort, *, round_number: int, timeout: float,
                  poll: float = 0.1) -> RoundStatus:
    """Wait (reading the ledger) until the round is verified, has failed, or its committee has rejected
    the aggregate (counted invalid votes leave the quorum out of reach: the round can only fail, so
    FAILED is returned); return which.

    Raises :class:`RoundError` if the committee has not decided within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        record = ledger.get_round(plan.task_id, round_number)
        status = RoundStatus(record["status"])
        if status is RoundStatus.AGGREGATED and \
                record["invalid_votes"] > len(plan.committee) - int(plan.task["quorum"]):
            return RoundStatus.FAILED
        if status is not RoundStatus.AGGREGATED:
            return status
        if time.monotonic() > deadline:
            raise RoundError(f"the committee of task {plan.task_id} has not reached its quorum on round "
                             f"{round_number} within {timeout:.0f} s")
        time.sleep(poll)


def _check_decryptable(plan: TaskPlan, ledger: LedgerPort, *, member: str, round_number: int,
                       aggregate_data: bytes) -> None:
    """Refuse unless the round has a recorded aggregate, ``member``'s own counted valid vote is on the
    ledger, and the bytes are that aggregate: the one rule a later decryption goes by."""
    record = ledger.get_round(plan.task_id, round_number)
    digest, _ = _recorded_aggregate(plan, record, round_number)
    if record["status"] not in (RoundStatus.AGGREGATED, RoundStatus.VERIFIED):
        raise RoundError(f"round {round_number} of task {plan.task_id} is {record['status']}: "
                         "shares are given only for a recorded aggregate awaiting its decryption")
    if member not in valid_voters(ledger, plan.task_id, round_number):
        raise RoundError(f"{member} has no valid vote on round {round_number} of task {plan.task_id} on the "
                         "ledger: a member decrypts only an aggregate it has itself checked and voted valid")
    if digest_of(aggregate_data) != digest:
        raise RoundError(f"{digest_of(aggregate_data)[:16]}… is not the aggregate recorded for round {round_number} "
                         f"({digest[:16]}…); refusing to decrypt it")


def decryption_share(plan: TaskPlan, ledger: LedgerPort, share: KeyShare, *, member: str, round_number: int,
                     aggregate_data: bytes) -> bytes:
    """A committee member's partial decryption of the round's aggregate, and of nothing else, given
    after its vote (``verify`` gives it with the vote): its hash is recorded on the ledger.

    Given only when the ledger shows this member's own counted valid vote and ``aggregate_data``
    hashing to the recorded aggregate: a leader asking for any other ciphertext (say, one company's
    update) gets a RoundError.
    """
    _check_decryptable(plan, ledger, member=member, round_number=round_number, aggregate_data=aggregate_data)
    if share.index != plan.member_index(member):
        raise RoundError(f"{member}'s key share has index {share.index}, but the genesis places it at "
                         f"{plan.member_index(member)}")
    recorded = valid_voters(ledger, plan.task_id, round_number)[member]
    if recorded:
        # A partial's proof is randomized: a second one would not hash to the recorded one, and the
        # leader combines only that one (the member's store keeps it, from ``verify``).
        raise RoundError(f"{member} recorded its partial decryption of round {round_number} ({recorded[:16]}…) with "
                         "its vote: the leader combines that one, not a new one")
    partial = dump_partial(partial_decrypt(share, load_vector(aggregate_data, plan.public_key, plan.layout)))
    ledger.record_partial(plan.task_id, round_number, partial_sha256=digest_of(partial))
    return partial


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
    opening = dump_opening(open_vector(private_key, load_vector(aggregate_data, plan.public_key, plan.layout)))
    if not valid_voters(ledger, plan.task_id, round_number).get(member):
        ledger.record_partial(plan.task_id, round_number, partial_sha256=digest_of(opening))
    return opening


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

    Only partials from members whose counted valid vote is on the ledger with the partial's hash, at
    their genesis index, are combined (each checked with its proof); the others are named in
    ``rejected_members``. The close names the members combined, so anyone can re-derive the model.
    """
    vector, included = _verified_aggregate(plan, ledger, round_number, aggregate_data)
    voters = valid_voters(ledger, plan.task_id, round_number)
    rejected: dict[str, str] = {}
    usable = []
    by_index: dict[int, str] = {}
    for member, raw in sorted(partials.items()):
        if member not in voters:
            rejected[member] = "no counted valid vote of this member is on the ledger"
            continue
        if voters[member] != digest_of(raw):
            rejected[member] = (f"its partial hashes to {digest_of(raw)[:16]}…, the ledger records "
                                f"{voters[member][:16] or 'none'}")
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
    for i in decrypted.used:
        store.put(partials[by_index[i]])
    return _close(plan, ledger, store, round_number, global_model, vector, included, decrypted.values,
                  tuple(by_index[i] for i in decrypted.used), rejected, step or plan.description.server_step())


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
    recorded = valid_voters(ledger, plan.task_id, round_number)
    if master not in recorded:
        raise RoundError(f"the master {master} has no valid vote on round {round_number} on the ledger")
    if recorded[master] != digest_of(opening):
        raise RoundError(f"the master {master}'s decryption hashes to {digest_of(opening)[:16]}…, the ledger records "
                         f"{recorded[master][:16] or 'none'}")
    try:
        weighted_sum = check_opening(vector, load_opening(opening))
    except CryptoError as err:
        raise RoundError(f"the master {master}'s decryption of round {round_number} is refused: {err}") from None
    store.put(opening)
    return _close(plan, ledger, store, round_number, global_model, vector, included, weighted_sum, (master,), {},
                  step or plan.description.server_step())


def round_average(plan: TaskPlan, updates: Sequence[UpdateRecord], included: Sequence[str],
                  weighted_sum: npt.NDArray[np.float64], total_weight: int) -> npt.NDArray[np.float64]:
    """A round's average from its decrypted weighted sum: FedAvg's (over the total weight) or, for
    gradient sums, over the expected batch ``q * sum(n_k)`` of the included companies, as DP-SGD
    normalizes. Pure, so an auditor re-derives exactly what the leader computed."""
    if plan.gradient_sum:
        records = sum(int(u["samples"]) for u in updates if u["company"] in included)
        return weighted_sum / (plan.sample_rate * max(records, 1))
    return weighted_sum / total_weight


def next_model(step: ServerStep, start: npt.ArrayLike, average: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """The round's new global model: ``start`` moved by ``step`` along ``average``, as float32."""
    return step.apply(np.asarray(start, dtype=np.float64), average).astype(np.float32)


def _close(plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, round_number: int, global_model: npt.ArrayLike,
           vector: EncryptedVector, included: list[str], weighted_sum: npt.NDArray[np.float64],
           used: tuple[str, ...], rejected: dict[str, str], step: ServerStep) -> RoundResult:
    """Average, update the model, keep it and close the round with its hash and who decrypted.

    In central mode the leader adds the noise here, to the decrypted weighted sum (paper 003's
    step 7): it then sees the un-noised average, which is the trust that mode places in it, and
    no one can re-derive the model from the partials.
    """
    if plan.noise_mode is NoiseMode.CENTRAL and plan.noise_multiplier > 0:
        weighted_sum = weighted_sum + gaussian_noise(weighted_sum.shape, std=plan.sum_noise_std)
    average = round_average(plan, ledger.list_updates(plan.task_id, round_number), included, weighted_sum,
                            vector.total_weight)
    model = next_model(step, global_model, average)
    data = model_bytes(model)
    model_digest = store.put(data)
    tx_id = ledger.close_round(plan.task_id, round_number, model_sha256=model_digest, decrypted_by=used)
    return RoundResult(model, model_digest, data, average, used, rejected, tx_id)


def derive_closing_model(plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, *, round_number: int,
                         start: bytes, previous: bytes | None) -> bytes:
    """A closed round's model, re-derived from what is public: the recorded aggregate and the recorded
    partial decryptions (each verified with its proof; under escrow, the master's checked opening),
    averaged and stepped by the task's server step from ``start`` (``previous``: the model before it,
    for momentum), and checked byte for byte against the ledger's hash. Needs no key.

    An auditor checks a round with it; the coordinator recovers a model whose leader closed the
    round but did not hand the model over.

    Raises
    ------
    RoundError
        The round is not closed, is under central noise (the leader's noise cannot be re-derived),
        an artifact is missing or fails its hash, a partial is not its member's or fails its proof,
        or the derivation is not the recorded model.
    """
    record = ledger.get_round(plan.task_id, round_number)
    if record["status"] != RoundStatus.CLOSED:
        raise RoundError(f"round {round_number} of task {plan.task_id} is {record['status']}, not closed")
    if plan.noise_mode is NoiseMode.CENTRAL and plan.noise_multiplier > 0:
        raise RoundError("under central noise the leader adds the noise: the model cannot be re-derived")
    digest, included = _recorded_aggregate(plan, record, round_number)
    vector = load_vector(store.get(digest), plan.public_key, plan.layout)
    partial_of = {v["member"]: v.get("partial_sha256", "") for v in ledger.list_votes(plan.task_id, round_number)}
    members = list(record.get("decrypted_by", []))
    if plan.custody is Custody.ESCROW:
        weighted_sum = check_opening(vector, load_opening(store.get(partial_of.get(members[0], ""))))
    else:
        partials = [load_partial(store.get(partial_of.get(m, ""))) for m in members]
        for member, partial in zip(members, partials):
            if partial.index != plan.member_index(member):
                raise RoundError(f"the partial recorded for {member} was made with share {partial.index}, "
                                 f"not {member}'s ({plan.member_index(member)})")
        decrypted = combine_partials(plan.key, vector, partials)
        if decrypted.rejected:
            index, reason = next(iter(decrypted.rejected.items()))
            raise RoundError(f"the partial decryption of share {index} does not verify: {reason}")
        weighted_sum = decrypted.values
    average = round_average(plan, ledger.list_updates(plan.task_id, round_number), included, weighted_sum,
                            vector.total_weight)
    step = plan.description.server_step(model_from_bytes(previous) if previous is not None else None)
    data = model_bytes(next_model(step, model_from_bytes(start), average))
    if digest_of(data) != record.get("model_sha256"):
        raise RoundError(f"the previous model stepped along the decrypted average hashes to {digest_of(data)[:16]}…, "
                         f"the ledger records {str(record.get('model_sha256', ''))[:16]}…")
    return data
