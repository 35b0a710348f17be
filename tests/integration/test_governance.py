"""Governance the ledger enforces, on the consortium's real peers: elections, failover, budget, standing.

Each party works from its own home with its own Fabric identity (``fedledger node init``, as
`fedledger train` enrolls it): the coordinator publishes, the dealer deals, each company proves its
VRF with the key in its home, trains, leads when the ledger ranks it, checks and decrypts. Rounds
are driven through the protocol's functions (``fl.rounds``), with no Flower in between, so what
the chaincode refuses and what it records are checked where the parties meet. Every refusal is
checked for the chaincode's words and for a ledger left as it was (records, histories, and the
channel's height on every peer: nothing ordered).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from fabric_protos.common.ledger_pb2 import BlockchainInfo

from fedledger.crypto import KeyShare, load_key_share
from fedledger.crypto.sortition import Candidate, select, sortition_input
from fedledger.crypto.vrf import VrfKeyPair
from fedledger.crypto.vrf import prove as vrf_prove
from fedledger.crypto.vrf import verify as vrf_verify
from fedledger.errors import EndorseError, GatewayError
from fedledger.fabric.ledger import Ledger, RoundRecord
from fedledger.fl.artifacts import digest_of
from fedledger.fl.company import CompanySession
from fedledger.fl.custody import deal_key
from fedledger.fl.party import PartyKind
from fedledger.fl.publish import TaskSpec, publish_task
from fedledger.fl.rounds import (
    NoiseMode,
    PrivacyUnit,
    RoundError,
    RoundResult,
    TaskPlan,
    aggregate_bytes,
    close_collection,
    contribute,
    decryption_share,
    election_input,
    finish,
    lead,
    open_round,
    stand_for_leader,
    verify,
)
from fedledger.network.companies import Consortium as Operators
from fedledger.node.demo import Party, ensure_party, fedledger_command
from fedledger.privacy import RdpAccountant, epsilon_micro

from .conftest import Consortium

TRIO = (Party("gov-a", "Manufacturer"), Party("gov-b", "Warehouse"), Party("gov-c", "Carrier"))
# A second committee, whose standing no other test touches: demotion needs a known reputation.
FRESH = (Party("gov-d", "Manufacturer"), Party("gov-e", "Warehouse"), Party("gov-f", "Carrier"))
COORDINATOR = Party("gov-coord", "Manufacturer")
DEALER = Party("gov-kmc", "Warehouse")
DIMENSION = 8
DELTA = 1e-5
NOISE_MULTIPLIER = 3.0
# Seconds each ranked member has to record the aggregate before the next may: long enough that a
# second-ranked member acting at once (a few transactions after collection closed) is still
# before its slot on a loaded machine, short enough to wait out.
WINDOW_SECONDS = 5
ROUND_SEED_TAG = b"fedledger/round-seed/v1"

Sessions = dict[str, CompanySession]


@pytest.fixture(scope="module")
def parties(consortium: Consortium) -> Iterator[Sessions]:
    operators, home = Operators(consortium.net), consortium.net.layout.home
    homes = {COORDINATOR.name: ensure_party(operators, home, COORDINATOR, PartyKind.COORDINATOR, lambda _: None),
             DEALER.name: ensure_party(operators, home, DEALER, PartyKind.DEALER, lambda _: None)}
    for company in (*TRIO, *FRESH):
        homes[company.name] = ensure_party(operators, home, company, PartyKind.COMPANY, lambda _: None)
    opened = {name: CompanySession.open(h) for name, h in homes.items()}
    yield opened
    for session in opened.values():
        session.close()


# -- the parties' steps ----------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def publish(parties: Sessions, task_id: str, *, committee: Sequence[Party] = TRIO, rounds: int = 2,
            epsilon_budget: float = 100.0, **governance: Any) -> TaskPlan:
    """The coordinator publishes a small task (8 weights, 1024-bit key, 2 of 3) and the dealer deals it."""
    names = tuple(p.name for p in committee)
    spec = TaskSpec(task_id=task_id, model="breast-cancer-logreg", dataset="bundled", rounds=rounds,
                    participants=names, committee=names, dealer=DEALER.name, threshold=2, quorum=2,
                    min_participants=2, max_weight=100, epsilon_budget=epsilon_budget, delta=DELTA, clip_norm=1.0,
                    noise_multiplier=NOISE_MULTIPLIER, noise_mode=NoiseMode.CENTRAL, unit=PrivacyUnit.COMPANY,
                    key_bits=1024, **governance)
    coordinator = parties[COORDINATOR.name]
    publish_task(spec, coordinator.ledger, coordinator.store, initial_model=np.zeros(DIMENSION))
    deal_key(parties[DEALER.name].ledger, task_id)
    return TaskPlan.load(coordinator.ledger, task_id)


def stand(plan: TaskPlan, parties: Sessions, round_number: int, members: Sequence[str] = ()) -> None:
    """Each of ``members`` (by default the whole committee) proves its VRF with its home's key."""
    for name in members or plan.committee:
        stand_for_leader(plan, parties[name].ledger, parties[name].home.vrf_key(), round_number=round_number)


def train(plan: TaskPlan, parties: Sessions, round_number: int, companies: Sequence[str] = ()) -> dict[str, bytes]:
    """Each of ``companies`` (by default every participant) records an update; its ciphertext by company."""
    rng = np.random.default_rng(round_number)
    return {name: contribute(plan, parties[name].ledger, parties[name].store, company=name, round_number=round_number,
                             update=rng.normal(0, 0.3, DIMENSION), samples=10 * (i + 1), compute_millis=5).data
            for i, name in enumerate(companies or plan.participants)}


def coordinator_ledger(parties: Sessions) -> Ledger:
    return parties[COORDINATOR.name].ledger


def collect(plan: TaskPlan, parties: Sessions, round_number: int) -> RoundRecord:
    """The coordinator closes collection: the ledger fixes the updates and elects the leaders."""
    record = close_collection(plan, coordinator_ledger(parties), round_number)
    assert record["status"] == "collected" and "election" in record, record
    return record


def ranking(record: RoundRecord) -> list[str]:
    election = record.get("election")
    assert election is not None, record
    return list(election["ranking"])


def share_of(parties: Sessions, plan: TaskPlan, member: str) -> KeyShare:
    """The member's key share, opened from the ledger with the sealing key in its own home."""
    session = parties[member]
    return load_key_share(session.home.sealing_key().open(session.ledger.sealed_share(plan.task_id, member)), plan.key)


def check_and_decrypt(plan: TaskPlan, parties: Sessions, round_number: int, members: Sequence[str],
                      ciphertexts: dict[str, bytes], aggregate: bytes) -> dict[str, bytes]:
    """Each member recomputes the aggregate, votes it valid and records its partial decryption with the vote."""
    partials = {}
    for name in members:
        verdict = verify(plan, parties[name].ledger, parties[name].store, member=name, round_number=round_number,
                         updates=ciphertexts, aggregate_data=aggregate, share=share_of(parties, plan, name))
        assert (verdict.valid, verdict.reason) == (True, ""), verdict
        partials[name] = verdict.partial
    return partials


def run_round(plan: TaskPlan, parties: Sessions, round_number: int, *, voters: Sequence[str] = (),
              global_model: np.ndarray | None = None) -> RoundResult:
    """A whole round: open, stand, train, collect, the first-ranked leads, ``voters`` (by default the
    whole committee) check and decrypt, and the leader closes it."""
    open_round(plan, coordinator_ledger(parties), round_number)
    stand(plan, parties, round_number)
    ciphertexts = train(plan, parties, round_number)
    leader = parties[ranking(collect(plan, parties, round_number))[0]]
    aggregate = lead(plan, leader.ledger, leader.store, company=leader.name, round_number=round_number,
                     updates=ciphertexts).data
    partials = check_and_decrypt(plan, parties, round_number, voters or plan.committee, ciphertexts, aggregate)
    return finish(plan, leader.ledger, leader.store, round_number=round_number,
                  global_model=np.zeros(DIMENSION) if global_model is None else global_model,
                  aggregate_data=aggregate, partials=partials)


# -- what a refusal must leave unchanged -----------------------------------------------------


def channel_heights(session: CompanySession) -> list[int]:
    """The channel's height on every org's peer, asked through the party's own gateway."""
    channel = session.home.profile["channel"]
    qscc = session.gateway.network(channel).contract("qscc")
    heights = []
    for msp_id in session.org_msp_ids:
        info = BlockchainInfo()
        info.ParseFromString(qscc.evaluate("GetChainInfo", [channel], endorsing_organizations=[msp_id]))
        heights.append(int(info.height))
    return heights


def ledger_state(parties: Sessions, task_id: str, *, rounds: Sequence[int] = (),
                 companies: Sequence[str] = ()) -> dict[str, Any]:
    """What a refused transaction on a task could have changed: the task, its rounds with their
    proofs, updates and votes, companies, every history, and the channel's height on every peer."""
    ledger = coordinator_ledger(parties)
    state: dict[str, Any] = {"heights": channel_heights(parties[COORDINATOR.name]), "task": ledger.get_task(task_id),
                             "task history": ledger.get_task_history(task_id)}
    for n in rounds:
        state[f"round {n}"] = (ledger.get_round(task_id, n), ledger.get_round_history(task_id, n),
                               ledger.list_election_proofs(task_id, n), ledger.list_updates(task_id, n),
                               ledger.list_votes(task_id, n))
    for name in companies:
        state[name] = (ledger.get_company(name), ledger.get_company_history(name))
    return state


@contextmanager
def refused(words: str | re.Pattern[str], snapshot: Callable[[], object]) -> Iterator[None]:
    """Expect the write in the ``with`` block to be refused by the chaincode in ``words`` (verbatim, or
    matching a pattern, to the end of its message), leaving ``snapshot()`` as it was."""
    before = snapshot()
    pattern = words if isinstance(words, re.Pattern) else re.compile(re.escape(words))
    with pytest.raises(EndorseError, match=pattern) as caught:
        yield
    messages = [detail.message for detail in caught.value.details]
    assert any(re.search(f"(?:{pattern.pattern})$", m) for m in messages), messages
    assert snapshot() == before


def format_micro(value: int) -> str:
    """Millionths as the chaincode prints them: a decimal without trailing zeros."""
    return format(Decimal(value).scaleb(-6).normalize(), "f")


def standing_of(parties: Sessions, names: Sequence[str]) -> dict[str, tuple[int, int, str]]:
    """Each company's (stake, reputation, status)."""
    ledger = coordinator_ledger(parties)
    return {n: (c["stake"], c["reputation"], c["status"]) for n in names for c in [ledger.get_company(n)]}


# -- the election ------------------------------------------------------------------------------


def test_the_ledgers_ranking_is_the_stake_weighted_sortition_recomputed_from_the_recorded_proofs(
        parties: Sessions) -> None:
    plan = publish(parties, unique("gov-elect"))
    task, committee = plan.task_id, plan.committee
    open_round(plan, coordinator_ledger(parties), 1)
    stand(plan, parties, 1)
    ciphertexts = train(plan, parties, 1)
    # The members' stakes in this task (initial tokens here), not their totals over every task.
    stakes = {n: coordinator_ledger(parties).get_task(task)["stakes"][n] for n in committee}

    record = collect(plan, parties, 1)

    # Anyone recomputes the election from the ledger: the dealer, which holds no place in it, reads it.
    dealer = parties[DEALER.name].ledger
    proofs = dealer.list_election_proofs(task, 1)
    keys = {n: bytes.fromhex(dealer.get_company(n)["vrf_key"]) for n in committee}
    seed = hashlib.sha256(ROUND_SEED_TAG + bytes.fromhex(plan.task["seed0"]) + (1).to_bytes(8, "big")).digest()
    alpha = sortition_input(task, 1, seed)
    election = record["election"]
    selection = select([Candidate(p["member"], keys[p["member"]], bytes.fromhex(p["proof"]), election["stakes"][p["member"]])
                        for p in proofs], alpha=alpha, committee_size=len(proofs) - 1)

    assert record["seed"] == seed.hex() and election_input(plan, record) == alpha
    assert keys == {n: parties[n].home.vrf_key().public_key for n in committee}
    assert [p["member"] for p in proofs] == sorted(committee)
    assert all(vrf_verify(keys[p["member"]], alpha, bytes.fromhex(p["proof"])).hex() == p["output"] for p in proofs)
    assert election["stakes"] == stakes and all(s > 0 for s in stakes.values())
    assert election["ranking"] == [selection.leader, *selection.committee] and sorted(election["ranking"]) == sorted(committee)
    assert election["combined_seed"] == selection.seed.hex()
    assert record["leader"] == selection.leader and election["window_seconds"] == 30
    assert record["collected"] == sorted(committee)

    # `fedledger round show`, run by the dealer from its own home, shows the same election and proofs.
    shown = json.loads(fedledger_command("round", "show", task, "1", "--party-home", str(parties[DEALER.name].home.root),
                                         "--json", what="the dealer's round show"))
    assert shown == {"round": record, "election_proofs": proofs, "updates": dealer.list_updates(task, 1), "votes": []}

    # The elected leader leads; the round closes; round 2's seed is chained from round 1's.
    leader = parties[selection.leader]
    aggregate = lead(plan, leader.ledger, leader.store, company=leader.name, round_number=1, updates=ciphertexts).data
    partials = check_and_decrypt(plan, parties, 1, committee, ciphertexts, aggregate)
    finish(plan, leader.ledger, leader.store, round_number=1, global_model=np.zeros(DIMENSION), aggregate_data=aggregate,
           partials=partials)
    open_round(plan, coordinator_ledger(parties), 2)
    closed, opened = dealer.get_round(task, 1), dealer.get_round(task, 2)
    assert closed["status"] == "closed" and closed["aggregate"]["recorded_by"] == selection.leader
    assert opened["seed"] == hashlib.sha256(ROUND_SEED_TAG + seed + (2).to_bytes(8, "big")).hexdigest()


def test_the_second_ranked_leads_only_after_the_first_ranked_lets_its_slot_pass_and_the_first_is_penalized(
        parties: Sessions) -> None:
    penalty = 50
    plan = publish(parties, unique("gov-failover"), leader_window_seconds=WINDOW_SECONDS, penalty=penalty)
    task, committee = plan.task_id, plan.committee
    open_round(plan, coordinator_ledger(parties), 1)
    stand(plan, parties, 1)
    ciphertexts = train(plan, parties, 1)
    before = standing_of(parties, committee)
    record = collect(plan, parties, 1)
    first, second, third = ranking(record)
    closed_at = record["election"]["closed_at"]
    updates = coordinator_ledger(parties).list_updates(task, 1)
    digest = digest_of(aggregate_bytes(plan, updates, ciphertexts))

    def snapshot() -> object:
        return ledger_state(parties, task, rounds=(1,), companies=committee)

    # The first-ranked does not lead. The second-ranked, acting at once, is refused: its slot has not come.
    with refused(re.compile(re.escape(
            f"company {second} is ranked 2 for round 1 of task {task}: it may record the aggregate only from ledger "
            f"time {closed_at + WINDOW_SECONDS}, once each member ranked above it has had its {WINDOW_SECONDS} s "
            f"(now ") + r"\d+\)"), snapshot):
        parties[second].ledger.record_aggregate(task, 1, included=record["collected"], aggregate_sha256=digest)
    # Once the first-ranked's window has passed in ledger time, the second-ranked's aggregate is taken.
    receipt = lead(plan, parties[second].ledger, parties[second].store, company=second, round_number=1,
                   updates=ciphertexts)
    aggregated = coordinator_ledger(parties).get_round(task, 1)
    after = standing_of(parties, committee)

    assert receipt.aggregate_sha256 == digest
    assert aggregated["status"] == "aggregated" and aggregated["leader"] == second
    assert aggregated["aggregate"]["recorded_by"] == second and aggregated["aggregate"]["tx_id"] == receipt.tx_id
    failovers = aggregated["election"].get("failovers", [])
    assert [(f["failed"], f["rank"], f["successor"], f["tx_id"]) for f in failovers] == [(first, 1, second, receipt.tx_id)]
    assert failovers[0]["at"] >= closed_at + WINDOW_SECONDS
    assert aggregated["standing"] == {"penalties": [{"company": first, "duty": "leader slot", "amount": penalty}]}
    assert after[first] == (before[first][0] - penalty, before[first][1] - penalty, "active")
    assert after[second] == before[second] and after[third] == before[third]
    with refused(f"round 1 of task {task} is aggregated: an aggregate is recorded only once collection has closed, "
                 f"and once", snapshot):
        parties[first].ledger.record_aggregate(task, 1, included=record["collected"], aggregate_sha256=digest)

    # The successor is the round's leader: it combines the partials and closes the round.
    partials = check_and_decrypt(plan, parties, 1, committee, ciphertexts, receipt.data)
    finish(plan, parties[second].ledger, parties[second].store, round_number=1, global_model=np.zeros(DIMENSION),
           aggregate_data=receipt.data, partials=partials)
    closed = coordinator_ledger(parties).get_round(task, 1)
    assert closed["status"] == "closed" and closed["leader"] == second
    assert closed["standing"] == {"penalties": [{"company": first, "duty": "leader slot", "amount": penalty}]}


def test_a_forged_proof_a_proof_under_another_key_and_a_stale_proof_are_refused(parties: Sessions) -> None:
    plan = publish(parties, unique("gov-forged"))
    task = plan.task_id
    a, b, c = plan.committee
    open_round(plan, coordinator_ledger(parties), 1)
    alpha = election_input(plan, coordinator_ledger(parties).get_round(task, 1))

    def snapshot(n: int) -> Callable[[], object]:
        return lambda: ledger_state(parties, task, rounds=tuple(range(1, n + 1)), companies=(a, c))

    def does_not_verify(member: str, n: int) -> re.Pattern[str]:
        return re.compile(re.escape(f"the election proof of {member} does not verify on the seed of round {n} of task "
                                    f"{task} under its recorded VRF key: ") + ".+")

    # 80 random bytes, a proof on the right seed under b's key, and one under a key a made after seeing the seed.
    for forged in (secrets.token_bytes(80), vrf_prove(parties[b].home.vrf_key().secret_key, alpha),
                   vrf_prove(VrfKeyPair.generate().secret_key, alpha)):
        with refused(does_not_verify(a, 1), snapshot(1)):
            parties[a].ledger.submit_election_proof(task, 1, proof=forged)
    stand(plan, parties, 1)
    with refused(f"company {a} already proved for round 1 of task {task}", snapshot(1)):
        stand(plan, parties, 1, [a])

    # Round 1 fails before any update; in round 2, c's valid proof of round 1 is stale.
    coordinator_ledger(parties).fail_round(task, 1, reason="no updates before the deadline")
    open_round(plan, coordinator_ledger(parties), 2)
    stale = next(bytes.fromhex(p["proof"]) for p in coordinator_ledger(parties).list_election_proofs(task, 1)
                 if p["member"] == c)
    with refused(does_not_verify(c, 2), snapshot(2)):
        parties[c].ledger.submit_election_proof(task, 2, proof=stale)
    stand(plan, parties, 2, [c])

    proofs = coordinator_ledger(parties).list_election_proofs(task, 2)
    assert [p["member"] for p in proofs] == [c] and bytes.fromhex(proofs[0]["proof"]) != stale
    assert [p["member"] for p in coordinator_ledger(parties).list_election_proofs(task, 1)] == sorted(plan.committee)


# -- the privacy budget ----------------------------------------------------------------------


def test_the_chaincode_books_each_rounds_epsilon_and_refuses_a_round_past_the_budget(parties: Sessions) -> None:
    # With noise multiplier 3 at company level, one round costs epsilon ~1.39 and two ~2.03:
    # a budget between the two pays for exactly one.
    accountant = RdpAccountant(noise_multiplier=NOISE_MULTIPLIER)
    budget = round((accountant.epsilon_after(1, delta=DELTA) + accountant.epsilon_after(2, delta=DELTA)) / 2, 3)
    plan = publish(parties, unique("gov-budget"), rounds=3, epsilon_budget=budget)
    task = plan.task_id

    run_round(plan, parties, 1)
    closed = coordinator_ledger(parties).get_round(task, 1)
    state = coordinator_ledger(parties).get_task(task)

    assert closed["status"] == "closed"
    assert closed["epsilon_after_micro"] == epsilon_micro(accountant.epsilon_after(1, delta=DELTA)) \
        == state["epsilon_spent_micro"]
    assert state["closed_rounds"] == 1 and state["epsilon_budget_micro"] == round(budget * 1_000_000)
    # The publisher asks only to open round 2; the chaincode's own accountant refuses it.
    spent = epsilon_micro(accountant.epsilon_after(2, delta=DELTA))
    with refused(f"round 2 would bring task {task} to epsilon {format_micro(spent)} "
                 f"after 2 closed rounds, past its budget of {format_micro(state['epsilon_budget_micro'])}",
                 lambda: ledger_state(parties, task, rounds=(1,))):
        open_round(plan, coordinator_ledger(parties), 2)
    with pytest.raises(GatewayError, match=re.escape(f"round 2 of task {task} has not been opened")):
        coordinator_ledger(parties).get_round(task, 2)


# -- the aggregate and its decryption -----------------------------------------------------------


def test_an_aggregate_omitting_an_update_fixed_at_collection_is_refused(parties: Sessions) -> None:
    plan = publish(parties, unique("gov-omit"))
    task = plan.task_id
    a, b, c = plan.committee
    open_round(plan, coordinator_ledger(parties), 1)
    stand(plan, parties, 1)
    ciphertexts = train(plan, parties, 1, [a, b])
    record = collect(plan, parties, 1)
    leader = parties[ranking(record)[0]]
    updates = {u["company"]: u for u in coordinator_ledger(parties).list_updates(task, 1)}

    def snapshot() -> object:
        return ledger_state(parties, task, rounds=(1,), companies=plan.committee)

    assert record["collected"] == [a, b]
    # Collection has closed: a late update is refused, so the set the aggregate must sum is fixed.
    with refused(f"round 1 of task {task} is collected: updates are accepted only while it collects", snapshot):
        train(plan, parties, 1, [c])
    # A leader summing a's update alone (a real homomorphic sum, hashed honestly) is refused.
    only_a = aggregate_bytes(plan, [updates[a]], {a: ciphertexts[a]})
    with refused(f"the aggregate omits [{b}]: it must include exactly the updates fixed when collection closed "
                 f"[{a} {b}]", snapshot):
        leader.ledger.record_aggregate(task, 1, included=[a], aggregate_sha256=digest_of(only_a))
    # The protocol's leader step does not even try without every fixed ciphertext.
    before = snapshot()
    with pytest.raises(RoundError, match=f"no ciphertext arrived for {b}"):
        lead(plan, leader.ledger, leader.store, company=leader.name, round_number=1, updates={a: ciphertexts[a]})
    assert snapshot() == before

    receipt = lead(plan, leader.ledger, leader.store, company=leader.name, round_number=1, updates=ciphertexts)
    assert receipt.included == (a, b)
    assert coordinator_ledger(parties).get_round(task, 1)["aggregate"]["included"] == [a, b]


def test_a_round_stuck_without_enough_partial_decryptions_is_failed_by_the_publisher_and_the_next_opens(
        parties: Sessions) -> None:
    penalty = 50
    plan = publish(parties, unique("gov-stuck"), penalty=penalty)
    task, committee = plan.task_id, plan.committee
    open_round(plan, coordinator_ledger(parties), 1)
    stand(plan, parties, 1)
    ciphertexts = train(plan, parties, 1)
    leader = parties[ranking(collect(plan, parties, 1))[0]]
    aggregate = lead(plan, leader.ledger, leader.store, company=leader.name, round_number=1, updates=ciphertexts).data
    # x and y check the aggregate and vote it valid, without decrypting; z never votes.
    x, y, z = committee
    for name in (x, y):
        verdict = verify(plan, parties[name].ledger, parties[name].store, member=name, round_number=1,
                         updates=ciphertexts, aggregate_data=aggregate)
        assert (verdict.valid, verdict.partial) == (True, b"")
    assert coordinator_ledger(parties).get_round(task, 1)["status"] == "verified"
    # Only x then gives its partial decryption: one of the two (he.threshold) the round needs.
    partials = {x: decryption_share(plan, parties[x].ledger, share_of(parties, plan, x), member=x, round_number=1,
                                    aggregate_data=aggregate)}
    with pytest.raises(RoundError, match="has 1 usable partial decryptions, 2 needed"):
        finish(plan, leader.ledger, leader.store, round_number=1, global_model=np.zeros(DIMENSION),
               aggregate_data=aggregate, partials=partials)

    def snapshot() -> object:
        return ledger_state(parties, task, rounds=(1,), companies=committee)

    model = hashlib.sha256(b"a model no one could decrypt").hexdigest()
    with refused(f"a round of task {task} is decrypted by exactly 2 members (he.threshold), the close names 1",
                 snapshot):
        leader.ledger.close_round(task, 1, model_sha256=model, decrypted_by=[x])
    with refused(f"{y} has recorded no partial decryption of the round", snapshot):
        leader.ledger.close_round(task, 1, model_sha256=model, decrypted_by=[x, y])
    before = standing_of(parties, committee)

    reason = "only 1 of the 2 partial decryptions (he.threshold) arrived before the deadline"
    failed = coordinator_ledger(parties).fail_round(task, 1, reason=reason)
    record = coordinator_ledger(parties).get_round(task, 1)
    after = standing_of(parties, committee)

    assert record["status"] == "failed" and record["failure_reason"] == reason
    assert coordinator_ledger(parties).get_round_history(task, 1)[-1]["tx_id"] == failed
    assert record["standing"] == {"penalties": [{"company": y, "duty": "partial decryption", "amount": penalty},
                                                {"company": z, "duty": "vote", "amount": penalty}]}
    assert after[x] == before[x]
    for name in (y, z):
        assert after[name] == (before[name][0] - penalty, before[name][1] - penalty, "active")
    # The next round opens; the failed one spent no budget.
    open_round(plan, coordinator_ledger(parties), 2)
    state = coordinator_ledger(parties).get_task(task)
    assert coordinator_ledger(parties).get_round(task, 2)["status"] == "open"
    assert coordinator_ledger(parties).get_round(task, 2)["epsilon_after_micro"] == epsilon_micro(
        RdpAccountant(noise_multiplier=NOISE_MULTIPLIER).epsilon_after(1, delta=DELTA))
    assert (state["current_round"], state["closed_rounds"], state["epsilon_spent_micro"]) == (2, 0, 0)


# -- standing ----------------------------------------------------------------------------------


def test_a_member_that_misses_a_vote_is_demoted_and_a_good_round_reinstates_it(parties: Sessions) -> None:
    # One missed vote (100) takes a member from 1000 below the threshold (950); one duty done (100)
    # brings it back.
    plan = publish(parties, unique("gov-standing"), committee=FRESH, penalty=100, reputation_threshold=950,
                   reputation_gain=100)
    task, committee = plan.task_id, plan.committee
    assert all(s[1:] == (1000, "active") for s in standing_of(parties, committee).values())

    # Round 1: the last-ranked member trains but never votes.
    open_round(plan, coordinator_ledger(parties), 1)
    stand(plan, parties, 1)
    ciphertexts = train(plan, parties, 1)
    ranked = ranking(collect(plan, parties, 1))
    absent = ranked[-1]
    others = [n for n in committee if n != absent]
    leader = parties[ranked[0]]
    aggregate = lead(plan, leader.ledger, leader.store, company=leader.name, round_number=1, updates=ciphertexts).data
    partials = check_and_decrypt(plan, parties, 1, others, ciphertexts, aggregate)
    first = finish(plan, leader.ledger, leader.store, round_number=1, global_model=np.zeros(DIMENSION),
                   aggregate_data=aggregate, partials=partials)
    round1 = coordinator_ledger(parties).get_round(task, 1)
    demoted = coordinator_ledger(parties).get_company(absent)

    assert round1["status"] == "closed"
    assert round1["standing"] == {"penalties": [{"company": absent, "duty": "vote", "amount": 100}],
                                  "demoted": [absent]}
    assert (demoted["status"], demoted.get("demotion"), demoted["reputation"]) == ("demoted", "reputation", 900)

    # Round 2: the demoted member may not stand for leader, but still trains and votes, uncounted.
    open_round(plan, coordinator_ledger(parties), 2)
    with refused(f"company {absent} is demoted and may not stand for leader",
                 lambda: ledger_state(parties, task, rounds=(2,), companies=committee)):
        stand(plan, parties, 2, [absent])
    stand(plan, parties, 2, others)
    ciphertexts = train(plan, parties, 2)
    ranked = ranking(collect(plan, parties, 2))
    leader = parties[ranked[0]]
    aggregate = lead(plan, leader.ledger, leader.store, company=leader.name, round_number=2, updates=ciphertexts).data
    verdict = verify(plan, parties[absent].ledger, parties[absent].store, member=absent, round_number=2,
                     updates=ciphertexts, aggregate_data=aggregate, share=share_of(parties, plan, absent))
    after_its_vote = coordinator_ledger(parties).get_round(task, 2)
    partials = check_and_decrypt(plan, parties, 2, others, ciphertexts, aggregate)
    finish(plan, leader.ledger, leader.store, round_number=2, global_model=first.model, aggregate_data=aggregate,
           partials=partials)
    round2 = coordinator_ledger(parties).get_round(task, 2)
    votes = {v["member"]: v for v in coordinator_ledger(parties).list_votes(task, 2)}
    reinstated = coordinator_ledger(parties).get_company(absent)

    assert sorted(ranked) == sorted(others)
    # A demoted member decrypts nothing: its valid vote carries no partial and does not count.
    assert (verdict.valid, verdict.partial) == (True, b"")
    assert (votes[absent]["valid"], votes[absent]["counted"], votes[absent].get("partial_sha256")) == (True, False, None)
    assert all(votes[n]["counted"] for n in others)
    assert (after_its_vote["status"], after_its_vote["valid_votes"]) == ("aggregated", 0)
    assert round2["status"] == "closed" and round2["valid_votes"] == 2 and absent in round2["aggregate"]["included"]
    assert round2["standing"] == {"reinstated": [absent]}
    assert (reinstated["status"], reinstated.get("demotion"), reinstated["reputation"]) == ("active", None, 1000)
