"""The round protocol role by role, on the in-memory ledger port: who leads, who may decrypt what, and when."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedledger.crypto import (
    KeyShare,
    deal_threshold_key,
    dump_partial,
    dump_threshold_key,
    load_vector,
    partial_decrypt,
)
from fedledger.crypto.sortition import Candidate, select
from fedledger.fl.artifacts import digest_of
from fedledger.fl.custody import Custody, dump_escrow_key
from fedledger.fl.memory import MemoryLedgerError
from fedledger.fl.rounds import (
    PrivacyUnit,
    RoundError,
    RoundStatus,
    aggregate_bytes,
    await_verdict,
    decryption_share,
    election_input,
    finish_opened,
    lead,
    master_opening,
    model_bytes,
    stand_for_leader,
)

from .memory_round import COMPANIES, MemoryTask, task_spec


@pytest.fixture(scope="module")
def dealt() -> tuple[Any, list[KeyShare]]:
    return deal_threshold_key(threshold=2, parties=3, key_bits=512)


@pytest.fixture()
def task(dealt: tuple[Any, list[KeyShare]], tmp_path: Path) -> MemoryTask:
    """A published, dealt task with three companies, all on the committee; the publisher sits on none."""
    key, shares = dealt
    return MemoryTask.publish(task_spec(unit=PrivacyUnit.COMPANY), dump_threshold_key(key), tmp_path, shares=shares,
                              initial_model_sha256=digest_of(model_bytes(np.zeros(4))))


@pytest.fixture()
def updates(task: MemoryTask) -> dict[str, bytes]:
    """Round 1 opened, every member standing for leader, each company's update recorded, collection closed."""
    task.open(1)
    relayed = task.contribute(1, {c: np.full(4, 0.1 * (i + 1)) for i, c in enumerate(COMPANIES)})
    task.close_collection(1)
    return relayed


def _aggregate(task: MemoryTask, updates: dict[str, bytes]) -> bytes:
    return task.lead(1, updates).data


def _partial(task: MemoryTask, member: str, aggregate: bytes) -> bytes:
    """``member``'s partial decryption given after a vote that carried none."""
    return decryption_share(task.plan, task.ledger(member), task.shares[member], member=member, round_number=1,
                            aggregate_data=aggregate)


# --- a whole round --------------------------------------------------------------------------------


def test_a_round_decrypts_the_noised_weighted_average_only_from_the_aggregate(
        task: MemoryTask, updates: dict[str, bytes]) -> None:
    aggregate = _aggregate(task, updates)
    verdicts = task.verify_all(1, updates, aggregate)
    partials = {m: verdicts[m].partial for m in ("a-co", "b-co")}

    result = task.finish(1, aggregate, partials, global_model=np.zeros(4))

    record = task.round(1)
    assert record["status"] == RoundStatus.CLOSED
    assert record["model_sha256"] == result.model_sha256 == digest_of(result.model_data)
    assert set(result.used_members) == {"a-co", "b-co"}
    # The clipped updates average 0.2 per value; each company's noise share is sigma*S*W/sqrt(m)/w (m = 2
    # min-participants), so the noise on the average has std sigma*S*W*sqrt(3/2)/30.
    assert np.all(np.abs(result.average_update - 0.2) < 6 * 1.0 * 1.0 * 100 * np.sqrt(3 / 2) / 30)


# --- the leader -----------------------------------------------------------------------------------


def test_the_leader_is_the_first_of_the_ledgers_ranking_and_records_at_once(
        task: MemoryTask, updates: dict[str, bytes]) -> None:
    ranking = task.ranking(1)
    ledger = task.ledger("a-co")
    proofs = ledger.list_election_proofs("t1", 1)
    drawn = select([Candidate(p["member"], task.vrf_keys[p["member"]].public_key, bytes.fromhex(p["proof"]), 1000)
                    for p in proofs], alpha=election_input(task.plan, ledger.get_round("t1", 1)),
                   committee_size=len(proofs) - 1)

    receipt = task.lead(1, updates)

    record = task.round(1)
    # The ranking is the stake-weighted sortition of the recorded proofs; its first leads, without waiting.
    assert ranking == [drawn.leader, *drawn.committee] and sorted(ranking) == sorted(COMPANIES)
    assert record["leader"] == record["aggregate"]["recorded_by"] == ranking[0]
    assert task.time.slept == []
    assert not record["election"].get("failovers")
    assert receipt.included == COMPANIES and record["status"] == RoundStatus.AGGREGATED


def test_a_lower_ranked_member_waits_for_its_slot_then_leads_in_place_of_the_first(
        task: MemoryTask, updates: dict[str, bytes]) -> None:
    first, second = task.ranking(1)[:2]
    election = task.round(1)["election"]
    started = task.time.now

    task.lead(1, updates, company=second)

    # Its slot opens one leader window after collection closed; it waits half a second past it, as the
    # chaincode compares whole seconds of the transaction's time.
    assert task.time.slept == [election["closed_at"] + election["window_seconds"] + 0.5 - started]
    record = task.round(1)
    assert record["leader"] == record["aggregate"]["recorded_by"] == second
    assert [(f["failed"], f["rank"], f["successor"]) for f in record["election"]["failovers"]] == [(first, 1, second)]


def test_a_lower_ranked_member_that_does_not_wait_for_its_slot_is_refused_by_the_ledger(
        task: MemoryTask, updates: dict[str, bytes]) -> None:
    second = task.ranking(1)[1]

    with pytest.raises(MemoryLedgerError, match=f"{second} is ranked 2: its slot has not come"):
        lead(task.plan, task.ledger(second), task.stores[second], company=second, round_number=1, updates=updates,
             clock=task.time, sleep=lambda seconds: None)
    assert task.round(1)["status"] == RoundStatus.COLLECTED and "aggregate" not in task.round(1)


def test_a_member_that_did_not_stand_for_leader_is_not_ranked_and_may_not_lead(task: MemoryTask) -> None:
    task.open(1, candidates=("a-co", "b-co"))
    updates = task.contribute(1, {c: np.full(4, 0.1) for c in COMPANIES})
    task.close_collection(1)

    assert sorted(task.ranking(1)) == ["a-co", "b-co"]
    with pytest.raises(RoundError, match="c-co is not ranked in round 1's election"):
        task.lead(1, updates, company="c-co")
    assert "aggregate" not in task.round(1)


def test_lead_refuses_when_a_fixed_updates_ciphertext_is_missing_and_records_nothing(
        task: MemoryTask, updates: dict[str, bytes]) -> None:
    transactions = task.book.transactions
    relayed = {c: u for c, u in updates.items() if c != "c-co"}

    with pytest.raises(RoundError, match="fixed the updates of a-co, b-co, c-co; no ciphertext arrived for c-co"):
        task.lead(1, relayed)

    record = task.round(1)
    assert record["status"] == RoundStatus.COLLECTED and "aggregate" not in record
    assert task.book.transactions == transactions and task.time.slept == []


def test_the_ledger_refuses_an_aggregate_that_omits_a_fixed_update(task: MemoryTask, updates: dict[str, bytes]) -> None:
    leader = task.ranking(1)[0]

    with pytest.raises(MemoryLedgerError, match="must include exactly"):
        task.ledger(leader).record_aggregate("t1", 1, included=["a-co", "b-co"], aggregate_sha256="a" * 64)
    assert "aggregate" not in task.round(1)


def test_a_relayed_update_that_differs_from_the_ledger_is_refused_and_not_kept(
        task: MemoryTask, updates: dict[str, bytes]) -> None:
    leader = task.ranking(1)[0]
    tampered = updates["b-co"][:-1] + bytes([updates["b-co"][-1] ^ 1])

    with pytest.raises(RoundError, match="update of b-co .* the ledger records"):
        task.lead(1, {**updates, "b-co": tampered})

    assert task.round(1)["status"] == RoundStatus.COLLECTED and "aggregate" not in task.round(1)
    assert not task.stores[leader].exists(digest_of(tampered))


# --- the committee's votes and partial decryptions --------------------------------------------------


def test_a_member_refuses_to_decrypt_one_companys_update(task: MemoryTask, updates: dict[str, bytes]) -> None:
    aggregate = _aggregate(task, updates)
    task.verify_all(1, updates, aggregate, decrypt=False)

    with pytest.raises(RoundError, match="not the aggregate recorded"):
        _partial(task, "b-co", updates["c-co"])


def test_a_member_decrypts_with_its_own_valid_vote_but_nothing_is_combined_before_the_quorum(
        task: MemoryTask, updates: dict[str, bytes]) -> None:
    # Before: a member gave no partial until the quorum was on the ledger. Now each member decrypts the
    # aggregate it has just recomputed and votes with the partial's hash; the quorum gates the combining.
    aggregate = _aggregate(task, updates)

    verdict = task.verify("b-co", 1, updates, aggregate)

    assert verdict.valid and verdict.partial
    assert task.book.votes[("t1", 1)]["b-co"]["partial_sha256"] == digest_of(verdict.partial)
    assert task.round(1)["status"] == RoundStatus.AGGREGATED
    with pytest.raises(RoundError, match="is aggregated, not verified"):
        task.finish(1, aggregate, {"b-co": verdict.partial}, global_model=np.zeros(4))


def test_a_member_without_its_own_valid_vote_gives_no_partial(task: MemoryTask, updates: dict[str, bytes]) -> None:
    aggregate = _aggregate(task, updates)
    task.verify_all(1, updates, aggregate, voters=("a-co", "b-co"), decrypt=False)

    with pytest.raises(RoundError, match="c-co has no valid vote"):
        _partial(task, "c-co", aggregate)


def test_a_member_votes_invalid_on_an_aggregate_that_omits_nothing_but_was_altered(
        task: MemoryTask, updates: dict[str, bytes]) -> None:
    aggregate = _aggregate(task, updates)
    other = updates["a-co"]

    verdict = task.verify("b-co", 1, updates, other)

    assert not verdict.valid and "not the one recorded" in verdict.reason and verdict.partial == b""
    assert task.book.votes[("t1", 1)]["b-co"]["valid"] is False
    assert aggregate != other


@pytest.mark.parametrize("on_the_ledger", ["a short sum under the full list", "a short list"])
def test_verify_votes_invalid_on_an_aggregate_that_omits_a_fixed_update_and_gives_no_partial(
        task: MemoryTask, updates: dict[str, bytes], on_the_ledger: str) -> None:
    leader = task.ranking(1)[0]
    listed = task.ledger(leader).list_updates("t1", 1)
    short = aggregate_bytes(task.plan, [u for u in listed if u["company"] != "c-co"], updates)
    # A leader that sums two of the three fixed updates and records the sum's hash as if it held all three
    # (the ledger sees only a hash); or a record that lists two (the ledger refuses it: written here by hand).
    task.ledger(leader).record_aggregate("t1", 1, included=COMPANIES, aggregate_sha256=digest_of(short))
    if on_the_ledger == "a short list":
        task.round(1)["aggregate"]["included"] = ["a-co", "b-co"]

    verdict = task.verify("b-co", 1, updates, short)

    reason = "differs from the recorded" if on_the_ledger != "a short list" else "not exactly the updates fixed"
    assert not verdict.valid and reason in verdict.reason
    assert verdict.partial == b""
    vote = task.book.votes[("t1", 1)]["b-co"]
    assert vote["valid"] is False and vote["partial_sha256"] == ""


def test_a_demoted_members_verify_gives_no_partial_and_its_vote_does_not_count(
        task: MemoryTask, updates: dict[str, bytes]) -> None:
    aggregate = _aggregate(task, updates)
    task.book.companies["c-co"]["status"] = "demoted"

    verdict = task.verify("c-co", 1, updates, aggregate)

    assert verdict.valid and verdict.partial == b""
    vote = task.book.votes[("t1", 1)]["c-co"]
    assert vote["counted"] is False and vote["partial_sha256"] == ""
    assert task.round(1)["valid_votes"] == 0 and task.round(1)["status"] == RoundStatus.AGGREGATED
    with pytest.raises(RoundError, match="c-co has no valid vote"):
        _partial(task, "c-co", aggregate)


def test_a_member_that_voted_with_its_partial_gives_no_second_one(task: MemoryTask, updates: dict[str, bytes]) -> None:
    aggregate = _aggregate(task, updates)
    verdict = task.verify("b-co", 1, updates, aggregate)

    with pytest.raises(RoundError, match="b-co recorded its partial decryption .* with its vote"):
        _partial(task, "b-co", aggregate)
    assert task.book.votes[("t1", 1)]["b-co"]["partial_sha256"] == digest_of(verdict.partial)


# --- combining and closing --------------------------------------------------------------------------


def _another_partial(task: MemoryTask, member: str, aggregate: bytes) -> bytes:
    """A correct partial decryption by ``member``, made behind the protocol's back: not the one its vote records."""
    vector = load_vector(aggregate, task.plan.key.public_key, task.plan.layout)
    return dump_partial(partial_decrypt(task.shares[member], vector))


def test_the_leader_combines_no_partial_of_a_member_that_did_not_vote(
        task: MemoryTask, updates: dict[str, bytes]) -> None:
    aggregate = _aggregate(task, updates)
    verdicts = task.verify_all(1, updates, aggregate, voters=("a-co", "b-co"))
    partials = {"a-co": verdicts["a-co"].partial, "c-co": _another_partial(task, "c-co", aggregate)}

    with pytest.raises(RoundError, match="1 usable partial decryptions, 2 needed.*c-co: no counted valid vote"):
        task.finish(1, aggregate, partials, global_model=np.zeros(4))
    assert task.round(1)["status"] == RoundStatus.VERIFIED


def test_finish_refuses_a_partial_whose_hash_is_not_the_one_recorded_with_the_vote(
        task: MemoryTask, updates: dict[str, bytes]) -> None:
    aggregate = _aggregate(task, updates)
    verdicts = task.verify_all(1, updates, aggregate)
    other = _another_partial(task, "b-co", aggregate)
    assert digest_of(other) != digest_of(verdicts["b-co"].partial)

    with pytest.raises(RoundError, match="1 usable partial decryptions, 2 needed.*b-co: its partial hashes to .*, "
                                         "the ledger records"):
        task.finish(1, aggregate, {"a-co": verdicts["a-co"].partial, "b-co": other}, global_model=np.zeros(4))
    record = task.round(1)
    assert record["status"] == RoundStatus.VERIFIED and "decrypted_by" not in record


def test_the_close_names_exactly_the_members_whose_partials_were_combined(
        task: MemoryTask, updates: dict[str, bytes]) -> None:
    aggregate = _aggregate(task, updates)
    verdicts = task.verify_all(1, updates, aggregate)
    partials = {"a-co": verdicts["a-co"].partial, "b-co": _another_partial(task, "b-co", aggregate),
                "c-co": verdicts["c-co"].partial}

    result = task.finish(1, aggregate, partials, global_model=np.zeros(4))

    assert result.used_members == ("a-co", "c-co") and list(result.rejected_members) == ["b-co"]
    record = task.round(1)
    assert record["status"] == RoundStatus.CLOSED and record["decrypted_by"] == ["a-co", "c-co"]
    assert all(task.stores[str(record["leader"])].exists(digest_of(partials[m])) for m in ("a-co", "c-co"))


def test_the_ledger_closes_a_round_only_naming_t_members_with_recorded_partials(
        task: MemoryTask, updates: dict[str, bytes]) -> None:
    aggregate = _aggregate(task, updates)
    task.verify_all(1, updates, aggregate, voters=("a-co", "b-co"))
    task.verify_all(1, updates, aggregate, voters=("c-co",), decrypt=False)
    leader = task.ledger(str(task.round(1)["leader"]))

    for named in (["a-co", "b-co", "c-co"], ["a-co"], ["a-co", "c-co"], ["a-co", "a-co"], ["a-co", "b-co", "a-co"]):
        with pytest.raises(MemoryLedgerError, match="a close names 2 members with recorded partials"):
            leader.close_round("t1", 1, model_sha256="c" * 64, decrypted_by=named)
    assert task.round(1)["status"] == RoundStatus.VERIFIED


def test_each_party_keeps_only_what_it_produced_or_received(task: MemoryTask, updates: dict[str, bytes]) -> None:
    for c in COMPANIES:
        assert task.stores[c].exists(digest_of(updates[c]))
    assert not task.stores["b-co"].exists(digest_of(updates["c-co"]))


# --- the election -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["another member's key", "no key on the ledger"])
def test_stand_for_leader_with_a_wrong_key_is_refused_by_the_ledgers_vrf_check(task: MemoryTask, key: str) -> None:
    task.open(1, candidates=())
    if key == "no key on the ledger":
        task.book.companies["a-co"]["vrf_key"] = ""
    proving = task.vrf_keys["b-co" if key == "another member's key" else "a-co"]

    with pytest.raises(MemoryLedgerError, match="the election proof of a-co does not verify"):
        stand_for_leader(task.plan, task.ledger("a-co"), proving, round_number=1)
    assert task.ledger("a-co").list_election_proofs("t1", 1) == []


def test_the_apps_run_config_defaults_are_the_run_configs() -> None:
    import tomllib

    from fedledger.fl.config import RunConfig

    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())

    assert RunConfig.from_flower(pyproject["tool"]["flwr"]["app"]["config"]) == RunConfig()
    assert RunConfig().to_flower() == pyproject["tool"]["flwr"]["app"]["config"]


# --- escrow custody ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def escrow_keys() -> tuple[Any, Any, Any]:
    from fedledger.crypto import escrow_private_key, generate_keypair

    public, private = generate_keypair(key_bits=512)
    record, _ = escrow_private_key(private, threshold=2, parties=3)
    return public, private, record


@pytest.fixture()
def escrow_world(escrow_keys: tuple[Any, Any, Any], tmp_path: Path) -> dict[str, Any]:
    """An escrow task (b-co the master), round 1 aggregated by its elected leader and voted valid by all."""
    public, private, record = escrow_keys
    spec = task_spec(task_id="t2", rounds=2, custody=Custody.ESCROW, master="b-co", unit=PrivacyUnit.COMPANY)
    task = MemoryTask.publish(spec, dump_escrow_key(public, record), tmp_path)
    task.open(1)
    updates = task.contribute(1, {c: np.full(4, 0.2) for c in COMPANIES})
    task.close_collection(1)
    aggregate = task.lead(1, updates).data
    task.verify_all(1, updates, aggregate)
    leader = str(task.round(1)["leader"])
    return {"task": task, "plan": task.plan, "book": task.book, "leader": leader, "store": task.stores[leader],
            "aggregate": aggregate, "private": private}


def test_under_escrow_the_master_decrypts_with_an_opening_the_leader_checks(escrow_world: dict[str, Any]) -> None:
    book, plan, aggregate, private, leader = (escrow_world[k] for k in ("book", "plan", "aggregate", "private",
                                                                        "leader"))

    with pytest.raises(RoundError, match="c-co is not the master of task t2"):
        master_opening(plan, book.view("c-co"), private, member="c-co", round_number=1, aggregate_data=aggregate)
    opening = master_opening(plan, book.view("b-co"), private, member="b-co", round_number=1,
                             aggregate_data=aggregate)
    assert book.votes[("t2", 1)]["b-co"]["partial_sha256"] == digest_of(opening)
    with pytest.raises(RoundError, match="the ledger names b-co"):
        finish_opened(plan, book.view(leader), escrow_world["store"], round_number=1, global_model=np.zeros(4),
                      aggregate_data=aggregate, master="c-co", opening=opening)
    result = finish_opened(plan, book.view(leader), escrow_world["store"], round_number=1, global_model=np.zeros(4),
                           aggregate_data=aggregate, master="b-co", opening=opening)

    assert result.used_members == ("b-co",)
    assert book.rounds[("t2", 1)]["status"] == RoundStatus.CLOSED
    assert book.rounds[("t2", 1)]["decrypted_by"] == ["b-co"]
    assert np.all(np.abs(result.average_update - 0.2) < 8 * 100 / np.sqrt(3) / 10)


def test_under_escrow_the_ledger_closes_a_round_only_naming_the_master(escrow_world: dict[str, Any]) -> None:
    book, leader = escrow_world["book"], escrow_world["leader"]
    # c-co, not the master, records a hash as if it had decrypted: a close naming it is refused.
    book.view("c-co").record_partial("t2", 1, partial_sha256="e" * 64)

    with pytest.raises(MemoryLedgerError, match="decrypted by its master b-co alone"):
        book.view(leader).close_round("t2", 1, model_sha256="c" * 64, decrypted_by=["c-co"])
    assert book.rounds[("t2", 1)]["status"] == RoundStatus.VERIFIED


def _forged(escrow_world: dict[str, Any]) -> bytes:
    from fedledger.crypto.opening import Opening, dump_opening, open_vector

    plan, private, aggregate = escrow_world["plan"], escrow_world["private"], escrow_world["aggregate"]
    honest = open_vector(private, load_vector(aggregate, plan.public_key, plan.layout))
    return dump_opening(Opening((honest.plaintexts[0] + 1, *honest.plaintexts[1:]), honest.nonces))


def test_under_escrow_an_opening_other_than_the_recorded_one_is_refused_and_the_round_stays_verified(
        escrow_world: dict[str, Any]) -> None:
    book, plan, aggregate, private, leader = (escrow_world[k] for k in ("book", "plan", "aggregate", "private",
                                                                        "leader"))
    master_opening(plan, book.view("b-co"), private, member="b-co", round_number=1, aggregate_data=aggregate)

    with pytest.raises(RoundError, match="decryption hashes to .*, the ledger records"):
        finish_opened(plan, book.view(leader), escrow_world["store"], round_number=1, global_model=np.zeros(4),
                      aggregate_data=aggregate, master="b-co", opening=_forged(escrow_world))
    assert book.rounds[("t2", 1)]["status"] == RoundStatus.VERIFIED


def test_under_escrow_a_forged_opening_the_master_recorded_is_refused_and_the_round_stays_verified(
        escrow_world: dict[str, Any]) -> None:
    book, plan, aggregate, leader = (escrow_world[k] for k in ("book", "plan", "aggregate", "leader"))
    forged = _forged(escrow_world)
    # A lying master records its forged opening's hash: the hash check passes, the re-encryption does not.
    book.view("b-co").record_partial("t2", 1, partial_sha256=digest_of(forged))

    with pytest.raises(RoundError, match="decryption of round 1 is refused"):
        finish_opened(plan, book.view(leader), escrow_world["store"], round_number=1, global_model=np.zeros(4),
                      aggregate_data=aggregate, master="b-co", opening=forged)
    assert book.rounds[("t2", 1)]["status"] == RoundStatus.VERIFIED


def test_a_member_awaiting_the_verdict_learns_at_once_that_the_committee_rejected_the_aggregate(
        task: MemoryTask, updates: dict[str, bytes]) -> None:
    _aggregate(task, updates)
    task.ledger("a-co").vote("t1", 1, valid=False, reason="recomputed aggregate differs")
    # One invalid vote of three: the quorum of two is still in reach, so the member waits (here: 0 s).
    with pytest.raises(RoundError, match="has not reached its quorum on round 1"):
        await_verdict(task.plan, task.ledger("c-co"), round_number=1, timeout=0.0)
    task.ledger("b-co").vote("t1", 1, valid=False, reason="hash mismatch")

    # Two invalid of three: the round can only fail, which the publisher records; nobody waits for it.
    assert await_verdict(task.plan, task.ledger("c-co"), round_number=1, timeout=0.0) is RoundStatus.FAILED
    assert task.round(1)["status"] == RoundStatus.AGGREGATED and task.round(1)["invalid_votes"] == 2
