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


class NoiseMode(StrEnum):
    """Who adds the DP noise: each company its share (distributed), or the leader after decryption."""

    DISTRIBUTED = "distributed"
    CENTRAL = "central"


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
        if self.noise_mode is NoiseMode.DISTRIBUTED and self.noise_multiplier > 0:
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
    """A participant's step: clip, noise (distributed mode), encrypt, keep, record.

    ``update`` is the local model minus the global model. In distributed mode company k adds
    N(0, (sigma S W)^2 / K) / w_k, so that after weighting by w_k the K shares sum to the full
    noise of the weighted sum and nobody, the committee included, ever sees an un-noised sum.
    """
    clipped, _ = clip_by_l2_norm(update, clip_norm=plan.clip_norm)
    weight = plan.weight(samples)
    if plan.noise_mode is NoiseMode.DISTRIBUTED and plan.noise_multiplier > 0:
        std = plan.sum_noise_std / math.sqrt(len(plan.participants)) / weight
        clipped = clipped + gaussian_noise(clipped.shape, std=std)
    layout = plan.layout
    bounded = np.clip(clipped, -layout.clip, layout.clip)
    data = dump_vector(encrypt_vector(plan.public_key, bounded, layout))
    digest = store.put(data)
    tx_id = ledger.submit_update(plan.task_id, round_number, artifact_sha256=digest, size_bytes=len(data),
                                 samples=int(samples), compute_millis=int(compute_millis))
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
    if not included:
        raise RoundError(f"round {round_number} of task {plan.task_id} has no updates to aggregate")
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
class RoundResult:
    model: npt.NDArray[np.float32]
    model_sha256: str
    model_data: bytes
    average_update: npt.NDArray[np.float64]
    used_members: tuple[str, ...]
    rejected_members: dict[str, str]
    tx_id: str


def _verified_aggregate(plan: TaskPlan, ledger: LedgerPort, round_number: int, aggregate_data: bytes) -> EncryptedVector:
    record = ledger.get_round(plan.task_id, round_number)
    digest, _ = _recorded_aggregate(plan, record, round_number)
    if record["status"] != RoundStatus.VERIFIED:
        raise RoundError(f"round {round_number} of task {plan.task_id} is {record['status']}, not verified")
    if digest_of(aggregate_data) != digest:
        raise RoundError(f"the aggregate given to finish round {round_number} is not the one recorded on the ledger")
    return load_vector(aggregate_data, plan.public_key, plan.layout)


def finish(plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, *, round_number: int,
           global_model: npt.ArrayLike, aggregate_data: bytes, partials: Mapping[str, bytes]) -> RoundResult:
    """The leader's last step (threshold custody): combine t partials, then close the round.

    Only partials from members whose valid vote is on the ledger, at their genesis index, are
    combined; the others are named in ``rejected_members``.
    """
    vector = _verified_aggregate(plan, ledger, round_number, aggregate_data)
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
    return _close(plan, ledger, store, round_number, global_model, vector, decrypted.values,
                  tuple(by_index[i] for i in decrypted.used), rejected)


def finish_opened(plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, *, round_number: int,
                  global_model: npt.ArrayLike, aggregate_data: bytes, master: str, opening: bytes) -> RoundResult:
    """The leader's last step (escrow custody): check the master's opening, then close the round.

    The opening must come from the master the ledger names, whose valid vote is on the ledger, and
    every ciphertext of the recorded aggregate must re-encrypt from it.
    """
    vector = _verified_aggregate(plan, ledger, round_number, aggregate_data)
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
    return _close(plan, ledger, store, round_number, global_model, vector, weighted_sum, (master,), {})


def _close(plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, round_number: int, global_model: npt.ArrayLike,
           vector: EncryptedVector, weighted_sum: npt.NDArray[np.float64], used: tuple[str, ...],
           rejected: dict[str, str]) -> RoundResult:
    """Average, update the model, keep it and close the round with its hash.

    In central mode the leader adds the noise here, to the decrypted weighted sum (paper 003's step
    7): it then sees the un-noised average, which is the trust that mode places in it.
    """
    if plan.noise_mode is NoiseMode.CENTRAL and plan.noise_multiplier > 0:
        weighted_sum = weighted_sum + gaussian_noise(weighted_sum.shape, std=plan.sum_noise_std)
    average = weighted_sum / vector.total_weight
    model = (np.asarray(global_model, dtype=np.float64) + average).astype(np.float32)
    data = model_bytes(model)
    model_digest = store.put(data)
    tx_id = ledger.close_round(plan.task_id, round_number, model_sha256=model_digest)
    return RoundResult(model, model_digest, data, average, used, rejected, tx_id)
