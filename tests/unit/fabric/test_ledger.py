"""Unit tests of the ledger facade: what each call sends to the chaincode, and how results and commits come back.

The facade is driven through a recording contract (its seam, :class:`LedgerContract`): nothing here
reaches gRPC or a peer; tests/integration/test_ledger.py runs the same calls on real peers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.errors import CommitError, FabricError
from fedledger.fabric import Ledger, Status
from fedledger.fabric.ledger import TRANSIENT_KEY_SHARE, canonical_json, fixed_point
from fedledger.fabric.proposal import Args, Transient

WHO = {"admin": False, "company": "bolt", "fingerprint": "f" * 64, "msp_id": "WarehouseMSP",
       "roles": ["committee", "participant"]}
# What the chaincode's parseMicro accepts (chaincode/ledger/contract.go).
GO_FIXED_POINT = re.compile(r"^[0-9]+(\.[0-9]{1,6})?$")


@dataclass(frozen=True)
class Call:
    """One call the facade made: evaluate or submit, with exactly what it would send."""

    kind: str
    name: str
    args: tuple[str | bytes, ...]
    transient: dict[str, str | bytes] | None = None
    endorsing_organizations: tuple[str, ...] | None = None


@dataclass
class Submitted:
    tx_id: str
    code: str = "VALID"
    timeouts: list[float | None] = field(default_factory=list)

    def status(self, *, timeout: float | None = None) -> Status:
        self.timeouts.append(timeout)
        return Status(self.code, 7, self.tx_id)


@dataclass
class RecordingContract:
    """Answers evaluations from ``results`` and commits every submission with ``code``."""

    results: dict[str, bytes] = field(default_factory=dict)
    code: str = "VALID"
    calls: list[Call] = field(default_factory=list)
    submitted: list[Submitted] = field(default_factory=list)

    def evaluate(self, name: str, args: Args = (), *, transient: Transient | None = None,
                 endorsing_organizations: Sequence[str] | None = None) -> bytes:
        self.calls.append(Call("evaluate", name, tuple(args)))
        return self.results.get(name, b"{}")

    def submit_async(self, name: str, args: Args = (), *, transient: Transient | None = None,
                     endorsing_organizations: Sequence[str] | None = None) -> Submitted:
        orgs = tuple(endorsing_organizations) if endorsing_organizations is not None else None
        self.calls.append(Call("submit", name, tuple(args), dict(transient) if transient else None, orgs))
        self.submitted.append(Submitted(f"tx{len(self.submitted) + 1}", self.code))
        return self.submitted[-1]


@pytest.fixture
def contract() -> RecordingContract:
    return RecordingContract(results={"WhoAmI": json.dumps(WHO).encode()})


def genesis() -> dict[str, object]:
    return {
        "task_id": "mnist-1", "rounds": 2, "quorum": 2,
        "dp": {"noise_mode": "central", "epsilon_budget": "3", "delta": "0.00001"},
        "committee": ["cargo", "acme", "bolt"], "model": {"description": "CNN – MNIST"},
    }


# -- what each write sends -----------------------------------------------------------------

WRITES: list[tuple[str, Callable[[Ledger], str], str, tuple[str, ...]]] = [
    ("register itself",
     lambda ledger: ledger.register_company("bolt", roles=["participant", "committee"]),
     "RegisterCompany", ("bolt", "participant,committee", "")),
    ("register by fingerprint",
     lambda ledger: ledger.register_company("dock", roles=["participant"], cert_fingerprint="ab" * 32),
     "RegisterCompany", ("dock", "participant", "ab" * 32)),
    ("status",
     lambda ledger: ledger.set_company_status("bolt", "revoked"),
     "SetCompanyStatus", ("bolt", "revoked")),
    ("open",
     lambda ledger: ledger.open_round("t", 2, epsilon_after=1.5),
     "OpenRound", ("t", "2", "1.5")),
    ("update",
     lambda ledger: ledger.submit_update("t", 1, artifact_sha256="a" * 64, size_bytes=4096, samples=100,
                                         compute_millis=0),
     "SubmitUpdate", ("t", "1", "a" * 64, "4096", "100", "0")),
    ("aggregate",
     lambda ledger: ledger.record_aggregate("t", 1, included=["cargo", "bolt"], aggregate_sha256="b" * 64),
     "RecordAggregate", ("t", "1", '["cargo","bolt"]', "b" * 64)),
    ("valid vote",
     lambda ledger: ledger.vote("t", 1, valid=True),
     "Vote", ("t", "1", "true", "")),
    ("invalid vote",
     lambda ledger: ledger.vote("t", 1, valid=False, reason="hash mismatch"),
     "Vote", ("t", "1", "false", "hash mismatch")),
    ("close",
     lambda ledger: ledger.close_round("t", 1, model_sha256="c" * 64),
     "CloseRound", ("t", "1", "c" * 64)),
    ("fail",
     lambda ledger: ledger.fail_round("t", 1, reason="stalled"),
     "FailRound", ("t", "1", "stalled")),
]


@pytest.mark.parametrize(("write", "name", "args"), [w[1:] for w in WRITES], ids=[w[0] for w in WRITES])
def test_each_write_sends_its_arguments_as_the_chaincode_parses_them_and_returns_the_tx_id(
        contract: RecordingContract, write: Callable[[Ledger], str], name: str, args: tuple[str, ...]) -> None:
    tx_id = write(Ledger(contract))

    assert contract.calls == [Call("submit", name, args)]
    assert tx_id == "tx1"


def test_a_genesis_is_sent_as_canonical_json(contract: RecordingContract) -> None:
    Ledger(contract).create_task(genesis())

    (call,) = contract.calls
    assert call.name == "CreateTask"
    assert call.args == ('{"committee":["cargo","acme","bolt"],"dp":{"delta":"0.00001","epsilon_budget":"3",'
                         '"noise_mode":"central"},"model":{"description":"CNN – MNIST"},"quorum":2,"rounds":2,'
                         '"task_id":"mnist-1"}',)


def test_a_genesis_with_a_float_is_refused_before_anything_is_sent(contract: RecordingContract) -> None:
    document = genesis()
    document["dp"] = {"epsilon_budget": 0.5}

    with pytest.raises(FabricError, match=r"float at dp\.epsilon_budget.*fixed-point strings"):
        Ledger(contract).create_task(document)
    assert contract.calls == []


def test_a_write_waits_for_its_commit_and_an_invalid_commit_raises_with_its_code() -> None:
    contract = RecordingContract(code="ENDORSEMENT_POLICY_FAILURE")
    ledger = Ledger(contract, commit_timeout=12.5)

    with pytest.raises(CommitError, match="ENDORSEMENT_POLICY_FAILURE") as caught:
        ledger.vote("t", 1, valid=True)

    assert (caught.value.tx_id, caught.value.code, caught.value.block_number) == (
        "tx1", "ENDORSEMENT_POLICY_FAILURE", 7)
    assert contract.submitted[0].timeouts == [12.5]
    assert len(contract.submitted) == 1  # not a conflict: not resubmitted


def test_a_write_that_loses_a_read_conflict_is_endorsed_again_and_gives_up_after_five() -> None:
    contract = RecordingContract(code="MVCC_READ_CONFLICT")
    ledger = Ledger(contract)

    with pytest.raises(CommitError, match="MVCC_READ_CONFLICT; another transaction") as caught:
        ledger.vote("t", 1, valid=True)

    assert len(contract.submitted) == 5
    assert caught.value.tx_id == "tx5"


@pytest.mark.parametrize("call", [
    lambda ledger: ledger.open_round("t", True, epsilon_after=1),
    lambda ledger: ledger.submit_update("t", 1, artifact_sha256="a" * 64, size_bytes=1.5, samples=1, compute_millis=1),
    lambda ledger: ledger.record_aggregate("t", 1, included="bolt", aggregate_sha256="b" * 64),
    lambda ledger: ledger.vote("t", 1, valid="yes"),
    lambda ledger: ledger.register_company("bolt", roles="participant"),
    lambda ledger: ledger.create_task([("task_id", "t")]),
], ids=["bool round", "float size", "included as a string", "non-bool vote", "roles as a string", "genesis list"])
def test_arguments_of_the_wrong_type_are_refused_before_anything_is_sent(
        contract: RecordingContract, call: Callable[[Ledger], str]) -> None:
    with pytest.raises(FabricError):
        call(Ledger(contract))
    assert contract.calls == []


# -- key custody ---------------------------------------------------------------------------


def test_a_key_share_goes_only_in_the_transient_map_to_the_named_organizations(contract: RecordingContract) -> None:
    share = b"\x00share\xff"

    Ledger(contract).store_key_share("t", share, endorsing_organizations=["WarehouseMSP", "CarrierMSP"])

    store = contract.calls[-1]
    assert store == Call("submit", "StoreKeyShare", ("t",), {TRANSIENT_KEY_SHARE: share},
                         ("WarehouseMSP", "CarrierMSP"))
    assert all(share not in arg for arg in store.args if isinstance(arg, bytes))


def test_a_key_share_not_endorsed_by_the_callers_own_organization_is_refused(contract: RecordingContract) -> None:
    ledger = Ledger(contract)

    with pytest.raises(FabricError, match="must include the caller's own organization WarehouseMSP"):
        ledger.store_key_share("t", b"share", endorsing_organizations=["ManufacturerMSP", "CarrierMSP"])
    with pytest.raises(FabricError, match="non-empty bytes"):
        ledger.store_key_share("t", b"", endorsing_organizations=["WarehouseMSP"])
    assert all(call.kind == "evaluate" for call in contract.calls)


def test_a_key_share_read_back_is_decoded_and_checked_against_its_hash() -> None:
    share = b"threshold share"
    good = {"key_share": base64.b64encode(share).decode(), "sha256": hashlib.sha256(share).hexdigest()}
    bad = {**good, "sha256": "0" * 64}

    assert Ledger(RecordingContract({"ReadKeyShare": json.dumps(good).encode()})).read_key_share("t") == share
    with pytest.raises(FabricError, match="does not match its hash"):
        Ledger(RecordingContract({"ReadKeyShare": json.dumps(bad).encode()})).read_key_share("t")
    with pytest.raises(FabricError, match="unexpected document"):
        Ledger(RecordingContract({"ReadKeyShare": b"[]"})).read_key_share("t")


# -- reads ---------------------------------------------------------------------------------

READS: list[tuple[Callable[[Ledger], object], str, tuple[str, ...]]] = [
    (lambda ledger: ledger.get_company("bolt"), "GetCompany", ("bolt",)),
    (lambda ledger: ledger.list_companies(), "ListCompanies", ()),
    (lambda ledger: ledger.get_task("t"), "GetTask", ("t",)),
    (lambda ledger: ledger.get_round("t", 3), "GetRound", ("t", "3")),
    (lambda ledger: ledger.list_updates("t", 3), "ListUpdates", ("t", "3")),
    (lambda ledger: ledger.list_votes("t", 3), "ListVotes", ("t", "3")),
    (lambda ledger: ledger.get_key_share_record("t", "bolt"), "GetKeyShareRecord", ("t", "bolt")),
    (lambda ledger: ledger.get_task_history("t"), "GetTaskHistory", ("t",)),
    (lambda ledger: ledger.get_round_history("t", 3), "GetRoundHistory", ("t", "3")),
    (lambda ledger: ledger.get_update_history("t", 3, "bolt"), "GetUpdateHistory", ("t", "3", "bolt")),
    (lambda ledger: ledger.get_company_history("bolt"), "GetCompanyHistory", ("bolt",)),
    (lambda ledger: ledger.version(), "Version", ()),
    (lambda ledger: ledger.who_am_i(), "WhoAmI", ()),
]


@pytest.mark.parametrize(("read", "name", "args"), READS, ids=[r[1] for r in READS])
def test_each_read_is_evaluated_and_its_json_parsed(read: Callable[[Ledger], object], name: str,
                                                    args: tuple[str, ...]) -> None:
    document = [{"name": "bolt", "reputation": 1000}]
    contract = RecordingContract({name: json.dumps(document).encode()})

    assert read(Ledger(contract)) == document
    assert contract.calls == [Call("evaluate", name, args)]


def test_a_read_that_is_not_json_names_the_transaction() -> None:
    with pytest.raises(FabricError, match="GetTask returned something that is not JSON"):
        Ledger(RecordingContract({"GetTask": b"<html>"})).get_task("t")


# -- canonical JSON and fixed point --------------------------------------------------------


def test_canonical_json_sorts_keys_at_every_level_and_keeps_text_as_is() -> None:
    assert canonical_json({"b": [{"z": 1, "a": None}], "a": "é"}) == '{"a":"é","b":[{"a":null,"z":1}]}'
    with pytest.raises(FabricError, match=r"float at b\[1\]"):
        canonical_json({"b": [1, 2.0]})
    with pytest.raises(FabricError, match="keys must be strings"):
        canonical_json({1: "x"})
    with pytest.raises(FabricError, match="cannot be encoded"):
        canonical_json({"x": object()})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_canonical_json_round_trips_and_does_not_depend_on_key_order(value: object) -> None:
    text = canonical_json(value)

    assert json.loads(text) == value
    if isinstance(value, dict):
        assert canonical_json(dict(reversed(list(value.items())))) == text


@pytest.mark.parametrize(("value", "expected"), [
    (3, "3"), (0, "0"), (-0.0, "0"), (0.25, "0.25"), (0.1, "0.1"), (100, "100"), ("0.5", "0.5"), ("7", "7"),
    (1.0000001, "1.000001"), (4.241347001, "4.241348"), (Decimal("2.5000001"), "2.500001"),
    (Decimal("1E+2"), "100"), (4294967295, "4294967295"),
])
def test_fixed_point_rounds_up_to_six_decimals(value: float | int | Decimal | str, expected: str) -> None:
    assert fixed_point(value) == expected


@pytest.mark.parametrize("value", [-1, -0.5, math.nan, math.inf, Decimal("NaN"), True, "1e3", "-1", ".5", "5.",
                                   "0.0000001", 2**32, 4294967295.5])
def test_fixed_point_refuses_what_the_ledger_cannot_hold(value: float | int | Decimal | str) -> None:
    with pytest.raises(FabricError):
        fixed_point(value)


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False))
def test_fixed_point_never_books_less_than_the_value_and_at_most_a_millionth_more(value: float) -> None:
    text = fixed_point(value)

    exact, booked = Fraction(Decimal(repr(value))), Fraction(text)
    assert GO_FIXED_POINT.match(text)
    assert exact <= booked < exact + Fraction(1, 1_000_000)
