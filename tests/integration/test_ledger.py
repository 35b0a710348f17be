"""Every FedLedger transaction, through :class:`~fedledger.fabric.Ledger`, on the consortium's real peers.

The companies are fresh identities enrolled at each organization's Fabric CA with only the roles
they need, registered once for the module; the committee members record X25519 encryption keys
and Ed25519 VRF keys, and a key-management company (the dealer) deals each task's threshold key as
shares sealed to them. Each round's leader is elected on the ledger: every committee member proves
its VRF on the round's seed, and collection's close ranks them. Each test uses its own task, so the
tests do not depend on each other or on what other modules put on the shared ledger; where a test
checks stake, reputation or tokens it compares them with their values before the test.
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
from nacl.exceptions import CryptoError as SealedBoxError
from nacl.public import PrivateKey, PublicKey, SealedBox

from fedledger.crypto import (
    EscrowRecord,
    deal_threshold_key,
    dump_escrow_share,
    dump_key_share,
    dump_private_key,
    dump_threshold_key,
    escrow_private_key,
    generate_keypair,
    load_escrow_share,
    load_private_key,
    recover_private_key,
)
from fedledger.crypto import PublicKey as PaillierPublicKey
from fedledger.crypto.sealing import seal
from fedledger.crypto.sortition import sortition_input
from fedledger.crypto.vrf import VrfKeyPair
from fedledger.crypto.vrf import prove as vrf_prove
from fedledger.errors import EndorseError, GatewayError
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
from fedledger.fabric.ledger import Genesis, RoundRecord, SealedShare, canonical_json, fixed_point
from fedledger.fabric.proposal import Args
from fedledger.privacy import RdpAccountant, epsilon_micro

from .conftest import Consortium

ROLE_ATTRIBUTE = "fedledger.role"
DELTA = 1e-5
# How long to wait for the chaincode events of transactions that have already committed.
EVENT_WAIT_SECONDS = 30.0
# How long every peer may take to commit a block another peer has committed.
PEER_CATCH_UP_SECONDS = 30.0
# How long the peers of a fresh network may take to discover each other through gossip.
DISCOVERY_SECONDS = 60.0
# A Flower node's public key stands in as PEM-looking text: the ledger only keeps it.
NODE_KEY = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEbGVkZ2VyLXRlc3Q=\n-----END PUBLIC KEY-----\n"


@dataclass
class Member:
    """One client identity of one organization, connected to its org's peer, with the X25519 key
    pair whose public half its company records as its encryption key, and its VRF key pair."""

    org: str
    gateway: Gateway
    ledger: Ledger
    company: str = ""
    sealing: PrivateKey | None = None
    vrf: VrfKeyPair | None = None

    @property
    def fingerprint(self) -> str:
        return self.gateway.identity.fingerprint

    def record_keys(self) -> str:
        """Give the company fresh encryption and VRF key pairs and record the public halves (and a node key)."""
        self.sealing, self.vrf = PrivateKey.generate(), VrfKeyPair.generate()
        return self.ledger.record_company_keys(encryption_key=bytes(self.sealing.public_key).hex(), node_key=NODE_KEY,
                                               vrf_key=self.vrf.public_key.hex())

    def stand(self, task_id: str, round_number: int) -> str:
        """Prove the company's VRF on the round's seed and record the proof: it stands for leader."""
        assert self.vrf is not None, f"{self.company} has recorded no VRF key"
        seed = bytes.fromhex(self.ledger.get_round(task_id, round_number)["seed"])
        proof = vrf_prove(self.vrf.secret_key, sortition_input(task_id, round_number, seed))
        return self.ledger.submit_election_proof(task_id, round_number, proof=proof)

    def open(self, sealed: bytes) -> bytes:
        assert self.sealing is not None, f"{self.company} has recorded no encryption key"
        return bytes(SealedBox(self.sealing).decrypt(sealed))


@dataclass(frozen=True)
class ThresholdKey:
    """One threshold key (2 of 3, 1024 bits) the module's tasks share: dealing is what is tested."""

    public_key: bytes
    paillier_n: str
    shares: tuple[bytes, ...]


@dataclass
class Members:
    """The module's companies, each org's admin, and a way to enroll more identities."""

    consortium: Consortium
    publisher: Member  # Manufacturer, publisher role only
    acme: Member  # Manufacturer, participant and committee
    bolt: Member  # Warehouse, participant and committee
    cargo: Member  # Carrier, participant and committee
    outsider: Member  # Carrier, participant and committee, on no task's committee
    dealer: Member  # Warehouse, dealer role only: deals every task's key here
    admins: dict[str, Member]
    enroll: Callable[[str, str], Member]
    key: ThresholdKey

    def channel_height(self) -> int:
        return max(peer_heights(self.consortium, self.publisher.gateway))

    def sealed_shares(self, committee: Sequence[str]) -> list[SealedShare]:
        """The module key's shares, in committee order, each sealed to the encryption key its member
        recorded on the ledger, as a dealer makes them."""
        ledger = self.dealer.ledger
        return [SealedShare(name, bytes(SealedBox(PublicKey(bytes.fromhex(ledger.get_company(name)["encryption_key"])))
                                         .encrypt(share)), hashlib.sha256(share).hexdigest())
                for name, share in zip(committee, self.key.shares, strict=True)]

    def deal(self, task_id: str, *, dealer: Member | None = None) -> str:
        """Deal the module key for a task whose committee is its genesis's (by its dealer, by default)."""
        committee = self.publisher.ledger.get_task(task_id)["committee"]
        return (dealer or self.dealer).ledger.deal_key(task_id, paillier_n=self.key.paillier_n,
                                                       public_key=self.key.public_key,
                                                       shares=self.sealed_shares(committee))

    def by_company(self, name: str) -> Member:
        return next(m for m in (self.acme, self.bolt, self.cargo, self.outsider) if m.company == name)

    def stand(self, task_id: str, round_number: int, standing: Sequence[Member] = ()) -> list[str]:
        """Each of ``standing`` (by default the task's whole committee) proves its VRF for the round."""
        committee = standing or [self.by_company(n) for n in self.publisher.ledger.get_task(task_id)["committee"]]
        return [m.stand(task_id, round_number) for m in committee]

    def close_collection(self, task_id: str, round_number: int) -> RoundRecord:
        """The publisher closes the round's collection: the ledger fixes its updates and elects its leaders."""
        self.publisher.ledger.close_collection(task_id, round_number)
        return self.publisher.ledger.get_round(task_id, round_number)

    def ranked(self, task_id: str, round_number: int) -> list[Member]:
        """The members the round's election ranked, first (the leader) first."""
        election = self.publisher.ledger.get_round(task_id, round_number).get("election")
        assert election is not None, f"round {round_number} of task {task_id} has not been elected"
        return [self.by_company(name) for name in election["ranking"]]

    def leader(self, task_id: str, round_number: int) -> Member:
        return self.ranked(task_id, round_number)[0]


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

    def evaluate(self, name: str, args: Args = ()) -> bytes:
        return self._contract.evaluate(name, args)

    def submit_async(self, name: str, args: Args = ()) -> _CommittedEverywhere:
        return _CommittedEverywhere(self._contract.submit_async(name, args), self._heights)


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

    public, shares = deal_threshold_key(threshold=2, parties=3, key_bits=1024)
    try:
        team = Members(
            consortium,
            publisher=enroll("Manufacturer", "publisher"),
            acme=enroll("Manufacturer", "participant,committee"),
            bolt=enroll("Warehouse", "participant,committee"),
            cargo=enroll("Carrier", "participant,committee"),
            outsider=enroll("Carrier", "participant,committee"),
            dealer=enroll("Warehouse", "dealer"),
            admins={org: admin(org) for org in ("Manufacturer", "Warehouse", "Carrier")},
            enroll=enroll,
            key=ThresholdKey(dump_threshold_key(public), format(int(public.public_key.n), "x"),
                             tuple(dump_key_share(s) for s in shares)),
        )
        ensure_company(team.publisher, "ledger-pub", ["publisher"])
        ensure_company(team.dealer, "ledger-kmc", ["dealer"])
        for member, name in ((team.acme, "ledger-acme"), (team.bolt, "ledger-bolt"), (team.cargo, "ledger-cargo"),
                             (team.outsider, "ledger-outsider")):
            ensure_company(member, name, ["participant", "committee"])
            member.record_keys()
        yield team
    finally:
        for gateway in opened:
            gateway.close()


def unique_task(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def sha(label: str) -> str:
    """A stand-in artifact hash: the SHA-256 of a label."""
    return hashlib.sha256(label.encode()).hexdigest()


def partial(task_id: str, round_number: int, member: Member) -> str:
    """A stand-in hash of a member's partial decryption of a round's aggregate."""
    return sha(f"{task_id}/{round_number}/{member.company}/partial")


def format_micro(value: int) -> str:
    """Millionths as the chaincode prints them: a decimal without trailing zeros."""
    return format(Decimal(value).scaleb(-6).normalize(), "f")


# An hour per leader slot: in these tests only the first-ranked member may record an aggregate.
LEADER_WINDOW_SECONDS = 3600


def genesis(task_id: str, members: Members, *, participants: list[Member] | None = None,
            committee: list[Member] | None = None, quorum: int = 2, epsilon_budget: str = "3",
            noise_multiplier: str = "3", rounds: int = 2) -> Genesis:
    """A valid genesis: leaders elected with an hour's slot each; no reputation threshold and no
    reputation gain, so penalties demote nobody and reputation moves only by them."""
    participants = participants or [members.acme, members.bolt, members.cargo]
    committee = committee or [members.acme, members.bolt, members.cargo]
    return {
        "task_id": task_id,
        "model": {"description": "small CNN on MNIST", "initial_weights_sha256": sha(f"{task_id}/weights-0")},
        "rounds": rounds,
        "dp": {"epsilon_budget": epsilon_budget, "delta": fixed_point(DELTA), "clip_norm": "4",
               "noise_multiplier": noise_multiplier, "noise_mode": "distributed", "unit": "company",
               "sample_rate": "1", "steps_per_round": 1, "label_epsilon": "0"},
        "he": {"key_custody": "threshold", "threshold": 2, "committee_size": len(committee),
               "dealer": members.dealer.company},
        "committee": [m.company for m in committee],
        "quorum": quorum,
        "participants": [m.company for m in participants],
        "min_participants": 2,
        "seed0": "5e" * 32,
        "leader_window_seconds": LEADER_WINDOW_SECONDS,
        "max_samples": 1000,
        "millis_per_sample": 1000,
        "initial_tokens": 50,
        "reward_per_round": 1000,
        "penalty": 100,
        "reputation_threshold": 0,
        "reputation_gain": 0,
    }


def chaincode_message(err: GatewayError) -> list[str]:
    return [detail.message for detail in err.details]


def active_task(members: Members, document: Genesis) -> str:
    """Create a task from ``document`` and have its dealer deal its key: a task whose rounds can open."""
    members.publisher.ledger.create_task(document)
    members.deal(document["task_id"])
    return document["task_id"]


def collecting_round(members: Members, prefix: str, submitters: tuple[Member, ...]) -> str:
    """A fresh task whose round 1 is open, its committee standing for leader, and holds one update
    from each of ``submitters``."""
    task = active_task(members, genesis(unique_task(prefix), members))
    members.publisher.ledger.open_round(task, 1)
    members.stand(task, 1)
    for m in submitters:
        m.ledger.submit_update(task, 1, artifact_sha256=sha(f"{m.company}/1"), size_bytes=10, samples=5,
                               compute_millis=5)
    return task


def collected_round(members: Members, prefix: str, submitters: tuple[Member, ...]) -> tuple[str, Member]:
    """A fresh task whose round 1 has closed collection over ``submitters``' updates; and its leader."""
    task = collecting_round(members, prefix, submitters)
    members.close_collection(task, 1)
    return task, members.leader(task, 1)


@contextmanager
def refused(message: str | re.Pattern[str], snapshot: Callable[[], object]) -> Iterator[None]:
    """Expect the write in the ``with`` block to be refused by the chaincode with ``message``, verbatim
    (or, for a pattern, words matching it to their end), and to leave ``snapshot()`` (the affected
    records and their histories) as it was."""
    before = snapshot()
    pattern = message if isinstance(message, re.Pattern) else re.compile(re.escape(message))
    with pytest.raises(EndorseError, match=pattern) as caught:
        yield
    assert any(re.search(f"(?:{pattern.pattern})$", m) for m in chaincode_message(caught.value)), \
        caught.value.details
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
                               ledger.list_election_proofs(task_id, n),
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

    assert version == {"chaincode": "fedledger", "version": "0.4.0"}
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
    # The chaincode books epsilon with its own accountant; the client's twin must agree to the millionth.
    accountant = RdpAccountant(noise_multiplier=3.0)
    start = members.channel_height()
    events: dict[str, str] = {}  # tx id -> the event its state change must emit

    def did(event: str, tx_id: str) -> str:
        events[tx_id] = event
        return tx_id

    created = did("TaskCreated", pub.ledger.create_task(genesis(task, members)))
    dealt = did("KeyDealt", members.deal(task))
    # Round 1: all three stand for leader and train (samples 100:200:300); acme and bolt verify and
    # decrypt; cargo never votes.
    opened1 = did("RoundOpened", pub.ledger.open_round(task, 1))
    round1_proofs = [did("ElectionProofSubmitted", tx) for tx in members.stand(task, 1)]
    round1_updates = [did("UpdateSubmitted", m.ledger.submit_update(
        task, 1, artifact_sha256=sha(f"{task}/1/{m.company}"), size_bytes=4096, samples=100 * (i + 1),
        compute_millis=10)) for i, m in enumerate(trio)]
    collected1 = did("CollectionClosed", pub.ledger.close_collection(task, 1))
    leader1 = members.leader(task, 1)
    aggregated1 = did("AggregateRecorded", leader1.ledger.record_aggregate(
        task, 1, included=[m.company for m in trio], aggregate_sha256=sha(f"{task}/1/aggregate")))
    round1_votes = [did("VoteCast", m.ledger.vote(task, 1, valid=True, partial_sha256=partial(task, 1, m)))
                    for m in (acme, bolt)]
    closed1 = did("RoundClosed", pub.ledger.close_round(task, 1, model_sha256=sha(f"{task}/model-1"),
                                                        decrypted_by=[acme.company, bolt.company]))
    # Round 2: bolt and cargo train (100:200); acme and cargo verify; bolt never votes; the leader closes.
    did("RoundOpened", pub.ledger.open_round(task, 2))
    for tx in members.stand(task, 2):
        did("ElectionProofSubmitted", tx)
    for i, m in enumerate((bolt, cargo)):
        did("UpdateSubmitted", m.ledger.submit_update(task, 2, artifact_sha256=sha(f"{task}/2/{m.company}"),
                                                      size_bytes=4096, samples=100 * (i + 1), compute_millis=10))
    did("CollectionClosed", pub.ledger.close_collection(task, 2))
    leader2 = members.leader(task, 2)
    did("AggregateRecorded", leader2.ledger.record_aggregate(task, 2, included=[bolt.company, cargo.company],
                                                             aggregate_sha256=sha(f"{task}/2/aggregate")))
    for m in (acme, cargo):
        did("VoteCast", m.ledger.vote(task, 2, valid=True, partial_sha256=partial(task, 2, m)))
    closed2 = did("RoundClosed", leader2.ledger.close_round(task, 2, model_sha256=sha(f"{task}/model-2"),
                                                            decrypted_by=[cargo.company, acme.company]))

    state = pub.ledger.get_task(task)
    round1 = bolt.ledger.get_round(task, 1)
    round2 = bolt.ledger.get_round(task, 2)
    updates = cargo.ledger.list_updates(task, 1)
    votes = cargo.ledger.list_votes(task, 1)
    proofs = cargo.ledger.list_election_proofs(task, 1)
    after = {m.company: pub.ledger.get_company(m.company) for m in trio}

    assert state["status"] == "finished" and state["current_round"] == 2 and state["publisher"] == "ledger-pub"
    assert state["closed_rounds"] == 2
    assert state["epsilon_spent_micro"] == epsilon_micro(accountant.epsilon_after(2, delta=DELTA))
    assert state["epsilon_budget_micro"] == 3_000_000
    assert round1["status"] == "closed" and round1["model_sha256"] == sha(f"{task}/model-1")
    assert round1["updates"] == 3 and round1["valid_votes"] == 2 and round1["leader"] == leader1.company
    assert round1["collected"] == round1["aggregate"]["included"] == ["ledger-acme", "ledger-bolt", "ledger-cargo"]
    assert round1["aggregate"]["recorded_by"] == leader1.company
    assert round1["decrypted_by"] == ["ledger-acme", "ledger-bolt"]
    assert round2["decrypted_by"] == ["ledger-acme", "ledger-cargo"] and round2["leader"] == leader2.company
    assert round1["epsilon_after_micro"] == epsilon_micro(accountant.epsilon_after(1, delta=DELTA))
    assert round2["epsilon_after_micro"] == state["epsilon_spent_micro"]
    assert sorted(round1["election"]["ranking"]) == [m.company for m in trio]
    assert [(p["member"], p["tx_id"]) for p in proofs] == [(m.company, tx) for m, tx in zip(trio, round1_proofs)]
    assert [(u["company"], u["samples"], u["tx_id"]) for u in updates] == [
        ("ledger-acme", 100, round1_updates[0]), ("ledger-bolt", 200, round1_updates[1]),
        ("ledger-cargo", 300, round1_updates[2])]
    assert [(v["member"], v["valid"], v["counted"], v.get("partial_sha256"), v["tx_id"]) for v in votes] == [
        ("ledger-acme", True, True, partial(task, 1, acme), round1_votes[0]),
        ("ledger-bolt", True, True, partial(task, 1, bolt), round1_votes[1])]

    # Round 1 pays 1000 by samples x compute time (1:2:3 -> 166, 333, 500), round 2 pays 1:2 (333, 666);
    # every participant got 50 initial tokens, which are also stake; a committee member who did not
    # vote loses 100 of stake and of reputation (cargo in round 1, bolt in round 2).
    def moved(name: str) -> tuple[int, int, int]:
        """How a company's (tokens, stake, reputation) moved during the task."""
        was, now = before[name], after[name]
        return now["tokens"] - was["tokens"], now["stake"] - was["stake"], now["reputation"] - was["reputation"]

    assert moved("ledger-acme") == (50 + 166, 50 + 166, 0)
    assert moved("ledger-bolt") == (50 + 333 + 333, 50 + 666 - 100, -100)
    assert moved("ledger-cargo") == (50 + 500 + 666, 50 + 1166 - 100, -100)
    assert all(c["status"] == "active" for c in after.values())
    assert round1["rewards"] == {"ledger-acme": 166, "ledger-bolt": 333, "ledger-cargo": 500}
    assert round1["standing"] == {"penalties": [{"company": "ledger-cargo", "duty": "vote", "amount": 100}]}
    assert round2["standing"] == {"penalties": [{"company": "ledger-bolt", "duty": "vote", "amount": 100}]}

    # The audit trail: every committed change, oldest first, naming the transaction that made it.
    round_history = pub.ledger.get_round_history(task, 1)
    task_history = pub.ledger.get_task_history(task)
    update_history = pub.ledger.get_update_history(task, 1, "ledger-bolt")
    bolt_history = pub.ledger.get_company_history("ledger-bolt")
    # The updates and the votes are written under their companies' own keys (their own history),
    # not the round's: companies submitting or voting together do not conflict.
    assert [h["tx_id"] for h in round_history] == [opened1, collected1, aggregated1, closed1]
    assert [h["value"]["status"] for h in round_history] == ["open", "collected", "aggregated", "closed"]
    assert (round_history[-1]["value"]["valid_votes"], round_history[-1]["value"]["invalid_votes"]) == (2, 0)
    assert [h["value"]["current_round"] for h in task_history] == [0, 0, 1, 1, 2, 2]
    assert [h["value"]["closed_rounds"] for h in task_history] == [0, 0, 0, 1, 1, 2]
    assert [h["value"]["status"] for h in task_history] == [
        "awaiting-key", "active", "active", "active", "active", "finished"]
    assert [h["tx_id"] for h in task_history[:2]] == [created, dealt] and task_history[-1]["tx_id"] == closed2
    assert [h["timestamp"] for h in task_history] == sorted(h["timestamp"] for h in task_history)
    assert [h["tx_id"] for h in update_history] == [round1_updates[1]]
    assert [h["tx_id"] for h in bolt_history[-3:]] == [created, closed1, closed2]

    # One chaincode event per state change, from the transaction that made it.
    seen = collect_events(members, start, set(events))
    assert sorted((e.tx_id, e.event_name) for e in seen) == sorted(events.items())
    payloads = {e.tx_id: json.loads(e.payload) for e in seen}
    assert payloads[created] == task_history[0]["value"]
    assert payloads[dealt] == {"task_id": task, "dealer": "ledger-kmc", "members": [m.company for m in trio],
                               "public_key_sha256": hashlib.sha256(members.key.public_key).hexdigest()}
    assert payloads[opened1] == round_history[0]["value"]
    assert [payloads[tx] for tx in round1_proofs] == proofs
    assert [payloads[tx] for tx in round1_votes] == votes  # acme's and bolt's, as ListVotes gives them
    assert payloads[collected1] == round_history[1]["value"]
    assert payloads[closed1] == round_history[-1]["value"]


# -- key custody ---------------------------------------------------------------------------


def test_the_dealer_deals_shares_that_only_each_member_can_open(members: Members) -> None:
    pub, acme, bolt, cargo = members.publisher, members.acme, members.bolt, members.cargo
    task = unique_task("custody")
    pub.ledger.create_task(genesis(task, members))
    awaiting = pub.ledger.get_task(task)

    tx_id = members.deal(task)

    dealt = cargo.ledger.get_task(task)
    records = {m.company: cargo.ledger.get_key_share_record(task, m.company) for m in (acme, bolt, cargo)}
    block = pub.gateway.network(members.consortium.channel).contract("qscc").evaluate(
        "GetBlockByTxID", [members.consortium.channel, tx_id])
    assert awaiting["status"] == "awaiting-key" and "paillier_n" not in awaiting["he"]
    assert dealt["status"] == "active" and dealt["he"]["paillier_n"] == members.key.paillier_n
    assert dealt["he"]["public_key_sha256"] == hashlib.sha256(members.key.public_key).hexdigest()
    assert bolt.ledger.get_threshold_key(task) == members.key.public_key
    for member, share in zip((acme, bolt, cargo), members.key.shares, strict=True):
        record = records[member.company]
        assert member.sealing is not None
        assert {k: v for k, v in record.items() if k != "sealed_share"} == {
            "task_id": task, "member": member.company, "msp_id": str(members.consortium.org(member.org)["msp_id"]),
            "encryption_key": bytes(member.sealing.public_key).hex(), "share_sha256": hashlib.sha256(share).hexdigest(),
            "dealer": "ledger-kmc"}
        # The sealed share is public: in the block and readable by anyone; only its member opens it.
        sealed = pub.ledger.sealed_share(task, member.company)
        assert base64.b64encode(sealed) in block and share not in block
        assert member.open(sealed) == share
        for other in (m for m in (acme, bolt, cargo) if m is not member):
            with pytest.raises(SealedBoxError):
                other.open(sealed)


def test_the_dealer_alone_may_deal_once(members: Members) -> None:
    pub, acme = members.publisher, members.acme
    task = unique_task("custody-once")
    pub.ledger.create_task(genesis(task, members))
    rival = members.enroll("Carrier", "dealer")
    ensure_company(rival, f"ledger-kmc-{uuid.uuid4().hex[:8]}", ["dealer"])

    def snapshot() -> object:
        return state_of(members, task)

    with refused("company ledger-acme does not hold the dealer role", snapshot):
        members.deal(task, dealer=acme)
    with refused(f"only the task's dealer ledger-kmc may deal the key of task {task}", snapshot):
        members.deal(task, dealer=rival)
    members.deal(task)
    first = pub.ledger.get_threshold_key(task), pub.ledger.get_key_share_record(task, "ledger-bolt")

    key_sha256 = hashlib.sha256(members.key.public_key).hexdigest()
    with refused(f"the key of task {task} has already been dealt (public key {key_sha256}); a key is dealt once",
                 snapshot):
        members.deal(task)
    assert (pub.ledger.get_threshold_key(task), pub.ledger.get_key_share_record(task, "ledger-bolt")) == first


def test_a_genesis_whose_dealer_is_also_a_committee_member_is_refused_and_the_ledger_is_unchanged(
        members: Members) -> None:
    task = unique_task("dealer-on-committee")
    document = genesis(task, members, committee=[members.acme, members.bolt, members.dealer])

    def snapshot() -> object:
        with pytest.raises(GatewayError, match=re.escape(f"task {task} does not exist")):
            members.publisher.ledger.get_task(task)
        ledger = members.publisher.ledger
        return (members.channel_height(), ledger.get_task_history(task),
                [(ledger.get_company(m.company), ledger.get_company_history(m.company))
                 for m in (members.acme, members.bolt, members.cargo, members.dealer)])

    with refused(f"the dealer ledger-kmc may hold no other role in task {task}: it is also a committee member",
                 snapshot):
        members.publisher.ledger.create_task(document)


def test_a_genesis_whose_privacy_unit_does_not_admit_its_noise_or_sampling_is_refused_and_the_ledger_is_unchanged(
        members: Members) -> None:
    task = unique_task("dp-unit")

    def snapshot() -> object:
        with pytest.raises(GatewayError, match=re.escape(f"task {task} does not exist")):
            members.publisher.ledger.get_task(task)
        return members.channel_height(), members.publisher.ledger.get_task_history(task)

    central_records = genesis(task, members)
    central_records["dp"] |= {"unit": "record", "noise_mode": "central", "sample_rate": "0.05"}
    sampled_companies = genesis(task, members)
    sampled_companies["dp"] |= {"unit": "company", "noise_mode": "distributed", "sample_rate": "0.5"}

    with refused('dp.noise_mode must be distributed or local for unit record, got "central"', snapshot):
        members.publisher.ledger.create_task(central_records)
    with refused('dp.sample_rate must be 1 for unit company: every company takes part in every round, so there is '
                 'no sampling to amplify privacy; got "0.5"', snapshot):
        members.publisher.ledger.create_task(sampled_companies)


def test_a_round_cannot_open_before_the_key_is_dealt(members: Members) -> None:
    task = unique_task("no-key")
    members.publisher.ledger.create_task(genesis(task, members))

    with refused(f"task {task} awaits its key from dealer ledger-kmc", lambda: state_of(members, task)):
        members.publisher.ledger.open_round(task, 1)
    with pytest.raises(GatewayError, match=re.escape(f"task {task} awaits its key from dealer ledger-kmc")):
        members.bolt.ledger.get_threshold_key(task)
    with pytest.raises(GatewayError, match=re.escape(f"round 1 of task {task} has not been opened")):
        members.publisher.ledger.get_round(task, 1)


# -- escrow custody ------------------------------------------------------------------------


def escrow_on_ledger(ledger: Ledger, task_id: str) -> tuple[PaillierPublicKey, EscrowRecord]:
    """An escrow task's public key and escrow record as anyone reads them on the ledger: the public
    key its dealer dealt, the genesis's recovery threshold, and each member's commitment in
    committee order (the i-th member holds share i)."""
    task = ledger.get_task(task_id)
    public_key = PaillierPublicKey.from_dict(json.loads(ledger.get_threshold_key(task_id)))
    commitments = tuple(ledger.get_key_share_record(task_id, m)["share_sha256"] for m in task["committee"])
    return public_key, EscrowRecord(public_key.fingerprint, task["he"]["threshold"], len(commitments), commitments)


def test_an_escrow_master_fails_over_and_two_members_release_their_shares_so_the_new_master_rebuilds_the_key(
        members: Members) -> None:
    pub, acme, bolt, cargo = members.publisher, members.acme, members.bolt, members.cargo
    dock = members.enroll("Warehouse", "participant,committee")
    ensure_company(dock, f"ledger-dock-{uuid.uuid4().hex[:8]}", ["participant", "committee"])
    dock.record_keys()
    committee = (acme, bolt, cargo, dock)
    public_key, private_key = generate_keypair(key_bits=1024)
    escrow, shares = escrow_private_key(private_key, threshold=2, parties=len(committee))
    task = unique_task("escrow")
    document = genesis(task, members, committee=list(committee))
    document["he"] = {"key_custody": "escrow", "threshold": 2, "committee_size": len(committee),
                      "dealer": members.dealer.company, "master": acme.company}
    pub.ledger.create_task(document)

    # The dealer seals each member's escrow share to it, and the whole key to the master, acme.
    dealer = members.dealer.ledger

    def sealed_to(company: str, data: bytes) -> bytes:
        return seal(dealer.get_company(company)["encryption_key"], data)

    key_bytes = dump_private_key(private_key)
    dealer.deal_key(task, paillier_n=format(int(public_key.n), "x"),
                    public_key=canonical_json(public_key.to_dict()).encode(),
                    shares=[SealedShare(m.company, sealed_to(m.company, dump_escrow_share(share)), share.digest())
                            for m, share in zip(committee, shares, strict=True)],
                    master_key=SealedShare(acme.company, sealed_to(acme.company, key_bytes),
                                           hashlib.sha256(key_bytes).hexdigest()))

    record = cargo.ledger.get_master_key_record(task)
    sealed_key = cargo.ledger.sealed_master_key(task)
    opened_key = acme.open(sealed_key)
    assert acme.sealing is not None
    assert {k: v for k, v in record.items() if k != "sealed_key"} == {
        "task_id": task, "master": acme.company, "msp_id": "ManufacturerMSP",
        "encryption_key": bytes(acme.sealing.public_key).hex(), "key_sha256": hashlib.sha256(key_bytes).hexdigest(),
        "dealer": members.dealer.company}
    assert opened_key == key_bytes and load_private_key(opened_key, public_key).raw_decrypt(public_key.raw_encrypt(7)) == 7
    with pytest.raises(SealedBoxError):
        bolt.open(sealed_key)
    assert pub.ledger.get_task(task)["master"] == acme.company

    def snapshot() -> object:
        return state_of(members, task), pub.ledger.list_escrow_releases(task)

    def own_share(member: Member) -> tuple[bytes, str]:
        """The member's escrow share opened from the ledger, checked against its commitment."""
        _, on_ledger = escrow_on_ledger(member.ledger, task)
        opened = member.open(member.ledger.sealed_share(task, member.company))
        commitment = member.ledger.get_key_share_record(task, member.company)["share_sha256"]
        assert load_escrow_share(opened, on_ledger).digest() == commitment
        return opened, commitment

    with refused(f"the master of task {task} has not been failed over: escrow shares are released only to a master "
                 f"that took over, and {acme.company} still holds the key", snapshot):
        cargo.ledger.release_escrow_share(task, master=acme.company, sealed_share=b"\0" * 64,
                                          share_sha256=own_share(cargo)[1])

    # acme stops answering: the publisher hands the key to the next member, bolt.
    start = members.channel_height()
    failed_over = pub.ledger.failover_master(task, reason=f"{acme.company} stopped answering")
    state = cargo.ledger.get_task(task)
    failover_time = pub.ledger.get_task_history(task)[-1]["timestamp"]
    assert state["master"] == bolt.company and state["he"].get("master") == acme.company
    assert state.get("master_history") == [{"master": bolt.company, "failed": acme.company,
                                            "reason": f"{acme.company} stopped answering", "tx_id": failed_over,
                                            "at": failover_time}]

    # cargo and dock release their shares to bolt, sealed to the key bolt recorded.
    bolt_key = cargo.ledger.get_company(bolt.company)["encryption_key"]
    released: dict[str, str] = {}
    for member in (cargo, dock):
        opened, commitment = own_share(member)
        released[member.company] = member.ledger.release_escrow_share(
            task, master=bolt.company, sealed_share=seal(bolt_key, opened), share_sha256=commitment)
    with refused(f"company {cargo.company} already released its escrow share of task {task} to master "
                 f"{bolt.company} (tx {released[cargo.company]})", snapshot):
        cargo.ledger.release_escrow_share(task, master=bolt.company, sealed_share=seal(bolt_key, own_share(cargo)[0]),
                                          share_sha256=own_share(cargo)[1])
    with refused(f"company {bolt.company} is the current master of task {task}: it opens its own escrow share from "
                 f"its key share record and releases none to itself", snapshot):
        bolt.ledger.release_escrow_share(task, master=bolt.company, sealed_share=seal(bolt_key, own_share(bolt)[0]),
                                         share_sha256=own_share(bolt)[1])

    # bolt rebuilds the key from the two releases and what the ledger says of the escrow.
    on_ledger_key, on_ledger_escrow = escrow_on_ledger(bolt.ledger, task)
    releases = bolt.ledger.list_escrow_releases(task)
    rebuilt = recover_private_key(on_ledger_key, on_ledger_escrow, [
        load_escrow_share(bolt.open(base64.b64decode(r["sealed_share"], validate=True)), on_ledger_escrow)
        for r in releases])

    assert on_ledger_key == public_key and on_ledger_escrow == escrow
    assert [(r["member"], r["master"], r["encryption_key"], r["tx_id"]) for r in releases] == [
        (m.company, bolt.company, bolt_key, released[m.company]) for m in (cargo, dock)]
    assert {rebuilt.p, rebuilt.q} == {private_key.p, private_key.q}
    assert rebuilt.raw_decrypt(public_key.raw_encrypt(123456789)) == 123456789
    # The events name the failover and each release, never a sealed share.
    seen = {e.tx_id: (e.event_name, json.loads(e.payload))
            for e in collect_events(members, start, {failed_over, *released.values()})}
    assert seen[failed_over] == ("MasterFailedOver", {"task_id": task, **state["master_history"][0]})
    for member, tx_id in released.items():
        name, payload = seen[tx_id]
        assert name == "EscrowShareReleased" and payload["member"] == member and payload["master"] == bolt.company
        assert "sealed_share" not in payload


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
    task = active_task(members, genesis(unique_task("replay"), members))
    members.publisher.ledger.open_round(task, 1)
    first = members.bolt.ledger.submit_update(task, 1, artifact_sha256=sha("bolt/1"), size_bytes=10, samples=5,
                                              compute_millis=5)

    with refused(f"company ledger-bolt already submitted an update for round 1 of task {task} (tx {first})",
                 lambda: state_of(members, task, rounds=(1,), companies=(members.bolt,))):
        members.bolt.ledger.submit_update(task, 1, artifact_sha256=sha("bolt/1"), size_bytes=10, samples=5,
                                          compute_millis=5)


def test_an_update_after_collection_closed_is_rejected_and_the_ledger_is_unchanged(members: Members) -> None:
    pub, acme, bolt, cargo = members.publisher, members.acme, members.bolt, members.cargo
    task, leader = collected_round(members, "late", (bolt, cargo))

    def snapshot() -> object:
        return state_of(members, task, rounds=(1,), companies=(acme, bolt, cargo))

    with refused(f"round 1 of task {task} is collected: updates are accepted only while it collects", snapshot):
        acme.ledger.submit_update(task, 1, artifact_sha256=sha("acme/late"), size_bytes=10, samples=5,
                                  compute_millis=5)
    leader.ledger.record_aggregate(task, 1, included=[bolt.company, cargo.company], aggregate_sha256=sha("agg"))
    for m in (bolt, cargo):
        m.ledger.vote(task, 1, valid=True, partial_sha256=partial(task, 1, m))
    pub.ledger.close_round(task, 1, model_sha256=sha("model-1"), decrypted_by=[bolt.company, cargo.company])

    with refused(f"round 1 of task {task} is closed: updates are accepted only while it collects", snapshot):
        acme.ledger.submit_update(task, 1, artifact_sha256=sha("acme/late"), size_bytes=10, samples=5,
                                  compute_millis=5)


def test_only_the_elected_leader_records_an_aggregate_and_only_of_the_updates_fixed_at_collection(
        members: Members) -> None:
    pub, acme, bolt, cargo = members.publisher, members.acme, members.bolt, members.cargo
    task = collecting_round(members, "aggregate", (acme, bolt))

    def snapshot() -> object:
        return state_of(members, task, rounds=(1,), companies=(acme, bolt, cargo, members.outsider))

    with refused(f"round 1 of task {task} is open: an aggregate is recorded only once collection has "
                 f"closed, and once", snapshot):
        acme.ledger.record_aggregate(task, 1, included=[acme.company, bolt.company], aggregate_sha256=sha("agg"))
    members.close_collection(task, 1)
    leader, second, _ = members.ranked(task, 1)
    closed_at = pub.ledger.get_round(task, 1)["election"]["closed_at"]

    with refused(re.compile(re.escape(
            f"company {second.company} is ranked 2 for round 1 of task {task}: it may record the aggregate only "
            f"from ledger time {closed_at + LEADER_WINDOW_SECONDS}, once each member ranked above it has had its "
            f"{LEADER_WINDOW_SECONDS} s (now ") + r"\d+\)"), snapshot):
        second.ledger.record_aggregate(task, 1, included=[acme.company, bolt.company], aggregate_sha256=sha("agg"))
    with refused(f"company ledger-outsider is not ranked in the election of round 1 of task {task} (ranking "
                 f"[{' '.join(m.company for m in members.ranked(task, 1))}]) and may not record its aggregate",
                 snapshot):
        members.outsider.ledger.record_aggregate(task, 1, included=[acme.company, bolt.company],
                                                 aggregate_sha256=sha("agg"))
    with refused("the aggregate includes [ledger-cargo], which are not among the updates fixed when collection "
                 "closed [ledger-acme ledger-bolt]", snapshot):
        leader.ledger.record_aggregate(task, 1, included=[acme.company, bolt.company, cargo.company],
                                       aggregate_sha256=sha("agg"))
    with refused("the aggregate omits [ledger-bolt]: it must include exactly the updates fixed when collection "
                 "closed [ledger-acme ledger-bolt]", snapshot):
        leader.ledger.record_aggregate(task, 1, included=[acme.company], aggregate_sha256=sha("agg"))


def test_a_vote_by_a_company_not_on_the_committee_is_rejected(members: Members) -> None:
    acme, bolt, cargo = members.acme, members.bolt, members.cargo
    task, leader = collected_round(members, "outsider", (acme, cargo))
    leader.ledger.record_aggregate(task, 1, included=[acme.company, cargo.company], aggregate_sha256=sha("agg"))

    with refused(f"company ledger-outsider is not on the committee of task {task}",
                 lambda: state_of(members, task, rounds=(1,), companies=(members.outsider, acme, bolt, cargo))):
        members.outsider.ledger.vote(task, 1, valid=True)


def test_a_genesis_whose_noise_cannot_pay_for_one_round_is_refused_and_the_ledger_is_unchanged(
        members: Members) -> None:
    task = unique_task("unaffordable")
    # With noise multiplier 1.1 and delta 1e-5, one full-participation round already costs epsilon ~4.24.
    epsilon = RdpAccountant(noise_multiplier=1.1).epsilon_after(1, delta=DELTA)

    def snapshot() -> object:
        with pytest.raises(GatewayError, match=re.escape(f"task {task} does not exist")):
            members.publisher.ledger.get_task(task)
        ledger = members.publisher.ledger
        return (members.channel_height(), ledger.get_task_history(task),
                [(ledger.get_company(m.company), ledger.get_company_history(m.company))
                 for m in (members.acme, members.bolt, members.cargo)])

    with refused(f"dp.noise_multiplier 1.1 is too small for dp.epsilon_budget 3: one round alone would spend "
                 f"epsilon {format_micro(epsilon_micro(epsilon))}", snapshot):
        members.publisher.ledger.create_task(genesis(task, members, epsilon_budget="3", noise_multiplier="1.1"))


def test_a_round_past_the_privacy_budget_cannot_be_opened(members: Members) -> None:
    pub, acme, bolt = members.publisher, members.acme, members.bolt
    # With noise multiplier 3, one round costs epsilon ~1.39 and two ~2.03: a budget of 1.7 pays for one.
    accountant = RdpAccountant(noise_multiplier=3.0)
    task = active_task(members, genesis(unique_task("budget"), members, epsilon_budget="1.7", rounds=3))
    pub.ledger.open_round(task, 1)
    members.stand(task, 1)
    for m in (acme, bolt):
        m.ledger.submit_update(task, 1, artifact_sha256=sha(f"{m.company}/1"), size_bytes=10, samples=5,
                               compute_millis=5)
    members.close_collection(task, 1)
    members.leader(task, 1).ledger.record_aggregate(task, 1, included=[acme.company, bolt.company],
                                                    aggregate_sha256=sha("agg"))
    for m in (acme, bolt):
        m.ledger.vote(task, 1, valid=True, partial_sha256=partial(task, 1, m))
    pub.ledger.close_round(task, 1, model_sha256=sha("model-1"), decrypted_by=[acme.company, bolt.company])
    assert pub.ledger.get_task(task)["epsilon_spent_micro"] == epsilon_micro(accountant.epsilon_after(1, delta=DELTA))

    with refused(f"round 2 would bring task {task} to epsilon "
                 f"{format_micro(epsilon_micro(accountant.epsilon_after(2, delta=DELTA)))} after 2 closed rounds, "
                 f"past its budget of 1.7", lambda: state_of(members, task, rounds=(1,))):
        pub.ledger.open_round(task, 2)
    with pytest.raises(GatewayError, match=re.escape(f"round 2 of task {task} has not been opened")):
        pub.ledger.get_round(task, 2)


def test_a_revoked_company_can_do_nothing_and_revocation_is_final(members: Members) -> None:
    pub, acme, bolt = members.publisher, members.acme, members.bolt
    doomed = members.enroll("Warehouse", "participant,committee")
    name = f"ledger-doomed-{uuid.uuid4().hex[:8]}"
    doomed.ledger.register_company(name, roles=["participant"])
    doomed.company = name
    task = active_task(members, genesis(unique_task("revoked"), members, participants=[acme, bolt, doomed]))
    pub.ledger.open_round(task, 1)

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
    pub, bolt, cargo = members.publisher, members.bolt, members.cargo
    task, leader = collected_round(members, "rejected", (bolt, cargo))
    leader.ledger.record_aggregate(task, 1, included=[bolt.company, cargo.company], aggregate_sha256=sha("agg"))
    leader_before = pub.ledger.get_company(leader.company)

    bolt.ledger.vote(task, 1, valid=False, reason="recomputed aggregate differs")
    cargo.ledger.vote(task, 1, valid=False, reason="hash mismatch")
    members.acme.ledger.vote(task, 1, valid=True)
    # Each vote wrote only its own key: the round shows their tally, and the quorum is out of reach.
    tallied = pub.ledger.get_round(task, 1)
    assert (tallied["status"], tallied["valid_votes"], tallied["invalid_votes"]) == ("aggregated", 1, 2)
    with refused(f"round 1 of task {task} is aggregated: only a verified round can be closed",
                 lambda: state_of(members, task, rounds=(1,), companies=(bolt, cargo))):
        pub.ledger.close_round(task, 1, model_sha256=sha("model"), decrypted_by=[bolt.company, cargo.company])
    pub.ledger.fail_round(task, 1, reason="the committee rejected the aggregate: hash mismatch")

    round1 = pub.ledger.get_round(task, 1)
    leader_after = pub.ledger.get_company(leader.company)
    votes = pub.ledger.list_votes(task, 1)
    assert round1["status"] == "failed" and "hash mismatch" in round1.get("failure_reason", "")
    assert (round1["valid_votes"], round1["invalid_votes"]) == (1, 2)
    assert (leader_after["reputation"], leader_after["stake"]) == (leader_before["reputation"] - 100,
                                                                   leader_before["stake"] - 100)
    assert round1["standing"] == {"penalties": [{"company": leader.company,
                                                 "duty": "aggregate rejected by the committee", "amount": 100}]}
    assert [(v["member"], v["valid"], v.get("reason")) for v in votes] == [
        (members.acme.company, True, None), ("ledger-bolt", False, "recomputed aggregate differs"),
        ("ledger-cargo", False, "hash mismatch")]
    # A failed round spends no budget: the next one books only itself.
    pub.ledger.open_round(task, 2)
    assert pub.ledger.get_task(task)["epsilon_spent_micro"] == 0
    assert pub.ledger.get_round(task, 2)["epsilon_after_micro"] == epsilon_micro(
        RdpAccountant(noise_multiplier=3.0).epsilon_after(1, delta=DELTA))


def test_the_publisher_fails_a_stalled_round(members: Members) -> None:
    pub, bolt = members.publisher, members.bolt
    task = active_task(members, genesis(unique_task("stalled"), members))
    pub.ledger.open_round(task, 1)
    bolt.ledger.submit_update(task, 1, artifact_sha256=sha("bolt/1"), size_bytes=10, samples=5, compute_millis=5)

    with refused("company ledger-bolt does not hold the publisher role",
                 lambda: state_of(members, task, rounds=(1,), companies=(bolt,))):
        bolt.ledger.fail_round(task, 1, reason="stalled")
    failed = pub.ledger.fail_round(task, 1, reason="too few updates before the deadline")

    history = pub.ledger.get_round_history(task, 1)
    assert [h["value"]["status"] for h in history] == ["open", "failed"]
    assert history[-1]["tx_id"] == failed
    assert history[-1]["value"].get("failure_reason") == "too few updates before the deadline"
    with refused(f"round 1 of task {task} is failed: an aggregate is recorded only once collection has closed, "
                 f"and once", lambda: state_of(members, task, rounds=(1,), companies=(bolt,))):
        members.acme.ledger.record_aggregate(task, 1, included=[bolt.company, members.acme.company],
                                             aggregate_sha256=sha("agg"))
