"""A typed facade over the FedLedger chaincode: one method per transaction, JSON in and out.

Reads are evaluated on one peer and return the chaincode's JSON, parsed (records are typed below as
they are on the ledger). Writes are endorsed, ordered and waited for; they return the transaction
id once it has committed as valid; one that loses a read conflict to a concurrent transaction
(``MVCC_READ_CONFLICT``) changed nothing and is endorsed and submitted again, up to five times.
The chaincode's refusals are not rewrapped: an
:class:`~fedledger.errors.EndorseError` (a write) or :class:`~fedledger.errors.GatewayError` (a read)
carries the chaincode's message verbatim.

Arguments this module serializes are canonical JSON (sorted keys, no whitespace, no floats), the
form the chaincode stores, and decimals are fixed-point strings: ``epsilon_after`` is rounded *up*
to the ledger's 6 decimals, so the ledger never books less privacy spent than the accountant
computed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import time
import math
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_CEILING, Decimal
from typing import Generic, NotRequired, Protocol, TypedDict, TypeVar, cast

from fedledger.errors import CommitError, FabricError
from fedledger.fabric.commit import Status
from fedledger.fabric.proposal import Args, Transient

# The transient-map key the chaincode reads a key share from (chaincode/ledger/custody.go).
TRANSIENT_KEY_SHARE = "key_share"

# Decimals of the ledger's fixed-point numbers: the chaincode keeps epsilon in millionths.
FIXED_POINT_DECIMALS = 6
# The whole part of a fixed-point number is parsed as a uint32 by the chaincode.
_FIXED_POINT_MAX = Decimal(2**32 - 1)
_FIXED_POINT_STEP = Decimal(1).scaleb(-FIXED_POINT_DECIMALS)
_FIXED_POINT = re.compile(r"^[0-9]+(\.[0-9]{1,6})?$")

Record = TypeVar("Record")


class CompanyRecord(TypedDict):
    """A consortium member's identity and standing (reputation in thousandths)."""

    name: str
    msp_id: str
    cert_fingerprint: str
    roles: list[str]
    status: str
    reputation: int
    stake: int
    tokens: int


class ModelSpec(TypedDict):
    description: str
    initial_weights_sha256: str


class DPSpec(TypedDict):
    """Differential-privacy parameters; decimals are fixed-point strings."""

    epsilon_budget: str
    delta: str
    clip_norm: str
    noise_multiplier: str
    noise_mode: str


class HESpec(TypedDict):
    paillier_n: str
    key_custody: str
    threshold: int
    committee_size: int


class Genesis(TypedDict):
    """What a publisher fixes when it creates a task (``CreateTask``'s document)."""

    task_id: str
    model: ModelSpec
    rounds: int
    dp: DPSpec
    he: HESpec
    committee: list[str]
    quorum: int
    aggregator: str
    participants: list[str]
    min_participants: int
    seed0: str
    initial_tokens: int
    reward_per_round: int
    penalty: int
    reputation_threshold: int


class TaskRecord(Genesis):
    """A task: its genesis and where it stands."""

    publisher: str
    status: str
    current_round: int
    epsilon_spent_micro: int
    epsilon_budget_micro: int
    created_at: int


class AggregateRecord(TypedDict):
    sha256: str
    included: list[str]
    recorded_by: str
    tx_id: str


class RoundRecord(TypedDict):
    """One round of a task: open -> collecting -> aggregated -> verified -> closed, or failed."""

    task_id: str
    number: int
    status: str
    leader: str
    epsilon_after_micro: int
    updates: int
    aggregate: NotRequired[AggregateRecord]
    valid_votes: int
    invalid_votes: int
    model_sha256: NotRequired[str]
    failure_reason: NotRequired[str]
    opened_at: int
    ended_at: NotRequired[int]


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
    task_id: str
    round: int
    member: str
    valid: bool
    reason: NotRequired[str]
    tx_id: str


class KeyShareRecord(TypedDict):
    """The public trace of a committee member's key share: its SHA-256, never the share."""

    task_id: str
    member: str
    msp_id: str
    sha256: str


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

    def evaluate(self, name: str, args: Args = (), *, transient: Transient | None = None,
                 endorsing_organizations: Sequence[str] | None = None) -> bytes: ...

    def submit_async(self, name: str, args: Args = (), *, transient: Transient | None = None,
                     endorsing_organizations: Sequence[str] | None = None) -> Submitted: ...


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


def _names(values: Sequence[str], what: str) -> list[str]:
    if isinstance(values, (str, bytes)) or not all(isinstance(v, str) for v in values):
        raise FabricError(f"{what} must be a list of company names, got {values!r}")
    return list(values)


# Validation codes of a transaction that lost a race for the same keys; resubmitting is safe.
_CONFLICTS = frozenset({"MVCC_READ_CONFLICT", "PHANTOM_READ_CONFLICT"})
_CONFLICT_ATTEMPTS = 5


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

    def __repr__(self) -> str:
        return f"Ledger({self._contract!r})"

    # -- plumbing ----------------------------------------------------------------------------

    def _read(self, name: str, *args: str) -> object:
        raw = self._contract.evaluate(name, args)
        try:
            return json.loads(raw)
        except ValueError:
            raise FabricError(f"{name} returned something that is not JSON: {raw[:120]!r}; is the chaincode "
                              f"on the channel FedLedger's?") from None

    def _write(self, name: str, *args: str, transient: Transient | None = None,
               endorsing_organizations: Sequence[str] | None = None) -> str:
        for attempt in range(1, _CONFLICT_ATTEMPTS + 1):
            submitted = self._contract.submit_async(name, args, transient=transient,
                                                    endorsing_organizations=endorsing_organizations)
            status = submitted.status(timeout=self._commit_timeout)
            if status.successful:
                break
            # Another transaction in the same block changed what this one read (companies
            # submitting to one round at once, say): it changed nothing, so endorse it afresh.
            if status.code not in _CONFLICTS or attempt == _CONFLICT_ATTEMPTS:
                raise CommitError(status.tx_id, status.code, block_number=status.block_number)
            time.sleep(random.uniform(0.0, 0.05 * attempt))
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
            A subset of ``participant``, ``committee``, ``publisher``; registering itself, an identity
            may claim only roles its certificate's ``fedledger.role`` attribute carries.
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
        strings, never floats.
        """
        if not isinstance(genesis, Mapping):
            raise FabricError(f"the task genesis must be a JSON object (a mapping), not {type(genesis).__name__}")
        return self._write("CreateTask", canonical_json(genesis, what="the task genesis"))

    def get_task(self, task_id: str) -> TaskRecord:
        """A task's genesis and state."""
        return cast(TaskRecord, self._read("GetTask", _text(task_id, "the task id")))

    # -- rounds ------------------------------------------------------------------------------

    def open_round(self, task_id: str, round_number: int, *, epsilon_after: float | int | Decimal | str) -> str:
        """Open the task's next round (its publisher only).

        Parameters
        ----------
        epsilon_after
            The task's cumulative epsilon once this round closes, e.g.
            ``RdpAccountant.epsilon_after(steps, delta=...)``; sent rounded up to 6 decimals. A round
            that would pass the task's budget is refused.
        """
        return self._write("OpenRound", _text(task_id, "the task id"), _integer(round_number, "the round number"),
                           fixed_point(epsilon_after, what="epsilon_after"))

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

    def vote(self, task_id: str, round_number: int, *, valid: bool, reason: str = "") -> str:
        """Cast the caller's committee vote on a round's aggregate (a reason is required when invalid)."""
        if not isinstance(valid, bool):
            raise FabricError(f"valid must be True or False, not {valid!r}")
        return self._write("Vote", _text(task_id, "the task id"), _integer(round_number, "the round number"),
                           "true" if valid else "false", _text(reason, "the reason"))

    def close_round(self, task_id: str, round_number: int, *, model_sha256: str) -> str:
        """Close a verified round with the new global model's hash (its publisher or leader); this
        books its epsilon and pays the rewards."""
        return self._write("CloseRound", _text(task_id, "the task id"), _integer(round_number, "the round number"),
                           _text(model_sha256, "model_sha256"))

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

    def store_key_share(self, task_id: str, share: bytes, *, endorsing_organizations: Sequence[str]) -> str:
        """Store the caller's key share for a task in its own organization's private data.

        The share travels in the transient map, never in a block; the public ledger records only
        its SHA-256, and only the caller's organization's peers keep the share.

        Parameters
        ----------
        endorsing_organizations
            The MSP ids whose peers endorse: the caller's own (its peers keep the share only if they
            endorse it) and enough others for the endorsement policy. Every endorsing peer sees the
            share in memory, so name only organizations trusted with it; the gateway will not choose
            them for a transaction that carries private data.

        Raises
        ------
        FabricError
            An empty share, or ``endorsing_organizations`` without the caller's own organization.
        """
        if not isinstance(share, bytes) or not share:
            raise FabricError("a key share must be non-empty bytes")
        organizations = _names(endorsing_organizations, "endorsing_organizations")
        own = self.who_am_i()["msp_id"]
        if own not in organizations:
            raise FabricError(f"endorsing_organizations {organizations} must include the caller's own organization "
                              f"{own}: only its peers keep the key share, and they get it only by endorsing")
        return self._write("StoreKeyShare", _text(task_id, "the task id"), transient={TRANSIENT_KEY_SHARE: share},
                           endorsing_organizations=organizations)

    def read_key_share(self, task_id: str) -> bytes:
        """The caller's own key share for a task, read from its organization's peer and checked
        against the hash on the public ledger."""
        document = self._read("ReadKeyShare", _text(task_id, "the task id"))
        try:
            if not isinstance(document, dict):
                raise KeyError("key_share")
            share = base64.b64decode(str(document["key_share"]), validate=True)
            expected = str(document["sha256"])
        except (KeyError, binascii.Error):
            raise FabricError(f"ReadKeyShare returned an unexpected document for task {task_id}") from None
        if hashlib.sha256(share).hexdigest() != expected:
            raise FabricError(f"the key share read back for task {task_id} does not match its hash {expected} "
                              f"on the ledger")
        return share

    def get_key_share_record(self, task_id: str, member: str) -> KeyShareRecord:
        """The public record (hash) of a committee member's key share."""
        return cast(KeyShareRecord, self._read("GetKeyShareRecord", _text(task_id, "the task id"),
                                               _text(member, "the member")))

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
