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
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.errors import CommitError, FabricError, KeyIntegrityError
from fedledger.fabric import Ledger, Status
from fedledger.fabric.ledger import SealedShare, canonical_json, fixed_point
from fedledger.fabric.proposal import Args

WHO = {"admin": False, "company": "bolt", "fingerprint": "f" * 64, "msp_id": "WarehouseMSP",
       "roles": ["committee", "participant"]}
NODE_KEY = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
# What the chaincode's parseMicro accepts (chaincode/ledger/contract.go).
GO_FIXED_POINT = re.compile(r"^[0-9]+(\.[0-9]{1,6})?$")


@dataclass(frozen=True)
class Call:
    """One call the facade made: evaluate or submit, with exactly what it would send."""

    kind: str
    name: str
    args: tuple[str | bytes, ...]


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

    def evaluate(self, name: str, args: Args = ()) -> bytes:
        self.calls.append(Call("evaluate", name, tuple(args)))
        return self.results.get(name, b"{}")

    def submit_async(self, name: str, args: Args = ()) -> Submitted:
        self.calls.append(Call("submit", name, tuple(args)))
        self.submitted.append(Submitted(f"tx{len(self.submitted) + 1}", self.code))
        return self.submitted[-1]


@pytest.fixture
def contract() -> RecordingContract:
    return RecordingContract(results={"WhoAmI": json.dumps(WHO).encode()})


def genesis() -> dict[str, object]:
    return {
        "task_id": "mnist-1", "rounds": 2, "quorum": 2,
        "dp": {"noise_mode": "central", "epsilon_budget": "3", "delta": "0.00001", "unit": "company",
               "sample_rate": "1", "steps_per_round": 1, "label_epsilon": "0"},
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
    ("register a dealer",
     lambda ledger: ledger.register_company("kmc", roles=["dealer"]),
     "RegisterCompany", ("kmc", "dealer", "")),
    ("status",
     lambda ledger: ledger.set_company_status("bolt", "revoked"),
     "SetCompanyStatus", ("bolt", "revoked")),
    ("keys",
     lambda ledger: ledger.record_company_keys(encryption_key="e" * 64, node_key=NODE_KEY, vrf_key="f" * 64),
     "RecordCompanyKeys", ("e" * 64, NODE_KEY, "f" * 64)),
    # The chaincode computes the epsilon a round books: no client sends one.
    ("open",
     lambda ledger: ledger.open_round("t", 2),
     "OpenRound", ("t", "2")),
    ("election proof",
     lambda ledger: ledger.submit_election_proof("t", 2, proof=b"\x00\x01\xfe\xff"),
     "SubmitElectionProof", ("t", "2", "0001feff")),
    ("close collection",
     lambda ledger: ledger.close_collection("t", 2),
     "CloseCollection", ("t", "2")),
    ("update",
     lambda ledger: ledger.submit_update("t", 1, artifact_sha256="a" * 64, size_bytes=4096, samples=100,
                                         compute_millis=0),
     "SubmitUpdate", ("t", "1", "a" * 64, "4096", "100", "0")),
    ("aggregate",
     lambda ledger: ledger.record_aggregate("t", 1, included=["cargo", "bolt"], aggregate_sha256="b" * 64),
     "RecordAggregate", ("t", "1", '["cargo","bolt"]', "b" * 64)),
    ("valid vote",
     lambda ledger: ledger.vote("t", 1, valid=True),
     "Vote", ("t", "1", "true", "", "")),
    ("valid vote with its partial",
     lambda ledger: ledger.vote("t", 1, valid=True, partial_sha256="d" * 64),
     "Vote", ("t", "1", "true", "", "d" * 64)),
    ("invalid vote",
     lambda ledger: ledger.vote("t", 1, valid=False, reason="hash mismatch"),
     "Vote", ("t", "1", "false", "hash mismatch", "")),
    ("partial",
     lambda ledger: ledger.record_partial("t", 1, partial_sha256="d" * 64),
     "RecordPartial", ("t", "1", "d" * 64)),
    ("close",
     lambda ledger: ledger.close_round("t", 1, model_sha256="c" * 64, decrypted_by=["cargo", "bolt"]),
     "CloseRound", ("t", "1", "c" * 64, '["cargo","bolt"]')),
    ("fail",
     lambda ledger: ledger.fail_round("t", 1, reason="stalled"),
     "FailRound", ("t", "1", "stalled")),
    ("failover",
     lambda ledger: ledger.failover_master("t", reason="master bolt is down"),
     "FailoverMaster", ("t", "master bolt is down")),
    ("release",
     lambda ledger: ledger.release_escrow_share("t", master="cargo", sealed_share=b"\x00box\xff", share_sha256="a" * 64),
     "ReleaseEscrowShare", ("t", '{"master":"cargo","sealed_share":"AGJveP8=","share_sha256":"' + "a" * 64 + '"}')),
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
                         '"label_epsilon":"0","noise_mode":"central","sample_rate":"1","steps_per_round":1,'
                         '"unit":"company"},"model":{"description":"CNN – MNIST"},"quorum":2,"rounds":2,'
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


def test_a_write_that_loses_a_read_conflict_is_endorsed_again_backing_off_and_gives_up_after_eight(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import fedledger.fabric.ledger as ledger_module

    waits: list[float] = []
    monkeypatch.setattr(ledger_module.time, "sleep", waits.append)
    contract = RecordingContract(code="MVCC_READ_CONFLICT")
    ledger = Ledger(contract)

    with pytest.raises(CommitError, match="MVCC_READ_CONFLICT; another transaction") as caught:
        ledger.vote("t", 1, valid=True)

    assert len(contract.submitted) == 8
    assert caught.value.tx_id == "tx8"
    # Each retry waits past a block's commit, twice as long as the one before (within its jitter).
    assert len(waits) == 7 and waits[0] >= 0.125 and all(b > a * 1.0 for a, b in zip(waits, waits[1:]))


def test_a_write_whose_endorsers_disagreed_is_endorsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import fedledger.fabric.ledger as ledger_module
    from fedledger.errors import EndorsementMismatchError

    monkeypatch.setattr(ledger_module.time, "sleep", lambda _: None)

    @dataclass
    class StraddlingContract(RecordingContract):
        """Its first endorsement meets two peers on either side of a block."""

        mismatches: int = 1

        def submit_async(self, name: str, args: Args = ()) -> Submitted:
            if self.mismatches:
                self.mismatches -= 1
                raise EndorsementMismatchError("tx0", "ProposalResponsePayloads do not match", code="ABORTED")
            return super().submit_async(name, args)

    contract = StraddlingContract()

    assert Ledger(contract).vote("t", 1, valid=True) == "tx1"
    assert len(contract.submitted) == 1


@pytest.mark.parametrize("call", [
    lambda ledger: ledger.open_round("t", True),
    lambda ledger: ledger.submit_update("t", 1, artifact_sha256="a" * 64, size_bytes=1.5, samples=1, compute_millis=1),
    lambda ledger: ledger.record_aggregate("t", 1, included="bolt", aggregate_sha256="b" * 64),
    lambda ledger: ledger.vote("t", 1, valid="yes"),
    lambda ledger: ledger.register_company("bolt", roles="participant"),
    lambda ledger: ledger.create_task([("task_id", "t")]),
    lambda ledger: ledger.record_company_keys(encryption_key=b"\x01" * 32, node_key=NODE_KEY, vrf_key="f" * 64),
    lambda ledger: ledger.record_company_keys(encryption_key="e" * 64, node_key=NODE_KEY, vrf_key=b"\x01" * 32),
    lambda ledger: ledger.submit_election_proof("t", 1, proof="00" * 80),
    lambda ledger: ledger.close_round("t", 1, model_sha256="c" * 64, decrypted_by="cargo"),
], ids=["bool round", "float size", "included as a string", "non-bool vote", "roles as a string", "genesis list",
        "encryption key as bytes", "vrf key as bytes", "proof as text", "decrypting members as a string"])
def test_arguments_of_the_wrong_type_are_refused_before_anything_is_sent(
        contract: RecordingContract, call: Callable[[Ledger], str]) -> None:
    with pytest.raises(FabricError):
        call(Ledger(contract))
    assert contract.calls == []


# -- key custody ---------------------------------------------------------------------------


def deal(ledger: Ledger, **changes: object) -> str:
    arguments: dict[str, object] = {
        "paillier_n": "c3" * 128, "public_key": b"threshold public key",
        "shares": [SealedShare("cargo", b"\x00sealed for cargo\xff", "c" * 64),
                   SealedShare("acme", b"sealed for acme", "a" * 64)],
    }
    arguments.update(changes)
    return ledger.deal_key("t", **arguments)


def test_a_deal_is_sent_as_canonical_json_with_bytes_in_base64_and_the_keys_hash(contract: RecordingContract) -> None:
    tx_id = deal(Ledger(contract))

    (call,) = contract.calls
    assert (call.kind, call.name, call.args[0], tx_id) == ("submit", "DealKey", "t", "tx1")
    assert call.args[1] == canonical_json({
        "paillier_n": "c3" * 128,
        "public_key": base64.b64encode(b"threshold public key").decode(),
        "public_key_sha256": hashlib.sha256(b"threshold public key").hexdigest(),
        "shares": [{"member": "cargo", "sealed_share": "AHNlYWxlZCBmb3IgY2FyZ2//", "share_sha256": "c" * 64},
                   {"member": "acme", "sealed_share": "c2VhbGVkIGZvciBhY21l", "share_sha256": "a" * 64}],
    })


@given(public_key=st.binary(min_size=1, max_size=256), sealed=st.lists(st.binary(min_size=1, max_size=64), max_size=4))
def test_what_a_deal_sends_decodes_back_to_the_same_bytes_and_hash(public_key: bytes, sealed: list[bytes]) -> None:
    contract = RecordingContract()
    shares = [SealedShare(f"m{i}", box, "0" * 64) for i, box in enumerate(sealed)]

    Ledger(contract).deal_key("t", paillier_n="c3", public_key=public_key, shares=shares)

    document = json.loads(contract.calls[0].args[1])
    assert base64.b64decode(document["public_key"], validate=True) == public_key
    assert document["public_key_sha256"] == hashlib.sha256(public_key).hexdigest()
    assert [base64.b64decode(s["sealed_share"], validate=True) for s in document["shares"]] == sealed


@pytest.mark.parametrize(("changes", "message"), [
    ({"public_key": "threshold public key"}, "public_key must be bytes, not str"),
    ({"public_key": b""}, "public_key is empty"),
    ({"paillier_n": "C3" * 128}, "paillier_n must be the Paillier modulus in lower-case hex"),
    ({"paillier_n": 0xC3}, "paillier_n must be the Paillier modulus in lower-case hex"),
    ({"shares": [("cargo", b"box", "c" * 64)]}, "shares must be a sequence of SealedShare"),
    ({"shares": [SealedShare("cargo", b"", "c" * 64)]}, "the sealed share of cargo is empty"),
    ({"shares": [SealedShare("cargo", "box", "c" * 64)]}, "the sealed share of cargo must be bytes"),
], ids=["key as text", "empty key", "upper-case modulus", "modulus as int", "share as tuple", "empty share",
        "share as text"])
def test_a_deal_with_arguments_of_the_wrong_type_is_refused_before_anything_is_sent(
        contract: RecordingContract, changes: dict[str, object], message: str) -> None:
    with pytest.raises(FabricError, match=re.escape(message)):
        deal(Ledger(contract), **changes)
    assert contract.calls == []


def test_an_escrow_deal_adds_the_master_key_sealed_in_base64_with_its_hash(contract: RecordingContract) -> None:
    deal(Ledger(contract), master_key=SealedShare("acme", b"\x00sealed key\xff", "e" * 64))

    document = json.loads(contract.calls[0].args[1])
    assert document["master_key"] == {"sealed_key": base64.b64encode(b"\x00sealed key\xff").decode(),
                                      "key_sha256": "e" * 64}
    assert set(document) == {"paillier_n", "public_key", "public_key_sha256", "shares", "master_key"}


def test_a_threshold_deal_sends_no_master_key(contract: RecordingContract) -> None:
    deal(Ledger(contract))

    assert "master_key" not in json.loads(contract.calls[0].args[1])


@pytest.mark.parametrize(("master_key", "message"), [
    (("acme", b"box", "e" * 64), "master_key must be a SealedShare (member: the master), not tuple"),
    (SealedShare("acme", b"", "e" * 64), "the sealed master key is empty"),
    (SealedShare("acme", "box", "e" * 64), "the sealed master key must be bytes, not str"),
    (SealedShare("acme", b"box", 7), "key_sha256 must be a string, not int"),
], ids=["tuple", "empty", "text", "hash as int"])
def test_a_master_key_of_the_wrong_type_is_refused_before_anything_is_sent(
        contract: RecordingContract, master_key: object, message: str) -> None:
    with pytest.raises(FabricError, match=re.escape(message)):
        deal(Ledger(contract), master_key=master_key)
    assert contract.calls == []


@pytest.mark.parametrize("call", [
    lambda ledger: ledger.release_escrow_share("t", master="cargo", sealed_share="box", share_sha256="a" * 64),
    lambda ledger: ledger.release_escrow_share("t", master="cargo", sealed_share=b"", share_sha256="a" * 64),
    lambda ledger: ledger.release_escrow_share("t", master=None, sealed_share=b"box", share_sha256="a" * 64),
    lambda ledger: ledger.failover_master("t", reason=None),
], ids=["share as text", "empty share", "no master", "no reason"])
def test_escrow_writes_of_the_wrong_type_are_refused_before_anything_is_sent(
        contract: RecordingContract, call: Callable[[Ledger], str]) -> None:
    with pytest.raises(FabricError):
        call(Ledger(contract))
    assert contract.calls == []


def test_a_sealed_master_key_is_read_from_its_record_and_decoded() -> None:
    record = {"task_id": "t", "master": "acme", "msp_id": "ManufacturerMSP", "encryption_key": "e" * 64,
              "sealed_key": base64.b64encode(b"\x00key box\xff").decode(), "key_sha256": "k" * 64, "dealer": "kmc"}
    contract = RecordingContract({"GetMasterKeyRecord": json.dumps(record).encode()})

    assert Ledger(contract).sealed_master_key("t") == b"\x00key box\xff"
    assert contract.calls == [Call("evaluate", "GetMasterKeyRecord", ("t",))]
    with pytest.raises(KeyIntegrityError, match="the sealed master key of task t read from the ledger is not base64"):
        Ledger(RecordingContract({"GetMasterKeyRecord": b'{"sealed_key": "@@"}'})).sealed_master_key("t")
    with pytest.raises(KeyIntegrityError, match="is not a JSON object"):
        Ledger(RecordingContract({"GetMasterKeyRecord": b"[]"})).sealed_master_key("t")


def test_a_sealed_share_is_not_shown_in_its_repr() -> None:
    share = SealedShare("bolt", b"secret-looking sealed bytes", "ab" * 32)

    assert "secret-looking" not in repr(share) and "27 bytes" in repr(share)


def key_record(key: bytes, digest: str | None = None, text: str | None = None) -> bytes:
    return json.dumps({"task_id": "t", "dealer": "kmc", "public_key": text or base64.b64encode(key).decode(),
                       "public_key_sha256": digest or hashlib.sha256(key).hexdigest()}).encode()


def test_a_threshold_key_is_read_decoded_and_checked_against_its_recorded_hash() -> None:
    key = b"threshold public key"
    contract = RecordingContract({"GetThresholdKey": key_record(key)})

    assert Ledger(contract).get_threshold_key("t") == key
    assert contract.calls == [Call("evaluate", "GetThresholdKey", ("t",))]


@pytest.mark.parametrize(("document", "reason"), [
    (key_record(b"threshold public key", digest="0" * 64), "has SHA-256"),
    (key_record(b"k", text="not base64!"), "is not base64"),
    (b'{"public_key": 7}', "is not base64"),
    (b"[]", "is not a JSON object"),
], ids=["wrong hash", "not base64", "not text", "not an object"])
def test_a_threshold_key_that_does_not_match_its_hash_raises_a_typed_error(document: bytes, reason: str) -> None:
    with pytest.raises(KeyIntegrityError, match=reason) as caught:
        Ledger(RecordingContract({"GetThresholdKey": document})).get_threshold_key("t")

    assert (caught.value.task_id, caught.value.what) == ("t", "threshold public key")
    assert isinstance(caught.value, FabricError)


def test_a_sealed_share_is_read_from_its_members_record_and_decoded() -> None:
    record = {"task_id": "t", "member": "bolt", "msp_id": "WarehouseMSP", "encryption_key": "e" * 64,
              "sealed_share": base64.b64encode(b"\x00box\xff").decode(), "share_sha256": "b" * 64, "dealer": "kmc"}
    contract = RecordingContract({"GetKeyShareRecord": json.dumps(record).encode()})

    assert Ledger(contract).sealed_share("t", "bolt") == b"\x00box\xff"
    assert contract.calls == [Call("evaluate", "GetKeyShareRecord", ("t", "bolt"))]
    with pytest.raises(KeyIntegrityError, match="the sealed share of bolt of task t read from the ledger is not base64"):
        Ledger(RecordingContract({"GetKeyShareRecord": b'{"sealed_share": "@@"}'})).sealed_share("t", "bolt")


# -- reads ---------------------------------------------------------------------------------

READS: list[tuple[Callable[[Ledger], object], str, tuple[str, ...]]] = [
    (lambda ledger: ledger.get_company("bolt"), "GetCompany", ("bolt",)),
    (lambda ledger: ledger.list_companies(), "ListCompanies", ()),
    (lambda ledger: ledger.get_task("t"), "GetTask", ("t",)),
    (lambda ledger: ledger.get_round("t", 3), "GetRound", ("t", "3")),
    (lambda ledger: ledger.list_updates("t", 3), "ListUpdates", ("t", "3")),
    (lambda ledger: ledger.list_votes("t", 3), "ListVotes", ("t", "3")),
    (lambda ledger: ledger.get_key_share_record("t", "bolt"), "GetKeyShareRecord", ("t", "bolt")),
    (lambda ledger: ledger.get_master_key_record("t"), "GetMasterKeyRecord", ("t",)),
    (lambda ledger: ledger.list_escrow_releases("t"), "ListEscrowReleases", ("t",)),
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
