"""One round of the FedLedger protocol on the real ledger, role by role (no Flower in between).

Each party is enrolled from its own home (``fedledger node init``, as `fedledger train` does it),
the coordinator publishes, the dealer deals, the committee stands for leader with the VRF keys in
their homes, and every step goes through the party's own Fabric identity and peer: the chaincode's
rules and the protocol's checks meet here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pytest

from fedledger.crypto import combine_partials, load_key_share, load_partial, load_vector
from fedledger.errors import GatewayError
from fedledger.fl.company import CompanySession
from fedledger.fl.party import PartyHome, PartyKind
from fedledger.fl.custody import deal_key
from fedledger.fl.publish import TaskSpec, publish_task
from fedledger.fl.rounds import (
    NoiseMode,
    PrivacyUnit,
    RoundError,
    TaskPlan,
    close_collection,
    contribute,
    decryption_share,
    finish,
    lead,
    open_round,
    stand_for_leader,
    verify,
)
from fedledger.network.companies import Consortium as Operators
from fedledger.node.demo import Party, ensure_party
from fedledger.privacy import clip_by_l2_norm

from .conftest import Consortium

COMPANIES = (Party("rounds-a", "Manufacturer"), Party("rounds-b", "Warehouse"), Party("rounds-c", "Carrier"))
COORDINATOR = Party("rounds-coord", "Manufacturer")
DEALER = Party("rounds-kmc", "Carrier")


@pytest.fixture(scope="module")
def sessions(consortium: Consortium) -> Iterator[dict[str, CompanySession]]:
    operators, home = Operators(consortium.net), consortium.net.layout.home
    homes = {COORDINATOR.name: ensure_party(operators, home, COORDINATOR, PartyKind.COORDINATOR, lambda _: None),
             DEALER.name: ensure_party(operators, home, DEALER, PartyKind.DEALER, lambda _: None)}
    for company in COMPANIES:
        homes[company.name] = ensure_party(operators, home, company, PartyKind.COMPANY, lambda _: None)
    opened = {name: CompanySession.open(h) for name, h in homes.items()}
    yield opened
    for session in opened.values():
        session.close()


def _share(session: CompanySession, plan: TaskPlan):  # type: ignore[no-untyped-def]
    sealed = session.ledger.sealed_share(plan.task_id, session.name)
    return load_key_share(session.home.sealing_key().open(sealed), plan.key)


def _publish(sessions: dict[str, CompanySession], task_id: str, dimension: int) -> TaskPlan:
    names = tuple(c.name for c in COMPANIES)
    spec = TaskSpec(task_id=task_id, model="breast-cancer-logreg", dataset="bundled", rounds=2, participants=names,
                    committee=names, dealer=DEALER.name, threshold=2, quorum=2,
                    min_participants=2, max_weight=100, epsilon_budget=100, delta=1e-5, clip_norm=1.0,
                    noise_multiplier=1.0, noise_mode=NoiseMode.CENTRAL, key_bits=1024,
                    unit=PrivacyUnit.COMPANY)
    coordinator = sessions[COORDINATOR.name]
    publish_task(spec, coordinator.ledger, coordinator.store, initial_model=np.zeros(dimension))
    deal_key(sessions[DEALER.name].ledger, task_id)
    return TaskPlan.load(coordinator.ledger, task_id)


def _contribute_all(plan: TaskPlan, sessions: dict[str, CompanySession], updates: dict[str, np.ndarray],
                    samples: dict[str, int]) -> dict[str, bytes]:
    """Round 1 opens, every committee member stands for leader, and every company contributes."""
    open_round(plan, sessions[COORDINATOR.name].ledger, 1)
    for name in plan.committee:
        stand_for_leader(plan, sessions[name].ledger, sessions[name].home.vrf_key(), round_number=1)
    return {name: contribute(plan, sessions[name].ledger, sessions[name].store, company=name, round_number=1,
                             update=update, samples=samples[name], compute_millis=5).data
            for name, update in updates.items()}


def _elected(plan: TaskPlan, sessions: dict[str, CompanySession]) -> CompanySession:
    """The coordinator closes round 1's collection; the session of the member the ledger ranked first."""
    record = close_collection(plan, sessions[COORDINATOR.name].ledger, 1)
    assert "election" in record, record
    return sessions[record["election"]["ranking"][0]]


def test_the_decrypted_aggregate_equals_the_plaintext_weighted_sum_within_the_quantization_bound(
        sessions: dict[str, CompanySession]) -> None:
    rng = np.random.default_rng(7)
    plan = _publish(sessions, "rounds-equal", 62)
    updates = {c.name: rng.normal(0, 0.5, 62) for c in COMPANIES}
    samples = {"rounds-a": 40, "rounds-b": 70, "rounds-c": 100}
    ciphertexts = _contribute_all(plan, sessions, updates, samples)
    leader = _elected(plan, sessions)

    aggregate = lead(plan, leader.ledger, leader.store, company=leader.name, round_number=1,
                     updates=ciphertexts).data
    # rounds-a decrypts with its vote; rounds-c votes, then gives its partial decryption on request.
    a, c = sessions["rounds-a"], sessions["rounds-c"]
    verdict_a = verify(plan, a.ledger, a.store, member="rounds-a", round_number=1, updates=ciphertexts,
                       aggregate_data=aggregate, share=_share(a, plan))
    verdict_c = verify(plan, c.ledger, c.store, member="rounds-c", round_number=1, updates=ciphertexts,
                       aggregate_data=aggregate)
    assert (verdict_a.valid, verdict_a.reason, bool(verdict_a.partial)) == (True, "", True)
    assert (verdict_c.valid, verdict_c.reason, verdict_c.partial) == (True, "", b"")
    partials = {"rounds-a": verdict_a.partial,
                "rounds-c": decryption_share(plan, c.ledger, _share(c, plan), member="rounds-c", round_number=1,
                                             aggregate_data=aggregate)}

    vector = load_vector(aggregate, plan.key.public_key, plan.layout)
    decrypted = combine_partials(plan.key, vector, [load_partial(p) for p in partials.values()]).values
    plaintext = sum(samples[n] * clip_by_l2_norm(u, clip_norm=plan.clip_norm)[0] for n, u in updates.items())
    assert np.max(np.abs(decrypted - plaintext)) <= plan.layout.error_bound(sum(samples.values()))
    result = finish(plan, leader.ledger, leader.store, round_number=1, global_model=np.zeros(62),
                    aggregate_data=aggregate, partials=partials)
    record = leader.ledger.get_round("rounds-equal", 1)
    assert record["model_sha256"] == result.model_sha256
    assert record["decrypted_by"] == ["rounds-a", "rounds-c"] == sorted(result.used_members)
    assert {v["member"]: v.get("partial_sha256") for v in leader.ledger.list_votes("rounds-equal", 1)} == {
        n: hashlib.sha256(p).hexdigest() for n, p in partials.items()}


def test_the_committee_refuses_to_decrypt_anything_but_the_recorded_aggregate(
        sessions: dict[str, CompanySession]) -> None:
    plan = _publish(sessions, "rounds-refuse", 8)
    coordinator = sessions[COORDINATOR.name]
    ciphertexts = _contribute_all(plan, sessions, {c.name: np.full(8, 0.1) for c in COMPANIES},
                                  {c.name: 10 for c in COMPANIES})
    leader = _elected(plan, sessions)
    aggregate = lead(plan, leader.ledger, leader.store, company=leader.name, round_number=1,
                     updates=ciphertexts).data
    member = sessions["rounds-b"]
    share = _share(member, plan)

    # Before the member has checked the aggregate and voted it valid: refused.
    with pytest.raises(RoundError, match="rounds-b has no valid vote"):
        decryption_share(plan, member.ledger, share, member="rounds-b", round_number=1, aggregate_data=aggregate)
    for name in ("rounds-a", "rounds-b"):
        verify(plan, sessions[name].ledger, sessions[name].store, member=name, round_number=1, updates=ciphertexts,
               aggregate_data=aggregate)
    before = coordinator.ledger.get_round("rounds-refuse", 1), coordinator.ledger.list_votes("rounds-refuse", 1)
    assert before[0]["status"] == "verified"

    # A leader asking for one company's update (a valid ciphertext under the same key): refused.
    with pytest.raises(RoundError, match="not the aggregate recorded for round 1"):
        decryption_share(plan, member.ledger, share, member="rounds-b", round_number=1,
                         aggregate_data=ciphertexts["rounds-a"])
    # A member that has not voted: refused, though the round is verified.
    with pytest.raises(RoundError, match="rounds-c has no valid vote"):
        decryption_share(plan, sessions["rounds-c"].ledger, _share(sessions["rounds-c"], plan), member="rounds-c",
                         round_number=1, aggregate_data=aggregate)
    assert (coordinator.ledger.get_round("rounds-refuse", 1), coordinator.ledger.list_votes("rounds-refuse", 1)) \
        == before


def test_only_each_member_opens_its_own_share_and_the_coordinator_and_dealer_have_no_sealing_key(
        sessions: dict[str, CompanySession]) -> None:
    from fedledger.crypto.sealing import SealingError

    plan = _publish(sessions, "rounds-sealed", 4)
    a, b = sessions["rounds-a"], sessions["rounds-b"]

    assert _share(a, plan).index == plan.member_index("rounds-a")
    with pytest.raises(SealingError, match="does not open with this key"):
        b.home.sealing_key().open(a.ledger.sealed_share(plan.task_id, "rounds-a"))
    for party in (COORDINATOR.name, DEALER.name):
        assert not sessions[party].home.sealing_key_path.exists()


def test_a_genesis_whose_dealer_is_a_committee_member_is_refused(sessions: dict[str, CompanySession]) -> None:
    names = tuple(c.name for c in COMPANIES)
    spec = TaskSpec(task_id="rounds-bad-dealer", model="breast-cancer-logreg", dataset="bundled", rounds=2,
                    participants=names, committee=names, dealer="rounds-b", threshold=2,
                    quorum=2, min_participants=2, max_weight=100, epsilon_budget=100, delta=1e-5, clip_norm=1.0,
                    noise_multiplier=1.0, key_bits=1024, unit=PrivacyUnit.COMPANY)
    coordinator = sessions[COORDINATOR.name]

    with pytest.raises(GatewayError, match="dealer"):
        publish_task(spec, coordinator.ledger, coordinator.store, initial_model=np.zeros(4))
    with pytest.raises(GatewayError, match="rounds-bad-dealer"):
        coordinator.ledger.get_task("rounds-bad-dealer")


def test_the_dealer_keeps_nothing_in_its_home(sessions: dict[str, CompanySession]) -> None:
    _publish(sessions, "rounds-dealer-home", 4)
    root = PartyHome(sessions[DEALER.name].home.root).root

    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    assert files == ["party.json", "profile.json", f"wallet/{DEALER.name}/ca-chain.pem",
                     f"wallet/{DEALER.name}/cert.pem", f"wallet/{DEALER.name}/identity.json",
                     f"wallet/{DEALER.name}/key.pem"]
