"""A typed facade over the FedLedger chaincode: one method per transaction, JSON in and out.

Reads are evaluated on one peer and return the chaincode's JSON, parsed (records are typed below as
they are on the ledger). Writes are endorsed, ordered and waited for; they return the transaction
id once it has committed as valid; one that loses a read conflict to a concurrent transaction
(``MVCC_READ_CONFLICT``) changed nothing and is endorsed and submitted again, up to eight times, backing off.
The chaincode's refusals are not rewrapped: an
:class:`~fedledger.errors.EndorseError` (a write) or :class:`~fedledger.errors.GatewayError` (a read)
carries the chaincode's message verbatim.

Arguments this module serializes are canonical JSON (sorted keys, no whitespace, no floats), the
form the chaincode stores, and decimals (a genesis's ``dp`` parameters) are fixed-point strings
(:func:`fixed_point` rounds *up* to the ledger's 6 decimals). No client sends an epsilon: the
chaincode books each round's with its own accountant when the round opens. Bytes (a threshold key,
sealed key shares) travel as standard base64.

Key custody: each company records an X25519 encryption key (:meth:`Ledger.record_company_keys`); a
task's dealer, a company holding only that place in the task, deals its threshold key with every
committee member's share sealed to that member's key (:meth:`Ledger.deal_key`). A sealed box opens
only with its member's private key, so the shares sit on the public ledger.

Escrow custody (``he.key_custody = "escrow"``): the dealer also seals the whole private key to the
task's master (``he.master``, a committee member), and the members' shares are Shamir shares of its
factor. When the master fails, the publisher hands the key to the next member
(:meth:`Ledger.failover_master`), and the members release their shares to it, sealed to its key
(:meth:`Ledger.release_escrow_share`), until it holds enough to rebuild the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Generic, NotRequired, Protocol, TypedDict, TypeVar, cast

from fedledger.errors import CommitError, EndorsementMismatchError, FabricError, KeyIntegrityError
from fedledger.fabric.commit import Status
from fedledger.fabric.proposal import Args

# Decimals of the ledger's fixed-point numbers: the chaincode keeps epsilon in millionths.
FIXED_POINT_DECIMALS = 6
# The whole part of a fixed-point number is parsed as a uint32 by the chaincode.
_FIXED_POINT_MAX = Decimal(2**32 - 1)
_FIXED_POINT_STEP = Decimal(1).scaleb(-FIXED_POINT_DECIMALS)
_FIXED_POINT = re.compile(r"^[0-9]+(\.[0-9]{1,6})?$")

Record = TypeVar("Record")


class CompanyRecord(TypedDict):
    """A consortium member's identity and standing (reputation in thousandths), and the public keys
    it recorded: ``encryption_key`` (X25519, hex) that dealers seal its key shares to, ``node_key``,
    its Flower node's public key (PEM or OpenSSH), and ``vrf_key`` (Ed25519, hex), which its
    leader-election proofs verify under. ``demotion`` says why a demoted company is demoted
    (``reputation`` or ``admin``)."""

    name: str
    msp_id: str
    cert_fingerprint: str
    roles: list[str]
    status: str
    reputation: int
    stake: int
    tokens: int
    demotion: NotRequired[str]
    encryption_key: NotRequired[str]
    node_key: NotRequired[str]
    vrf_key: NotRequired[str]


class ModelSpec(TypedDict):
    description: str
    initial_weights_sha256: str


class DPSpec(TypedDict):
    """Differential-privacy parameters; decimals are fixed-point strings.

    ``unit`` (``record`` or ``company``) is what one unit of privacy protects. ``sample_rate`` is
    the Poisson rate at which a step samples records ("1" under unit company: every company takes
    part in every round). ``steps_per_round`` is how many sampled-Gaussian steps a round composes
    (1 unless ``noise_mode`` is ``local``). ``label_epsilon`` is the epsilon of the label
    randomized response each company applies once per task ("0": none).
    """

    epsilon_budget: str
    delta: str
    clip_norm: str
    noise_multiplier: str
    noise_mode: str
    unit: str
    sample_rate: str
    steps_per_round: int
    label_epsilon: str


class HESpec(TypedDict):
    """How a task's Paillier key is kept (``key_custody`` ``threshold`` or ``escrow``) and which company deals it.

    Under escrow custody ``master`` (required, a committee member) holds the whole key, and
    ``threshold`` (2 to the committee size) members rebuild it for a new master; a threshold task
    has no master. ``paillier_n`` and ``public_key_sha256`` are filled in by the dealer's
    ``DealKey``; a genesis must not carry them.
    """

    key_custody: str
    threshold: int
    committee_size: int
    dealer: str
    master: NotRequired[str]
    paillier_n: NotRequired[str]
    public_key_sha256: NotRequired[str]


class Genesis(TypedDict):
    """What a publisher fixes when it creates a task (``CreateTask``'s document).

    The publisher sits on no committee; each round's leader is elected among the committee
    (``leader_window_seconds`` of ledger time per ranked member); the dealer (``he.dealer``) may
    hold no other place in the task. An update claims at most ``max_samples`` samples and
    ``millis_per_sample`` of compute for each.
    """

    task_id: str
    model: ModelSpec
    rounds: int
    dp: DPSpec
    he: HESpec
    committee: list[str]
    quorum: int
    participants: list[str]
    min_participants: int
    seed0: str
    leader_window_seconds: int
    max_samples: int
    millis_per_sample: int
    initial_tokens: int
    reward_per_round: int
    penalty: int
    reputation_threshold: int
    reputation_gain: int


class MasterChange(TypedDict):
    """One failover of an escrow task's master: ``failed`` handed over to ``master``, in transaction
    ``tx_id`` at ``at`` (its timestamp, in seconds)."""

    master: str
    failed: str
    reason: str
    tx_id: str
    at: int


class TaskRecord(Genesis):
    """A task: its genesis and where it stands (``status``: awaiting-key -> active -> finished).

    An escrow task, once dealt, names its current ``master`` (``he.master`` until a failover) and
    its ``master_history``, oldest first.
    """

    publisher: str
    status: str
    current_round: int
    closed_rounds: int
    epsilon_spent_micro: int
    epsilon_budget_micro: int
    created_at: int
    master: NotRequired[str]
    master_history: NotRequired[list[MasterChange]]
    stakes: dict[str, int]


class AggregateRecord(TypedDict):
    sha256: str
    included: list[str]
    recorded_by: str
    tx_id: str


class LeaderFailover(TypedDict):
    """``failed``, ranked ``rank`` (1 = first), let its slot pass; ``successor`` recorded the aggregate."""

    failed: str
    rank: int
    successor: str
    at: int
    tx_id: str


class ElectionRecord(TypedDict):
    """A round's election: members ranked by the stake-weighted VRF sortition, and the failovers."""

    combined_seed: str
    ranking: list[str]
    stakes: dict[str, int]
    window_seconds: int
    closed_at: int
    failovers: NotRequired[list[LeaderFailover]]


class PenaltyRecord(TypedDict):
    company: str
    duty: str
    amount: int


class StandingRecord(TypedDict):
    """What a round did to companies' standing: penalties, demotions, reinstatements."""

    penalties: NotRequired[list[PenaltyRecord]]
    demoted: NotRequired[list[str]]
    reinstated: NotRequired[list[str]]


class RoundRecord(TypedDict):
    """One round of a task: open -> collected -> aggregated -> verified -> closed, or failed (rounds of
    chaincode 0.2.0 went through "collecting" while updates arrived)."""

    task_id: str
    number: int
    status: str
    seed: str
    leader: NotRequired[str]
    election: NotRequired[ElectionRecord]
    epsilon_after_micro: int
    updates: int
    collected: NotRequired[list[str]]
    aggregate: NotRequired[AggregateRecord]
    valid_votes: int
    invalid_votes: int
    decrypted_by: NotRequired[list[str]]
    model_sha256: NotRequired[str]
    failure_reason: NotRequired[str]
    standing: StandingRecord
    rewards: NotRequired[dict[str, int]]
    opened_at: int
    ended_at: NotRequired[int]


class ElectionProofRecord(TypedDict):
    """A committee member's VRF proof for a round and its output, both hex."""

    task_id: str
    round: int
    member: str
    proof: str
    output: str
    tx_id: str


class UpdateRecord(TypedDict):
    """A company's encrypted update of one round: its artifact's hash, never the ciphertext."""

    task_id: str
    round: int
    company: str
    artifact_sha256: str
    size_bytes: int
    samples: int
    compute_millis: int
    tx_id: str
    submitted_at: int


class VoteRecord(TypedDict):
    """A committee member's verdict; ``counted`` is false for a demoted member's, and
    ``partial_sha256`` the hash of its partial decryption of the aggregate, once given."""

    task_id: str
    round: int
    member: str
    valid: bool
    counted: bool
    reason: NotRequired[str]
    partial_sha256: NotRequired[str]
    tx_id: str


class ThresholdKeyRecord(TypedDict):
    """A task's threshold public key as its dealer dealt it (``public_key`` in base64)."""

    task_id: str
    dealer: str
    public_key: str
    public_key_sha256: str


class KeyShareRecord(TypedDict):
    """A committee member's key share, sealed to ``encryption_key`` (base64 ``sealed_share``);
    ``share_sha256`` is the dealer's hash of the share before sealing."""

    task_id: str
    member: str
    msp_id: str
    encryption_key: str
    sealed_share: str
    share_sha256: str
    dealer: str


class MasterKeyRecord(TypedDict):
    """An escrow task's private key as dealt, sealed to ``encryption_key``, the original master's
    key at deal time (base64 ``sealed_key``); ``key_sha256`` is the dealer's hash of the key before
    sealing."""

    task_id: str
    master: str
    msp_id: str
    encryption_key: str
    sealed_key: str
    key_sha256: str
    dealer: str


class EscrowReleaseRecord(TypedDict):
    """A member's escrow share released to ``master``, sealed to ``encryption_key`` (the master's key
    when the member released it); ``share_sha256`` is the commitment the dealer recorded."""

    task_id: str
    master: str
    member: str
    encryption_key: str
    sealed_share: str
    share_sha256: str
    tx_id: str


@dataclass(frozen=True, repr=False)
class SealedShare:
    """One committee member's key share as the dealer hands it to :meth:`Ledger.deal_key`.

    Also an escrow task's master key (``deal_key(master_key=...)``): ``member`` is then the master,
    ``sealed_share`` the sealed private key and ``share_sha256`` the key's SHA-256 before sealing.

    Parameters
    ----------
    member
        The committee member's company name.
    sealed_share
        The share sealed (a libsodium sealed box) to the encryption key the member recorded.
    share_sha256
        A SHA-256 hex digest of the share before sealing (e.g. ``KeyShare.digest()``, or
        ``EscrowShare.digest()``, the escrow's commitment), which the member checks once it has
        opened its box.
    """

    member: str
    sealed_share: bytes
    share_sha256: str

    def __repr__(self) -> str:
        return (f"SealedShare(member={self.member!r}, sealed_share=<{len(self.sealed_share)} bytes>, "
                f"share_sha256={self.share_sha256[:16]}...)")


class Change(TypedDict, Generic[Record]):
    """One committed write of a ledger key (its value absent when the write was a delete)."""

    tx_id: str
    timestamp: int
    is_delete: bool
    value: NotRequired[Record]


class CallerInfo(TypedDict):
    """How the chaincode sees the caller (``WhoAmI``); ``company`` is empty when unregistered."""

    admin: bool
    company: str
    fingerprint: str
    msp_id: str
    roles: list[str]


class VersionInfo(TypedDict):
    chaincode: str
    version: str


class Submitted(Protocol):
    """A transaction accepted for ordering (what :meth:`Contract.submit_async` returns)."""

    @property
    def tx_id(self) -> str: ...

    def status(self, *, timeout: float | None = None) -> Status: ...


class LedgerContract(Protocol):
    """The part of :class:`~fedledger.fabric.contract.Contract` the ledger facade uses."""

    def evaluate(self, name: str, args: Args = ()) -> bytes: ...

    def submit_async(self, name: str, args: Args = ()) -> Submitted: ...


def _floats_in(value: object, path: str) -> str | None:
    """The path of the first float in a JSON-like value (or of a non-string key), else None."""
    if isinstance(value, float):
        return path or "the document"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise FabricError(f"JSON object keys must be strings; {path or 'the document'} has key {key!r}")
            found = _floats_in(item, f"{path}.{key}" if path else key)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _floats_in(item, f"{path}[{i}]")
            if found:
                return found
    return None


def canonical_json(value: object, *, what: str = "the document") -> str:
    """``value`` as canonical JSON: keys sorted at every level, no whitespace, UTF-8 kept as is.

    Floats are refused: every peer must store the same bytes, and decimals on the ledger are
    fixed-point strings (``"0.25"``) or integers.

    Raises
    ------
    FabricError
        ``value`` holds a float, a non-string key, or something JSON cannot encode.
    """
    found = _floats_in(value, "")
    if found:
        raise FabricError(f"{what} holds a float at {found}; the ledger stores no floats: write decimals as "
                          f"fixed-point strings (\"0.25\") and counts as integers")
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise FabricError(f"{what} cannot be encoded as JSON: {err}") from None


def fixed_point(value: float | int | Decimal | str, *, what: str = "the value") -> str:
    """``value`` as the ledger's fixed-point decimal string, rounded up to 6 decimals.

    Floats are read by their shortest repr (``0.1`` is ``"0.1"``, not its binary expansion) and
    then rounded towards +infinity: a privacy cost is never booked lower than computed.

    Raises
    ------
    FabricError
        A negative, non-finite or too large value, or a string that is not a plain decimal.
    """
    if isinstance(value, bool):
        raise FabricError(f"{what} must be a number, not {value!r}")
    if isinstance(value, str):
        if not _FIXED_POINT.match(value):
            raise FabricError(f"{what} must be a decimal like 3 or 0.25 with at most 6 decimals, got {value!r}")
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value)) if math.isfinite(value) else Decimal(value)
    elif isinstance(value, (int, Decimal)):
        number = Decimal(value)
    else:
        raise FabricError(f"{what} must be a number or a decimal string, not {type(value).__name__}")
    if not number.is_finite():
        raise FabricError(f"{what} must be finite, got {value!r}")
    if number < 0:
        raise FabricError(f"{what} must not be negative, got {value!r}")
    if number > _FIXED_POINT_MAX:
        raise FabricError(f"{what} is too large for the ledger (at most {_FIXED_POINT_MAX}), got {value!r}")
    rounded = number.quantize(_FIXED_POINT_STEP, rounding=ROUND_CEILING)
    if rounded > _FIXED_POINT_MAX:
        raise FabricError(f"{what} is too large for the ledger (at most {_FIXED_POINT_MAX}), got {value!r}")
    if rounded == 0:
        return "0"  # never "-0"
    return format(rounded, "f").rstrip("0").rstrip(".")


def _integer(value: int, what: str) -> str:
    # bool is an int subclass, and str(True) is not a number the chaincode parses.
    if isinstance(value, bool) or not isinstance(value, int):
        raise FabricError(f"{what} must be an integer, not {value!r}")
    return str(value)


def _text(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise FabricError(f"{what} must be a string, not {type(value).__name__}")
    return value


def _base64(value: bytes, what: str) -> str:
    """Non-empty bytes as standard base64, the chaincode's form."""
    if not isinstance(value, bytes):
        raise FabricError(f"{what} must be bytes, not {type(value).__name__}")
    if not value:
        raise FabricError(f"{what} is empty")
    return base64.b64encode(value).decode("ascii")


def _decoded(text: object, task_id: str, what: str) -> bytes:
    """Base64 text read from the ledger, decoded; anything else is a :class:`KeyIntegrityError`."""
    if isinstance(text, str):
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error:
            pass
    raise KeyIntegrityError(task_id, what, "is not base64")


def _names(values: Sequence[str], what: str) -> list[str]:
    if isinstance(values, (str, bytes)) or not all(isinstance(v, str) for v in values):
        raise FabricError(f"{what} must be a list of company names, got {values!r}")
    return list(values)


# Validation codes of a transaction that lost a race for the same keys; resubmitting is safe.
_CONFLICTS = frozenset({"MVCC_READ_CONFLICT", "PHANTOM_READ_CONFLICT"})
_CONFLICT_ATTEMPTS = 8
# Seconds before the first retry, doubled each time (with jitter): a retry must be endorsed after the
# winner's block has committed on the endorsing peer, or it reads the same stale version and loses
# again. Blocks are cut after the channel's BatchTimeout (50 ms by default) at most; committee
# members voting at once write the same round record.
_CONFLICT_BACKOFF = 0.25


def _back_off(attempt: int) -> None:
    """Wait before endorsing again after ``attempt`` lost: twice as long each time, with jitter."""
    time.sleep(random.uniform(0.5, 1.0) * _CONFLICT_BACKOFF * 2 ** (attempt - 1))


@dataclass(frozen=True)
class LedgerUse:
    """What a :class:`Ledger` has cost so far: reads, committed writes, and the seconds spent in both."""

    reads: int = 0
    writes: int = 0
    seconds: float = 0.0

    def __sub__(self, earlier: LedgerUse) -> LedgerUse:
        return LedgerUse(self.reads - earlier.reads, self.writes - earlier.writes, self.seconds - earlier.seconds)


class Ledger:
    """The FedLedger chaincode as Python methods, for one client identity.

    Parameters
    ----------
    contract
        The ``fedledger`` chaincode on the channel, e.g.
        ``gateway.network("fedledger").contract("fedledger")``.
    commit_timeout
        Seconds a write waits for its commit; by default the gateway's ``commit_status_timeout``.
    after_commit
        Called with a write's block number once it is committed, e.g. to wait until every org's
        peer has that block (:func:`fedledger.fl.company.wait_for_block`).

    Every write returns its transaction id once committed as valid, and raises
    :class:`~fedledger.errors.EndorseError` when the chaincode refuses (nothing is ordered),
    :class:`~fedledger.errors.SubmitError` or :class:`~fedledger.errors.CommitStatusError` on the
    way to the ledger, and :class:`~fedledger.errors.CommitError` when it commits as invalid (e.g.
    ``MVCC_READ_CONFLICT``: another transaction changed what it read; submit it again). Every read
    raises :class:`~fedledger.errors.GatewayError` carrying the chaincode's message when it refuses.
    """

    def __init__(self, contract: LedgerContract, *, commit_timeout: float | None = None,
                 after_commit: Callable[[int], None] | None = None) -> None:
        self._contract = contract
        self._commit_timeout = commit_timeout
        self._after_commit = after_commit
        self._use = LedgerUse()
        self._use_lock = threading.Lock()

    @property
    def use(self) -> LedgerUse:
        """Reads, writes and seconds spent on the ledger so far (subtract two to time a step)."""
        return self._use

    def _count(self, started: float, *, write: bool) -> None:
        with self._use_lock:
            use = self._use
            self._use = LedgerUse(use.reads + (not write), use.writes + write,
                                  use.seconds + time.perf_counter() - started)

    def __repr__(self) -> str:
        return f"Ledger({self._contract!r})"

    # -- plumbing ----------------------------------------------------------------------------

    def _read(self, name: str, *args: str) -> object:
        started = time.perf_counter()
        try:
            raw = self._contract.evaluate(name, args)
        finally:
            self._count(started, write=False)
        try:
            return json.loads(raw)
        except ValueError:
            raise FabricError(f"{name} returned something that is not JSON: {raw[:120]!r}; is the chaincode "
                              f"on the channel FedLedger's?") from None

    def _write(self, name: str, *args: str) -> str:
        started = time.perf_counter()
        try:
            return self._write_once_valid(name, args)
        finally:
            self._count(started, write=True)

    def _write_once_valid(self, name: str, args: tuple[str, ...]) -> str:
        for attempt in range(1, _CONFLICT_ATTEMPTS + 1):
            try:
                submitted = self._contract.submit_async(name, args)
            except EndorsementMismatchError:
                # Two endorsing peers stood on either side of a block: nothing was ordered; endorse again.
                if attempt == _CONFLICT_ATTEMPTS:
                    raise
                _back_off(attempt)
                continue
            status = submitted.status(timeout=self._commit_timeout)
            if status.successful:
                break
            # Another transaction in the same block changed what this one read (companies
            # submitting to one round at once, say): it changed nothing, so endorse it afresh.
            if status.code not in _CONFLICTS or attempt == _CONFLICT_ATTEMPTS:
                raise CommitError(status.tx_id, status.code, block_number=status.block_number)
            _back_off(attempt)
        if self._after_commit is not None:
            # A write is committed on the gateway's own peer first; other orgs' peers may lag a
            # block behind, and the next step of a round may read through one of them.
            self._after_commit(status.block_number)
        return submitted.tx_id

    # -- companies ---------------------------------------------------------------------------

    def register_company(self, name: str, *, roles: Sequence[str], cert_fingerprint: str = "") -> str:
        """Register a company: the caller itself, or (as its org's admin) the certificate ``cert_fingerprint``.

        Parameters
        ----------
        name
            The company's ledger name (1-64 of ``a-z 0-9 . _ -``).
        roles
            A subset of ``participant``, ``committee``, ``publisher``, ``dealer``; registering itself, an
            identity may claim only roles its certificate's ``fedledger.role`` attribute carries.
        cert_fingerprint
            Hex SHA-256 of the certificate to register (see
            :func:`~fedledger.fabric.identity.certificate_fingerprint`); empty for the caller's own.
        """
        return self._write("RegisterCompany", _text(name, "the company name"),
                           ",".join(_names(roles, "roles")), _text(cert_fingerprint, "the certificate fingerprint"))

    def set_company_status(self, name: str, status: str) -> str:
        """Set a company's status to ``active``, ``demoted`` or ``revoked`` (an admin of its org only;
        revocation is final)."""
        return self._write("SetCompanyStatus", _text(name, "the company name"), _text(status, "the status"))

    def record_company_keys(self, *, encryption_key: str, node_key: str, vrf_key: str) -> str:
        """Record, or rotate, the caller's own company's public keys.

        Parameters
        ----------
        encryption_key
            The company's X25519 public key as 64 lower-case hex digits: dealers seal its key shares
            to it (e.g. ``bytes(nacl.public.PrivateKey.generate().public_key).hex()``).
        node_key
            Its Flower node's public key as text, PEM or one OpenSSH line (at most 1024 characters).
        vrf_key
            Its leader-election VRF public key (Ed25519) as 64 lower-case hex digits; fixed once recorded.

        A share already dealt stays sealed to the key it was dealt to; its record names that key.
        """
        return self._write("RecordCompanyKeys", _text(encryption_key, "encryption_key"), _text(node_key, "node_key"),
                           _text(vrf_key, "vrf_key"))

    def get_company(self, name: str) -> CompanyRecord:
        """A company's record."""
        return cast(CompanyRecord, self._read("GetCompany", _text(name, "the company name")))

    def list_companies(self) -> list[CompanyRecord]:
        """Every company's record, ordered by name."""
        return cast(list[CompanyRecord], self._read("ListCompanies"))

    # -- tasks -------------------------------------------------------------------------------

    def create_task(self, genesis: Genesis | Mapping[str, object]) -> str:
        """Create a task from its genesis document (as a company holding the publisher role).

        The document is sent as canonical JSON; decimal parameters (``dp.*``) must be fixed-point
        strings, never floats. The task then awaits its key: its dealer (``he.dealer``) must run
        :meth:`deal_key` before the first round opens.
        """
        if not isinstance(genesis, Mapping):
            raise FabricError(f"the task genesis must be a JSON object (a mapping), not {type(genesis).__name__}")
        return self._write("CreateTask", canonical_json(genesis, what="the task genesis"))

    def get_task(self, task_id: str) -> TaskRecord:
        """A task's genesis and state."""
        return cast(TaskRecord, self._read("GetTask", _text(task_id, "the task id")))

    # -- rounds ------------------------------------------------------------------------------

    def open_round(self, task_id: str, round_number: int) -> str:
        """Open the task's next round (its publisher only).

        The chaincode computes the epsilon the task will have spent once this round closes with its
        own accountant, and refuses a round past the budget; no client sends an epsilon.
        """
        return self._write("OpenRound", _text(task_id, "the task id"), _integer(round_number, "the round number"))

    def submit_election_proof(self, task_id: str, round_number: int, *, proof: bytes) -> str:
        """Record the caller's VRF proof on the round's seed (a committee member), to stand for leader."""
        if not isinstance(proof, bytes):
            raise FabricError(f"the election proof must be bytes, not {type(proof).__name__}")
        return self._write("SubmitElectionProof", _text(task_id, "the task id"),
                           _integer(round_number, "the round number"), proof.hex())

    def list_election_proofs(self, task_id: str, round_number: int) -> list[ElectionProofRecord]:
        """A round's election proofs, ordered by member."""
        return cast(list[ElectionProofRecord], self._read("GetElectionProofs", _text(task_id, "the task id"),
                                                          _integer(round_number, "the round number")))

    def close_collection(self, task_id: str, round_number: int) -> str:
        """End a round's collection (its publisher only): fix its updates and elect its leaders."""
        return self._write("CloseCollection", _text(task_id, "the task id"), _integer(round_number, "the round number"))

    def submit_update(self, task_id: str, round_number: int, *, artifact_sha256: str, size_bytes: int,
                      samples: int, compute_millis: int) -> str:
        """Record the caller's encrypted update of a round: its artifact's hash and size, its sample
        count and compute time (the basis of its reward)."""
        return self._write("SubmitUpdate", _text(task_id, "the task id"), _integer(round_number, "the round number"),
                           _text(artifact_sha256, "artifact_sha256"), _integer(size_bytes, "size_bytes"),
                           _integer(samples, "samples"), _integer(compute_millis, "compute_millis"))

    def record_aggregate(self, task_id: str, round_number: int, *, included: Sequence[str],
                         aggregate_sha256: str) -> str:
        """Record a round's aggregate (its leader only), naming the companies whose updates it sums."""
        return self._write("RecordAggregate", _text(task_id, "the task id"),
                           _integer(round_number, "the round number"),
                           canonical_json(_names(included, "included"), what="the included updates"),
                           _text(aggregate_sha256, "aggregate_sha256"))

    def vote(self, task_id: str, round_number: int, *, valid: bool, reason: str = "",
             partial_sha256: str = "") -> str:
        """Cast the caller's committee vote on a round's aggregate (a reason is required when invalid),
        with a valid vote the hash of the member's partial decryption of it (or "" to give it later)."""
        if not isinstance(valid, bool):
            raise FabricError(f"valid must be True or False, not {valid!r}")
        return self._write("Vote", _text(task_id, "the task id"), _integer(round_number, "the round number"),
                           "true" if valid else "false", _text(reason, "the reason"),
                           _text(partial_sha256, "partial_sha256"))

    def record_partial(self, task_id: str, round_number: int, *, partial_sha256: str) -> str:
        """Record the hash of the caller's partial decryption (or escrow opening) of a round's aggregate."""
        return self._write("RecordPartial", _text(task_id, "the task id"), _integer(round_number, "the round number"),
                           _text(partial_sha256, "partial_sha256"))

    def close_round(self, task_id: str, round_number: int, *, model_sha256: str,
                    decrypted_by: Sequence[str]) -> str:
        """Close a verified round with the new global model's hash and the members whose partial
        decryptions were combined (its publisher or leader); this books its epsilon and pays the rewards."""
        return self._write("CloseRound", _text(task_id, "the task id"), _integer(round_number, "the round number"),
                           _text(model_sha256, "model_sha256"),
                           canonical_json(_names(decrypted_by, "decrypted_by"), what="the decrypting members"))

    def fail_round(self, task_id: str, round_number: int, *, reason: str) -> str:
        """End a round that cannot complete (the task's publisher only)."""
        return self._write("FailRound", _text(task_id, "the task id"), _integer(round_number, "the round number"),
                           _text(reason, "the reason"))

    def get_round(self, task_id: str, round_number: int) -> RoundRecord:
        """A round's record."""
        return cast(RoundRecord, self._read("GetRound", _text(task_id, "the task id"),
                                            _integer(round_number, "the round number")))

    def list_updates(self, task_id: str, round_number: int) -> list[UpdateRecord]:
        """A round's update records, ordered by company."""
        return cast(list[UpdateRecord], self._read("ListUpdates", _text(task_id, "the task id"),
                                                   _integer(round_number, "the round number")))

    def list_votes(self, task_id: str, round_number: int) -> list[VoteRecord]:
        """A round's committee votes, ordered by member."""
        return cast(list[VoteRecord], self._read("ListVotes", _text(task_id, "the task id"),
                                                 _integer(round_number, "the round number")))

    # -- key custody -------------------------------------------------------------------------

    def deal_key(self, task_id: str, *, paillier_n: str, public_key: bytes, shares: Sequence[SealedShare],
                 master_key: SealedShare | None = None) -> str:
        """Deal a task's key (as the task's dealer, once, while the task awaits its key).

        Parameters
        ----------
        paillier_n
            The Paillier modulus in lower-case hex; the task's ``he.paillier_n`` from then on.
        public_key
            The public key's bytes: the threshold public key (e.g. ``dump_threshold_key``), or an
            escrow task's Paillier public key; sent in base64 with its SHA-256, which the chaincode
            checks and records as ``he.public_key_sha256``.
        shares
            One :class:`SealedShare` per committee member, in any order, each sealed to the
            encryption key the member recorded: its threshold key share, or under escrow custody
            its escrow share (e.g. ``dump_escrow_share``) with the escrow's commitment as
            ``share_sha256``.
        master_key
            Required for an escrow task, refused for a threshold task: the private key (e.g.
            ``dump_private_key``) sealed to the master's recorded encryption key, as a
            :class:`SealedShare` whose ``member`` is the master and ``share_sha256`` the key's SHA-256.

        Raises
        ------
        FabricError
            An argument of the wrong type, before anything is sent.
        """
        if not isinstance(paillier_n, str) or not re.fullmatch(r"[0-9a-f]+", paillier_n):
            raise FabricError("paillier_n must be the Paillier modulus in lower-case hex")
        if isinstance(shares, (str, bytes)) or not all(isinstance(s, SealedShare) for s in shares):
            raise FabricError(f"shares must be a sequence of SealedShare, got {shares!r:.80}")
        if master_key is not None and not isinstance(master_key, SealedShare):
            raise FabricError(f"master_key must be a SealedShare (member: the master), not {type(master_key).__name__}")
        document: dict[str, object] = {
            "paillier_n": paillier_n,
            "public_key": _base64(public_key, "public_key"),
            "public_key_sha256": hashlib.sha256(public_key).hexdigest(),
            "shares": [{"member": _text(s.member, "a share's member"),
                        "sealed_share": _base64(s.sealed_share, f"the sealed share of {s.member}"),
                        "share_sha256": _text(s.share_sha256, f"share_sha256 of {s.member}")} for s in shares],
        }
        if master_key is not None:
            # The chaincode seals nothing and knows the master: only the box and its hash are sent.
            _text(master_key.member, "the master key's member")
            document["master_key"] = {"sealed_key": _base64(master_key.sealed_share, "the sealed master key"),
                                      "key_sha256": _text(master_key.share_sha256, "key_sha256")}
        return self._write("DealKey", _text(task_id, "the task id"), canonical_json(document, what="the deal"))

    def get_threshold_key(self, task_id: str) -> bytes:
        """A task's threshold public key (the bytes the dealer dealt), checked against its recorded SHA-256.

        Raises
        ------
        KeyIntegrityError
            The key read back is not base64 or does not match ``public_key_sha256``.
        """
        document = self._read("GetThresholdKey", _text(task_id, "the task id"))
        if not isinstance(document, dict):
            raise KeyIntegrityError(task_id, "threshold public key", "is not a JSON object")
        record = cast(ThresholdKeyRecord, document)
        key = _decoded(record.get("public_key"), task_id, "threshold public key")
        expected = record.get("public_key_sha256")
        actual = hashlib.sha256(key).hexdigest()
        if actual != expected:
            raise KeyIntegrityError(task_id, "threshold public key",
                                    f"has SHA-256 {actual}, not the recorded {expected}")
        return key

    def get_key_share_record(self, task_id: str, member: str) -> KeyShareRecord:
        """A committee member's key share record: its sealed share (base64), what it is sealed to, and the dealer."""
        return cast(KeyShareRecord, self._read("GetKeyShareRecord", _text(task_id, "the task id"),
                                               _text(member, "the member")))

    def sealed_share(self, task_id: str, member: str) -> bytes:
        """A committee member's sealed key share, decoded: a sealed box only that member's key opens.

        Raises
        ------
        KeyIntegrityError
            The record's ``sealed_share`` is not base64.
        """
        document: object = self.get_key_share_record(task_id, member)
        if not isinstance(document, dict):
            raise KeyIntegrityError(task_id, f"sealed share of {member}", "is not a JSON object")
        return _decoded(document.get("sealed_share"), task_id, f"sealed share of {member}")

    # -- escrow custody ----------------------------------------------------------------------

    def get_master_key_record(self, task_id: str) -> MasterKeyRecord:
        """An escrow task's master key record: the private key sealed to the original master (base64),
        what it is sealed to, its hash, and the dealer."""
        return cast(MasterKeyRecord, self._read("GetMasterKeyRecord", _text(task_id, "the task id")))

    def sealed_master_key(self, task_id: str) -> bytes:
        """An escrow task's sealed private key, decoded: a sealed box only the original master's key opens.

        Raises
        ------
        KeyIntegrityError
            The record's ``sealed_key`` is not base64.
        """
        document: object = self.get_master_key_record(task_id)
        if not isinstance(document, dict):
            raise KeyIntegrityError(task_id, "sealed master key", "is not a JSON object")
        return _decoded(document.get("sealed_key"), task_id, "sealed master key")

    def failover_master(self, task_id: str, *, reason: str) -> str:
        """Hand an active escrow task's key to a new master (the task's publisher only).

        The new master is the next committee member after the current one, in the genesis's order,
        that has never been master, is active and has recorded an encryption key; the chaincode
        refuses when there is none. ``reason`` (1-512 characters) is recorded in the task's
        ``master_history``.
        """
        return self._write("FailoverMaster", _text(task_id, "the task id"), _text(reason, "the reason"))

    def release_escrow_share(self, task_id: str, *, master: str, sealed_share: bytes, share_sha256: str) -> str:
        """Release the caller's escrow share of a task to the master that took over after a failover.

        Parameters
        ----------
        master
            The task's current master (``get_task(task_id)["master"]``); a release to an earlier
            master is refused.
        sealed_share
            The caller's escrow share, sealed to the current master's recorded encryption key.
        share_sha256
            The share's commitment, which must be the ``share_sha256`` the dealer recorded for the
            caller (its key share record).

        A member releases once to each master, and the master releases none to itself.
        """
        document = {"master": _text(master, "the master"),
                    "sealed_share": _base64(sealed_share, "the sealed escrow share"),
                    "share_sha256": _text(share_sha256, "share_sha256")}
        return self._write("ReleaseEscrowShare", _text(task_id, "the task id"),
                           canonical_json(document, what="the release"))

    def list_escrow_releases(self, task_id: str) -> list[EscrowReleaseRecord]:
        """The escrow shares released to an escrow task's current master, ordered by member."""
        return cast(list[EscrowReleaseRecord], self._read("ListEscrowReleases", _text(task_id, "the task id")))

    # -- audit -------------------------------------------------------------------------------

    def get_task_history(self, task_id: str) -> list[Change[TaskRecord]]:
        """Every committed change to a task's record, oldest first."""
        return cast(list[Change[TaskRecord]], self._read("GetTaskHistory", _text(task_id, "the task id")))

    def get_round_history(self, task_id: str, round_number: int) -> list[Change[RoundRecord]]:
        """Every committed change to a round's record, oldest first."""
        return cast(list[Change[RoundRecord]], self._read("GetRoundHistory", _text(task_id, "the task id"),
                                                          _integer(round_number, "the round number")))

    def get_update_history(self, task_id: str, round_number: int, company: str) -> list[Change[UpdateRecord]]:
        """Every committed change to a company's update record of a round, oldest first."""
        return cast(list[Change[UpdateRecord]], self._read(
            "GetUpdateHistory", _text(task_id, "the task id"), _integer(round_number, "the round number"),
            _text(company, "the company")))

    def get_company_history(self, name: str) -> list[Change[CompanyRecord]]:
        """Every committed change to a company's record, oldest first."""
        return cast(list[Change[CompanyRecord]], self._read("GetCompanyHistory", _text(name, "the company name")))

    # -- identity and health -----------------------------------------------------------------

    def version(self) -> VersionInfo:
        """The chaincode's name and version."""
        return cast(VersionInfo, self._read("Version"))

    def who_am_i(self) -> CallerInfo:
        """How the chaincode sees the caller: MSP id, certificate fingerprint, roles, admin, company."""
        return cast(CallerInfo, self._read("WhoAmI"))
