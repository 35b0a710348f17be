"""Every FedLedger transaction, through :class:`~fedledger.fabric.Ledger`, on the consortium's real peers.

The companies are fresh identities enrolled at each organization's Fabric CA with only the roles
they need, registered once for the module. Each test uses its own task, so the tests do not depend
on each other or on what other modules put on the shared ledger; where a test checks stake,
reputation or tokens it compares them with their values before the test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fabric_protos.common import ledger_pb2

from fedledger.errors import EndorseError, FabricError, GatewayError
from fedledger.fabric import (
    CAClient,
    ChaincodeEvent,
    Contract,
    Enrollment,
    Gateway,
    Identity,
    Ledger,
    Signer,
    Status,
    SubmittedTransaction,
    connect,
)
from fedledger.fabric.ledger import Genesis, fixed_point
from fedledger.fabric.proposal import Args, Transient
from fedledger.privacy import RdpAccountant

from .conftest import Consortium

ROLE_ATTRIBUTE = "fedledger.role"
DELTA = 1e-5
# How long to wait for the chaincode events of transactions that have already committed.
EVENT_WAIT_SECONDS = 30.0
# How long every peer may take to commit a block another peer has committed.
PEER_CATCH_UP_SECONDS = 30.0
# How long the peers of a fresh network may take to discover each other through gossip.
DISCOVERY_SECONDS = 60.0


@dataclass
class Member:
    """One client identity of one organization, connected to its org's peer."""

    org: str
    gateway: Gateway
    ledger: Ledger
    company: str = ""

    @property
    def fingerprint(self) -> str:
        return self.gateway.identity.fingerprint


@dataclass
class Members:
    """The module's companies, each org's admin, and a way to enroll more identities."""

    consortium: Consortium
    publisher: Member  # Manufacturer, publisher role only
    acme: Member  # Manufacturer, participant and committee: the aggregator of every task here
    bolt: Member  # Warehouse, participant and committee
    cargo: Member  # Carrier, participant and committee
    outsider: Member  # Carrier, participant and committee, on no task's committee
    admins: dict[str, Member]
    enroll: Callable[[str, str], Member]

    def channel_height(self) -> int:
        return max(peer_heights(self.consortium, self.publisher.gateway))


def _registrar(consortium: Consortium, org: str) -> Enrollment:
    """The org CA's registrar, as the bring-up left it (cert.pem, key.pem in users/ca-admin)."""
    directory = consortium.net.layout.user(consortium.net.config.company(org), "ca-admin")
    msp_id = str(consortium.org(org)["msp_id"])
    return Enrollment(Identity(msp_id, (directory / "cert.pem").read_bytes()),
                      Signer.from_pem((directory / "key.pem").read_bytes()), b"")


def _connect(consortium: Consortium, org: str, identity: Identity, signer: Signer) -> Gateway:
    peer = consortium.org(org)["peer"]
    assert isinstance(peer, dict)
    return connect(str(peer["address"]), identity=identity, signer=signer,
                   tls_root_certificates=Path(peer["tls_ca"]).read_bytes())


def peer_heights(consortium: Consortium, gateway: Gateway) -> list[int]:
    """The channel's height on each company's peer, asked through ``gateway``."""
    qscc = gateway.network(consortium.channel).contract("qscc")
    heights = []
    for org in ("Manufacturer", "Warehouse", "Carrier"):
        chain = ledger_pb2.BlockchainInfo()
        chain.ParseFromString(qscc.evaluate("GetChainInfo", [consortium.channel],
                                            endorsing_organizations=[str(consortium.org(org)["msp_id"])]))
        heights.append(int(chain.height))
    return heights


class _CommittedEverywhere:
    """A submitted transaction whose status is reported once every company's peer has its block."""

    def __init__(self, submitted: SubmittedTransaction, heights: Callable[[], list[int]]) -> None:
        self._submitted, self._heights = submitted, heights

    @property
    def tx_id(self) -> str:
        return self._submitted.tx_id

    def status(self, *, timeout: float | None = None) -> Status:
        status = self._submitted.status(timeout=timeout)
        deadline = time.monotonic() + PEER_CATCH_UP_SECONDS
        while min(self._heights()) <= status.block_number:
            assert time.monotonic() < deadline, f"a peer did not commit block {status.block_number} in time"
            time.sleep(0.02)
        return status


class EveryPeerCommits:
    """The chaincode, with writes that count as committed only once every company's peer has them.

    The gateway reports a commit as soon as its own peer has the block; the next company to act,
    through its own organization's peer, could otherwise still read the state from before it.
    """

    def __init__(self, contract: Contract, heights: Callable[[], list[int]]) -> None:
        self._contract, self._heights = contract, heights

    def evaluate(self, name: str, args: Args = (), *, transient: Transient | None = None,
                 endorsing_organizations: Sequence[str] | None = None) -> bytes:
        return self._contract.evaluate(name, args, transient=transient,
                                       endorsing_organizations=endorsing_organizations)

    def submit_async(self, name: str, args: Args = (), *, transient: Transient | None = None,
                     endorsing_organizations: Sequence[str] | None = None) -> _CommittedEverywhere:
        return _CommittedEverywhere(self._contract.submit_async(
            name, args, transient=transient, endorsing_organizations=endorsing_organizations), self._heights)


def _ledger(consortium: Consortium, gateway: Gateway) -> Ledger:
    contract = gateway.network(consortium.channel).contract(consortium.chaincode)
    return Ledger(EveryPeerCommits(contract, lambda: peer_heights(consortium, gateway)))


def _once_endorsable(write: Callable[[], str]) -> str:
    """Run ``write``, waiting first for the peers to discover each other.

    Just after a bring-up, gossip may not yet have told the gateway about the other organizations'
    peers (or that they run the chaincode), and it then finds no peers that satisfy the majority
    policy. Nothing is ordered in that case, so trying again is safe.
    """
    deadline = time.monotonic() + DISCOVERY_SECONDS
    while True:
        try:
            return write()
        except EndorseError as err:
            if err.code != "FAILED_PRECONDITION" or "no combination of peers" not in str(err) \
                    or time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def ensure_company(member: Member, name: str, roles: list[str]) -> None:
    """Register ``member`` as company ``name`` unless it already is (the module may be re-run on a
    long-lived network)."""
    try:
        existing = member.ledger.get_company(name)
    except GatewayError as err:
        assert f"company {name} is not registered" in str(err)
        _once_endorsable(lambda: member.ledger.register_company(name, roles=roles))
    else:
        assert existing["cert_fingerprint"] == member.fingerprint, (
            f"company {name} is already registered for another certificate; run on a fresh network")
    member.company = name


@pytest.fixture(scope="module")
def members(consortium: Consortium) -> Iterator[Members]:
    opened: list[Gateway] = []

    def enroll(org: str, roles: str) -> Member:
        entry = consortium.org(org)
        ca = entry["ca"]
        assert isinstance(ca, dict)
        client = CAClient(str(ca["url"]), msp_id=str(entry["msp_id"]), tls_root_pem=Path(ca["tls_ca"]).read_bytes(),
                          ca_name=str(ca["name"]))
        enrollment_id = f"ledger-test-{uuid.uuid4().hex[:12]}"
        secret = client.register(_registrar(consortium, org), enrollment_id, attributes={ROLE_ATTRIBUTE: roles})
        enrollment = client.enroll(enrollment_id, secret, attributes=(ROLE_ATTRIBUTE,))
        gateway = _connect(consortium, org, enrollment.identity, enrollment.signer)
        opened.append(gateway)
        return Member(org, gateway, _ledger(consortium, gateway))

    def admin(org: str) -> Member:
        gateway = consortium.gateway(org, "admin")
        opened.append(gateway)
        return Member(org, gateway, _ledger(consortium, gateway))

    try:
        team = Members(
            consortium,
            publisher=enroll("Manufacturer", "publisher"),
            acme=enroll("Manufacturer", "participant,committee"),
            bolt=enroll("Warehouse", "participant,committee"),
            cargo=enroll("Carrier", "participant,committee"),
            outsider=enroll("Carrier", "participant,committee"),
            admins={org: admin(org) for org in ("Manufacturer", "Warehouse", "Carrier")},
            enroll=enroll,
        )
        ensure_company(team.publisher, "ledger-pub", ["publisher"])
        for member, name in ((team.acme, "ledger-acme"), (team.bolt, "ledger-bolt"), (team.cargo, "ledger-cargo"),
                             (team.outsider, "ledger-outsider")):
            ensure_company(member, name, ["participant", "committee"])
        yield team
    finally:
        for gateway in opened:
            gateway.close()


def micro(fixed: str) -> int:
    """A fixed-point decimal string in millionths, as the chaincode stores epsilon."""
    return int(Decimal(fixed) * 1_000_000)


def unique_task(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def sha(label: str) -> str:
    """A stand-in artifact hash: the SHA-256 of a label."""
    return hashlib.sha256(label.encode()).hexdigest()


def genesis(task_id: str, members: Members, *, participants: list[Member] | None = None,
            committee: list[Member] | None = None, quorum: int = 2, epsilon_budget: str = "3",
            noise_multiplier: str = "3", rounds: int = 2) -> Genesis:
    """A valid genesis: acme aggregates; no reputation threshold, so penalties demote nobody."""
    participants = participants or [members.acme, members.bolt, members.cargo]
    committee = committee or [members.acme, members.bolt, members.cargo]
    return {
        "task_id": task_id,
        "model": {"description": "small CNN on MNIST", "initial_weights_sha256": sha(f"{task_id}/weights-0")},
        "rounds": rounds,
        "dp": {"epsilon_budget": epsilon_budget, "delta": fixed_point(DELTA), "clip_norm": "4",
               "noise_multiplier": noise_multiplier, "noise_mode": "distributed"},
        "he": {"paillier_n": "c3" * 128, "key_custody": "threshold", "threshold": 2, "committee_size": len(committee)},
        "committee": [m.company for m in committee],
        "quorum": quorum,
        "aggregator": members.acme.company,
        "participants": [m.company for m in participants],
        "min_participants": 2,
        "seed0": "5e" * 32,
        "initial_tokens": 50,
        "reward_per_round": 1000,
        "penalty": 100,
        "reputation_threshold": 0,
    }


def chaincode_message(err: GatewayError) -> list[str]:
    return [detail.message for detail in err.details]


def collecting_round(members: Members, prefix: str, submitters: tuple[Member, ...]) -> str:
    """A fresh task whose round 1 is open and holds one update from each of ``submitters``."""
    task = unique_task(prefix)
    members.publisher.ledger.create_task(genesis(task, members))
    members.publisher.ledger.open_round(task, 1, epsilon_after="1")
    for m in submitters:
        m.ledger.submit_update(task, 1, artifact_sha256=sha(f"{m.company}/1"), size_bytes=10, samples=5,
                               compute_millis=5)
    return task


@contextmanager
def refused(message: str, snapshot: Callable[[], object]) -> Iterator[None]:
    """Expect the write in the ``with`` block to be refused by the chaincode with ``message``, verbatim,
    and to leave ``snapshot()`` (the affected records and their histories) as it was."""
    before = snapshot()
    with pytest.raises(EndorseError, match=re.escape(message)) as caught:
        yield
    assert any(m.endswith(message) for m in chaincode_message(caught.value)), caught.value.details
    assert snapshot() == before


def state_of(members: Members, task_id: str, *, rounds: tuple[int, ...] = (),
             companies: tuple[Member, ...] = ()) -> dict[str, Any]:
    """What a refused transaction on a task could have changed: the task, its rounds, their
    updates and votes, companies, every history, and the channel's height (nothing ordered)."""
    ledger = members.publisher.ledger
    state: dict[str, Any] = {"height": members.channel_height(), "task": ledger.get_task(task_id),
                             "task history": ledger.get_task_history(task_id)}
    for n in rounds:
        state[f"round {n}"] = (ledger.get_round(task_id, n), ledger.get_round_history(task_id, n),
                               ledger.list_updates(task_id, n), ledger.list_votes(task_id, n),
                               [ledger.get_update_history(task_id, n, m.company) for m in companies])
    for member in companies:
        state[member.company] = (ledger.get_company(member.company), ledger.get_company_history(member.company))
    return state


def collect_events(members: Members, start_block: int, tx_ids: set[str]) -> list[ChaincodeEvent]:
    """The chaincode events of ``tx_ids``, read from ``start_block`` on."""
    network = members.publisher.gateway.network(members.consortium.channel)
    found: list[ChaincodeEvent] = []
    with network.chaincode_events(members.consortium.chaincode, start_block=start_block) as stream:
        timer = threading.Timer(EVENT_WAIT_SECONDS, stream.close)
        timer.start()
        try:
            for event in stream:
                if event.tx_id in tx_ids:
                    found.append(event)
                if {e.tx_id for e in found} == tx_ids:
                    break
        finally:
            timer.cancel()
    return found


# -- identity, health, companies -----------------------------------------------------------


def test_the_chaincode_reports_its_version_and_sees_each_caller_as_its_company(members: Members) -> None:
    version = members.cargo.ledger.version()
    who = members.bolt.ledger.who_am_i()
    admin = members.admins["Carrier"].ledger.who_am_i()

    assert version == {"chaincode": "fedledger", "version": "0.1.0"}
    assert who == {"admin": False, "company": "ledger-bolt", "fingerprint": members.bolt.fingerprint,
                   "msp_id": "WarehouseMSP", "roles": ["committee", "participant"]}
    assert admin["admin"] and admin["msp_id"] == "CarrierMSP"


def test_an_org_admin_registers_a_company_for_an_identity_of_its_org(members: Members) -> None:
    newcomer = members.enroll("Warehouse", "participant")
    name = f"ledger-dock-{uuid.uuid4().hex[:8]}"

    tx_id = members.admins["Warehouse"].ledger.register_company(name, roles=["participant"],
                                                                 cert_fingerprint=newcomer.fingerprint)
    company = members.cargo.ledger.get_company(name)
    history = members.cargo.ledger.get_company_history(name)
    listed = members.cargo.ledger.list_companies()

    assert newcomer.ledger.who_am_i()["company"] == name
    assert company == {"name": name, "msp_id": "WarehouseMSP", "cert_fingerprint": newcomer.fingerprint,
                       "roles": ["participant"], "status": "active", "reputation": 1000, "stake": 0, "tokens": 0}
    assert [(h["tx_id"], h.get("value")) for h in history] == [(tx_id, company)]
    names = [c["name"] for c in listed]
    assert names == sorted(names)
    assert {name, "ledger-pub", "ledger-acme", "ledger-bolt", "ledger-cargo"} <= set(names)


# -- the happy path ------------------------------------------------------------------------


def test_a_task_runs_two_rounds_pays_its_contributors_and_leaves_an_audit_trail(members: Members) -> None:
    pub, acme, bolt, cargo = members.publisher, members.acme, members.bolt, members.cargo
    task = unique_task("happy")
    trio = (acme, bolt, cargo)
    before = {m.company: m.ledger.get_company(m.company) for m in trio}
    accountant = RdpAccountant(noise_multiplier=3.0)
    start = members.channel_height()
    events: dict[str, str] = {}  # tx id -> the event its state change must emit

    def did(event: str, tx_id: str) -> str:
        events[tx_id] = event
        return tx_id

    created = did("TaskCreated", pub.ledger.create_task(genesis(task, members)))
    # Round 1: all three train (samples 100:200:300); acme and bolt verify; cargo never votes.
    opened1 = did("RoundOpened", pub.ledger.open_round(task, 1, epsilon_after=accountant.epsilon_after(1, delta=DELTA)))
    round1_updates = [did("UpdateSubmitted", m.ledger.submit_update(
        task, 1, artifact_sha256=sha(f"{task}/1/{m.company}"), size_bytes=4096, samples=100 * (i + 1),
        compute_millis=10)) for i, m in enumerate(trio)]
    aggregated1 = did("AggregateRecorded", acme.ledger.record_aggregate(
        task, 1, included=[m.company for m in trio], aggregate_sha256=sha(f"{task}/1/aggregate")))
    round1_votes = [did("VoteCast", m.ledger.vote(task, 1, valid=True)) for m in (acme, bolt)]
    closed1 = did("RoundClosed", pub.ledger.close_round(task, 1, model_sha256=sha(f"{task}/model-1")))
    accountant.step()
    # Round 2: bolt and cargo train (100:200); acme and cargo verify; bolt never votes; the leader closes.
    did("RoundOpened", pub.ledger.open_round(task, 2, epsilon_after=accountant.epsilon_after(2, delta=DELTA)))
    for i, m in enumerate((bolt, cargo)):
        did("UpdateSubmitted", m.ledger.submit_update(task, 2, artifact_sha256=sha(f"{task}/2/{m.company}"),
                                                      size_bytes=4096, samples=100 * (i + 1), compute_millis=10))
    did("AggregateRecorded", acme.ledger.record_aggregate(task, 2, included=[bolt.company, cargo.company],
                                                          aggregate_sha256=sha(f"{task}/2/aggregate")))
    for m in (acme, cargo):
        did("VoteCast", m.ledger.vote(task, 2, valid=True))
    closed2 = did("RoundClosed", acme.ledger.close_round(task, 2, model_sha256=sha(f"{task}/model-2")))

    state = pub.ledger.get_task(task)
    round1 = bolt.ledger.get_round(task, 1)
    updates = cargo.ledger.list_updates(task, 1)
    votes = cargo.ledger.list_votes(task, 1)
    after = {m.company: pub.ledger.get_company(m.company) for m in trio}

    assert state["status"] == "finished" and state["current_round"] == 2 and state["publisher"] == "ledger-pub"
    assert state["epsilon_spent_micro"] == micro(fixed_point(accountant.epsilon_after(2, delta=DELTA)))
    assert state["epsilon_budget_micro"] == 3_000_000
    assert round1["status"] == "closed" and round1["model_sha256"] == sha(f"{task}/model-1")
    assert round1["updates"] == 3 and round1["valid_votes"] == 2 and round1["leader"] == "ledger-acme"
    assert round1["aggregate"]["included"] == ["ledger-acme", "ledger-bolt", "ledger-cargo"]
    assert round1["epsilon_after_micro"] == micro(fixed_point(accountant.epsilon_after(1, delta=DELTA)))
    assert [(u["company"], u["samples"], u["tx_id"]) for u in updates] == [
        ("ledger-acme", 100, round1_updates[0]), ("ledger-bolt", 200, round1_updates[1]),
        ("ledger-cargo", 300, round1_updates[2])]
    assert [(v["member"], v["valid"], v["tx_id"]) for v in votes] == [
        ("ledger-acme", True, round1_votes[0]), ("ledger-bolt", True, round1_votes[1])]

    # Round 1 pays 1000 by samples x compute time (1:2:3 -> 166, 333, 500), round 2 pays 1:2 (333, 666);
    # every participant got 50 initial tokens; a committee member who did not vote loses 100 of
    # stake and of reputation (cargo in round 1, bolt in round 2).
    def moved(name: str) -> tuple[int, int, int]:
        """How a company's (tokens, stake, reputation) moved during the task."""
        was, now = before[name], after[name]
        return now["tokens"] - was["tokens"], now["stake"] - was["stake"], now["reputation"] - was["reputation"]

    assert moved("ledger-acme") == (50 + 166, 166, 0)
    assert moved("ledger-bolt") == (50 + 333 + 333, 666 - 100, -100)
    assert moved("ledger-cargo") == (50 + 500 + 666, 1166 - 100, -100)
    assert all(c["status"] == "active" for c in after.values())

    # The audit trail: every committed change, oldest first, naming the transaction that made it.
    round_history = pub.ledger.get_round_history(task, 1)
    task_history = pub.ledger.get_task_history(task)
    update_history = pub.ledger.get_update_history(task, 1, "ledger-bolt")
    bolt_history = pub.ledger.get_company_history("ledger-bolt")
    assert [h["tx_id"] for h in round_history] == [opened1, *round1_updates, aggregated1, *round1_votes, closed1]
    assert [h["value"]["status"] for h in round_history] == [
        "open", "collecting", "collecting", "collecting", "aggregated", "aggregated", "verified", "closed"]
    assert [h["value"]["current_round"] for h in task_history] == [0, 1, 1, 2, 2]
    assert [h["value"]["status"] for h in task_history][-1] == "finished"
    assert task_history[0]["tx_id"] == created and task_history[-1]["tx_id"] == closed2
    assert [h["timestamp"] for h in task_history] == sorted(h["timestamp"] for h in task_history)
    assert [h["tx_id"] for h in update_history] == [round1_updates[1]]
    assert [h["tx_id"] for h in bolt_history[-3:]] == [created, closed1, closed2]

    # One chaincode event per state change, from the transaction that made it.
    seen = collect_events(members, start, set(events))
    assert sorted((e.tx_id, e.event_name) for e in seen) == sorted(events.items())
    payloads = {e.tx_id: json.loads(e.payload) for e in seen}
    assert payloads[created] == task_history[0]["value"]
    assert payloads[opened1] == round_history[0]["value"]
    assert payloads[closed1] == {"round": round_history[-1]["value"], "penalized": ["ledger-cargo"],
                                 "rewards": {"ledger-acme": 166, "ledger-bolt": 333, "ledger-cargo": 500}}


# -- key custody ---------------------------------------------------------------------------


def test_a_key_share_stays_with_its_members_org_and_only_its_hash_is_public(members: Members) -> None:
    pub, bolt, cargo = members.publisher, members.bolt, members.cargo
    task = unique_task("custody")
    pub.ledger.create_task(genesis(task, members))
    share = b"threshold share of ledger-bolt: " + uuid.uuid4().bytes
    digest = hashlib.sha256(share).hexdigest()

    # The share reaches the endorsing peers of bolt's org and one more (the majority policy), in the
    # transient map; it is stored only in bolt's org's implicit private data collection.
    tx_id = bolt.ledger.store_key_share(task, share, endorsing_organizations=["WarehouseMSP", "ManufacturerMSP"])
    record = cargo.ledger.get_key_share_record(task, "ledger-bolt")
    block = pub.gateway.network(members.consortium.channel).contract("qscc").evaluate(
        "GetBlockByTxID", [members.consortium.channel, tx_id])

    assert record == {"task_id": task, "member": "ledger-bolt", "msp_id": "WarehouseMSP", "sha256": digest}
    assert digest.encode() in block
    assert share not in block and base64.b64encode(share) not in block
    assert bolt.ledger.read_key_share(task) == share

    # Another org's member has no share of its own to read, and cannot name bolt's.
    with pytest.raises(GatewayError, match=re.escape(f"committee member ledger-cargo has stored no key share "
                                                     f"for task {task}")):
        cargo.ledger.read_key_share(task)
    # Not even the other org's peer that endorsed the store kept the share.
    bolt_contract = bolt.gateway.network(members.consortium.channel).contract(members.consortium.chaincode)
    with pytest.raises(GatewayError, match=re.escape(
            f"the peer that ran this query keeps no copy of the key share of ledger-bolt for task {task}: "
            f"only peers of WarehouseMSP do; send the query to one of them")):
        bolt_contract.evaluate("ReadKeyShare", [task], endorsing_organizations=["ManufacturerMSP"])
    # A share endorsed without the member's own org would be kept by no peer at all.
    with pytest.raises(FabricError, match="must include the caller's own organization WarehouseMSP"):
        bolt.ledger.store_key_share(task, share, endorsing_organizations=["ManufacturerMSP", "CarrierMSP"])
    # Only committee members hold shares.
    with pytest.raises(GatewayError, match="company ledger-pub does not hold the committee role"):
        pub.ledger.read_key_share(task)


def test_a_second_key_share_and_one_sent_outside_the_transient_map_are_refused(members: Members) -> None:
    task = unique_task("custody-twice")
    members.publisher.ledger.create_task(genesis(task, members))
    cargo = members.cargo
    cargo.ledger.store_key_share(task, b"first share", endorsing_organizations=["CarrierMSP", "WarehouseMSP"])

    def snapshot() -> object:
        return members.channel_height(), cargo.ledger.get_key_share_record(task, "ledger-cargo")

    with refused(f"committee member ledger-cargo already stored its key share for task {task}", snapshot):
        cargo.ledger.store_key_share(task, b"second share", endorsing_organizations=["CarrierMSP", "WarehouseMSP"])
    with refused('send the key share in the transient map under "key_share", not as an argument', snapshot):
        members.bolt.gateway.network(members.consortium.channel).contract(members.consortium.chaincode).submit(
            "StoreKeyShare", [task])
    assert cargo.ledger.read_key_share(task) == b"first share"
    with pytest.raises(GatewayError, match="committee member ledger-bolt has stored no key share"):
        cargo.ledger.get_key_share_record(task, "ledger-bolt")


# -- rejections leave the ledger unchanged -------------------------------------------------


def test_a_company_without_the_publisher_role_cannot_create_a_task(members: Members) -> None:
    task = unique_task("unpublished")

    def snapshot() -> object:
        with pytest.raises(GatewayError, match=re.escape(f"task {task} does not exist")):
            members.publisher.ledger.get_task(task)
        ledger = members.publisher.ledger
        return (members.channel_height(), ledger.get_task_history(task),
                [(ledger.get_company(m.company), ledger.get_company_history(m.company))
                 for m in (members.acme, members.bolt, members.cargo)])

    with refused("company ledger-acme does not hold the publisher role", snapshot):
        members.acme.ledger.create_task(genesis(task, members))
    assert members.publisher.ledger.get_task_history(task) == []


def test_a_replayed_update_is_rejected_and_the_ledger_is_unchanged(members: Members) -> None:
    task = unique_task("replay")
    members.publisher.ledger.create_task(genesis(task, members))
    members.publisher.ledger.open_round(task, 1, epsilon_after="1")
    first = members.bolt.ledger.submit_update(task, 1, artifact_sha256=sha("bolt/1"), size_bytes=10, samples=5,
                                              compute_millis=5)

    with refused(f"company ledger-bolt already submitted an update for round 1 of task {task} (tx {first})",
                 lambda: state_of(members, task, rounds=(1,), companies=(members.bolt,))):
        members.bolt.ledger.submit_update(task, 1, artifact_sha256=sha("bolt/1"), size_bytes=10, samples=5,
                                          compute_millis=5)


def test_an_update_to_a_closed_round_is_rejected_and_the_ledger_is_unchanged(members: Members) -> None:
    pub, acme, bolt, cargo = members.publisher, members.acme, members.bolt, members.cargo
    task = collecting_round(members, "late", (bolt, cargo))
    acme.ledger.record_aggregate(task, 1, included=[bolt.company, cargo.company], aggregate_sha256=sha("agg"))
    for m in (bolt, cargo):
        m.ledger.vote(task, 1, valid=True)
    pub.ledger.close_round(task, 1, model_sha256=sha("model-1"))

    with refused(f"round 1 of task {task} is closed: updates are accepted only while it collects",
                 lambda: state_of(members, task, rounds=(1,), companies=(acme, bolt, cargo))):
        acme.ledger.submit_update(task, 1, artifact_sha256=sha("acme/late"), size_bytes=10, samples=5,
                                  compute_millis=5)


def test_only_the_leader_records_an_aggregate_and_only_of_updates_that_exist(members: Members) -> None:
    acme, bolt, cargo = members.acme, members.bolt, members.cargo
    task = collecting_round(members, "aggregate", (acme, bolt))

    def snapshot() -> object:
        return state_of(members, task, rounds=(1,), companies=(acme, bolt, cargo))

    with refused("only the leader of round 1 (ledger-acme) may record its aggregate", snapshot):
        bolt.ledger.record_aggregate(task, 1, included=[acme.company, bolt.company], aggregate_sha256=sha("agg"))
    with refused(f"the aggregate lists company ledger-cargo, which has no update in round 1 of task {task}",
                 snapshot):
        acme.ledger.record_aggregate(task, 1, included=[bolt.company, cargo.company], aggregate_sha256=sha("agg"))


def test_a_vote_by_a_company_not_on_the_committee_is_rejected(members: Members) -> None:
    acme, bolt, cargo = members.acme, members.bolt, members.cargo
    task = collecting_round(members, "outsider", (acme, cargo))
    acme.ledger.record_aggregate(task, 1, included=[acme.company, cargo.company], aggregate_sha256=sha("agg"))

    with refused(f"company ledger-outsider is not on the committee of task {task}",
                 lambda: state_of(members, task, rounds=(1,), companies=(members.outsider, acme, bolt, cargo))):
        members.outsider.ledger.vote(task, 1, valid=True)


def test_a_round_past_the_privacy_budget_cannot_be_opened(members: Members) -> None:
    task = unique_task("budget")
    members.publisher.ledger.create_task(genesis(task, members, epsilon_budget="3", noise_multiplier="1.1"))
    # With noise multiplier 1.1 and delta 1e-5, one full-participation round already costs epsilon ~4.24.
    epsilon = RdpAccountant(noise_multiplier=1.1).epsilon_after(1, delta=DELTA)

    with refused(f"round 1 would bring task {task} to epsilon {fixed_point(epsilon)}, past its budget of 3",
                 lambda: state_of(members, task)):
        members.publisher.ledger.open_round(task, 1, epsilon_after=epsilon)
    with pytest.raises(GatewayError, match=re.escape(f"round 1 of task {task} has not been opened")):
        members.publisher.ledger.get_round(task, 1)


def test_a_revoked_company_can_do_nothing_and_revocation_is_final(members: Members) -> None:
    pub, acme, bolt = members.publisher, members.acme, members.bolt
    doomed = members.enroll("Warehouse", "participant,committee")
    name = f"ledger-doomed-{uuid.uuid4().hex[:8]}"
    doomed.ledger.register_company(name, roles=["participant"])
    doomed.company = name
    task = unique_task("revoked")
    pub.ledger.create_task(genesis(task, members, participants=[acme, bolt, doomed]))
    pub.ledger.open_round(task, 1, epsilon_after="1")

    def snapshot() -> object:
        return state_of(members, task, rounds=(1,), companies=(doomed,))

    with refused(f"only an admin of WarehouseMSP may change the status of company {name}", snapshot):
        members.admins["Carrier"].ledger.set_company_status(name, "revoked")
    revoked = members.admins["Warehouse"].ledger.set_company_status(name, "revoked")
    with refused(f"company {name} is revoked", snapshot):
        doomed.ledger.submit_update(task, 1, artifact_sha256=sha("doomed/1"), size_bytes=10, samples=5,
                                    compute_millis=5)
    with refused(f"company {name} is revoked; revocation is final", snapshot):
        members.admins["Warehouse"].ledger.set_company_status(name, "active")

    history = pub.ledger.get_company_history(name)
    assert [h["value"]["status"] for h in history] == ["active", "active", "revoked"]  # registered, tokens, revoked
    assert history[-1]["tx_id"] == revoked


# -- rounds that end without a model -------------------------------------------------------


def test_a_committee_that_rejects_the_aggregate_fails_the_round_and_penalizes_the_leader(members: Members) -> None:
    pub, acme, bolt, cargo = members.publisher, members.acme, members.bolt, members.cargo
    task = collecting_round(members, "rejected", (bolt, cargo))
    acme.ledger.record_aggregate(task, 1, included=[bolt.company, cargo.company], aggregate_sha256=sha("agg"))
    leader_before = pub.ledger.get_company(acme.company)

    bolt.ledger.vote(task, 1, valid=False, reason="recomputed aggregate differs")
    cargo.ledger.vote(task, 1, valid=False, reason="hash mismatch")

    round1 = pub.ledger.get_round(task, 1)
    leader = pub.ledger.get_company(acme.company)
    votes = pub.ledger.list_votes(task, 1)
    assert round1["status"] == "failed" and "hash mismatch" in round1.get("failure_reason", "")
    assert (leader["reputation"], leader["stake"]) == (leader_before["reputation"] - 100,
                                                       leader_before["stake"] - 100)
    assert [(v["member"], v["valid"], v.get("reason")) for v in votes] == [
        ("ledger-bolt", False, "recomputed aggregate differs"), ("ledger-cargo", False, "hash mismatch")]
    # A failed round spends no budget: the next one opens from the epsilon actually spent.
    pub.ledger.open_round(task, 2, epsilon_after="0.5")
    assert pub.ledger.get_task(task)["epsilon_spent_micro"] == 0


def test_the_publisher_fails_a_stalled_round(members: Members) -> None:
    pub, bolt = members.publisher, members.bolt
    task = unique_task("stalled")
    pub.ledger.create_task(genesis(task, members))
    pub.ledger.open_round(task, 1, epsilon_after="1")
    bolt.ledger.submit_update(task, 1, artifact_sha256=sha("bolt/1"), size_bytes=10, samples=5, compute_millis=5)

    with refused("company ledger-bolt does not hold the publisher role",
                 lambda: state_of(members, task, rounds=(1,), companies=(bolt,))):
        bolt.ledger.fail_round(task, 1, reason="stalled")
    failed = pub.ledger.fail_round(task, 1, reason="too few updates before the deadline")

    history = pub.ledger.get_round_history(task, 1)
    assert [h["value"]["status"] for h in history] == ["open", "collecting", "failed"]
    assert history[-1]["tx_id"] == failed
    assert history[-1]["value"].get("failure_reason") == "too few updates before the deadline"
    with refused(f"round 1 of task {task} is failed: an aggregate is recorded only while it collects",
                 lambda: state_of(members, task, rounds=(1,), companies=(bolt,))):
        members.acme.ledger.record_aggregate(task, 1, included=[bolt.company, members.acme.company],
                                             aggregate_sha256=sha("agg"))
