"""The round protocol role by role, on the in-memory ledger port: who may decrypt what, and when."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedledger.crypto import KeyShare, deal_threshold_key, dump_threshold_key
from fedledger.fl.artifacts import DirectoryStore, digest_of
from fedledger.fl.memory import MemoryLedger
from fedledger.fl.publish import TaskSpec
from fedledger.fl.rounds import (
    PrivacyUnit,
    RoundError,
    RoundStatus,
    TaskPlan,
    contribute,
    decryption_share,
    finish,
    lead,
    model_bytes,
    open_round,
    verify,
)

COMPANIES = ("a-co", "b-co", "c-co")


@pytest.fixture(scope="module")
def dealt() -> tuple[Any, list[KeyShare]]:
    return deal_threshold_key(threshold=2, parties=3, key_bits=512)


@pytest.fixture()
def world(dealt: tuple[Any, list[KeyShare]], tmp_path: Path) -> dict[str, Any]:
    """A published, dealt task with three companies (all on the committee, a-co leads), round 1 open."""
    key, shares = dealt
    spec = TaskSpec(task_id="t1", model="breast-cancer-logreg", dataset="bundled", rounds=3, participants=COMPANIES,
                    committee=COMPANIES, aggregator="a-co", dealer="kmc", threshold=2, quorum=2, min_participants=2,
                    max_weight=100, epsilon_budget=50.0, delta=1e-5, clip_norm=1.0, noise_multiplier=1.0,
                    key_bits=512, unit=PrivacyUnit.COMPANY)
    book = MemoryLedger()
    book.create_task(spec.genesis(initial_model_sha256=digest_of(model_bytes(np.zeros(4)))), publisher="coord",
                     public_key=dump_threshold_key(key))
    plan = TaskPlan.load(book.view("coord"), "t1")
    open_round(plan, book.view("coord"), 1)
    stores = {c: DirectoryStore(tmp_path / c) for c in (*COMPANIES, "coord")}
    updates = {}
    for i, c in enumerate(COMPANIES):
        receipt = contribute(plan, book.view(c), stores[c], company=c, round_number=1,
                             update=np.full(4, 0.1 * (i + 1)), samples=10, compute_millis=5)
        updates[c] = receipt.data
    return {"book": book, "plan": plan, "stores": stores, "updates": updates,
            "shares": dict(zip(COMPANIES, shares))}


def _aggregate(w: dict[str, Any]) -> bytes:
    return lead(w["plan"], w["book"].view("a-co"), w["stores"]["a-co"], round_number=1, updates=w["updates"]).data


def _vote_all(w: dict[str, Any], aggregate: bytes, voters: tuple[str, ...] = COMPANIES) -> None:
    for c in voters:
        valid, reason = verify(w["plan"], w["book"].view(c), w["stores"][c], round_number=1, updates=w["updates"],
                               aggregate_data=aggregate)
        assert valid, reason


def _partial(w: dict[str, Any], member: str, aggregate: bytes) -> bytes:
    return decryption_share(w["plan"], w["book"].view(member), w["shares"][member], member=member, round_number=1,
                            aggregate_data=aggregate)


def test_a_round_decrypts_the_noised_weighted_average_only_from_the_aggregate(world: dict[str, Any]) -> None:
    aggregate = _aggregate(world)
    _vote_all(world, aggregate)
    partials = {m: _partial(world, m, aggregate) for m in ("a-co", "b-co")}

    result = finish(world["plan"], world["book"].view("a-co"), world["stores"]["a-co"], round_number=1,
                    global_model=np.zeros(4), aggregate_data=aggregate, partials=partials)

    assert world["book"].rounds[("t1", 1)]["status"] == RoundStatus.CLOSED
    assert world["book"].rounds[("t1", 1)]["model_sha256"] == result.model_sha256 == digest_of(result.model_data)
    assert set(result.used_members) == {"a-co", "b-co"}
    # The clipped updates average 0.2 per value; each company's noise share is sigma*S*W/sqrt(m)/w (m = 2
    # min-participants), so the noise on the average has std sigma*S*W*sqrt(3/2)/30.
    assert np.all(np.abs(result.average_update - 0.2) < 6 * 1.0 * 1.0 * 100 * np.sqrt(3 / 2) / 30)


def test_a_member_refuses_to_decrypt_one_companys_update(world: dict[str, Any]) -> None:
    aggregate = _aggregate(world)
    _vote_all(world, aggregate)

    with pytest.raises(RoundError, match="not the aggregate recorded"):
        _partial(world, "b-co", world["updates"]["c-co"])


def test_no_partial_before_the_quorum_is_on_the_ledger(world: dict[str, Any]) -> None:
    aggregate = _aggregate(world)
    _vote_all(world, aggregate, voters=("b-co",))

    with pytest.raises(RoundError, match="reached the quorum"):
        _partial(world, "b-co", aggregate)


def test_a_member_without_its_own_valid_vote_gives_no_partial(world: dict[str, Any]) -> None:
    aggregate = _aggregate(world)
    _vote_all(world, aggregate, voters=("a-co", "b-co"))

    with pytest.raises(RoundError, match="c-co has no valid vote"):
        _partial(world, "c-co", aggregate)


def test_the_leader_combines_no_partial_of_a_member_that_did_not_vote(world: dict[str, Any]) -> None:
    aggregate = _aggregate(world)
    _vote_all(world, aggregate, voters=("a-co", "b-co"))
    # c-co's partial, made behind the protocol's back with its share: the leader must not use it.
    from fedledger.crypto import dump_partial, load_vector, partial_decrypt

    vector = load_vector(aggregate, world["plan"].key.public_key, world["plan"].layout)
    sneaked = dump_partial(partial_decrypt(world["shares"]["c-co"], vector))
    partials = {"a-co": _partial(world, "a-co", aggregate), "c-co": sneaked}

    with pytest.raises(RoundError, match="1 usable partial decryptions, 2 needed.*c-co: no valid vote"):
        finish(world["plan"], world["book"].view("a-co"), world["stores"]["a-co"], round_number=1,
               global_model=np.zeros(4), aggregate_data=aggregate, partials=partials)
    assert world["book"].rounds[("t1", 1)]["status"] == RoundStatus.VERIFIED


def test_a_relayed_update_that_differs_from_the_ledger_is_refused_and_not_kept(world: dict[str, Any]) -> None:
    forged = dict(world["updates"], **{"b-co": world["updates"]["c-co"]})

    with pytest.raises(RoundError, match="update of b-co .* the ledger records"):
        lead(world["plan"], world["book"].view("a-co"), world["stores"]["a-co"], round_number=1, updates=forged)
    assert world["book"].rounds[("t1", 1)]["status"] == RoundStatus.COLLECTING


def test_a_member_votes_invalid_on_an_aggregate_that_omits_nothing_but_was_altered(world: dict[str, Any]) -> None:
    aggregate = _aggregate(world)
    other = world["updates"]["a-co"]

    valid, reason = verify(world["plan"], world["book"].view("b-co"), world["stores"]["b-co"], round_number=1,
                           updates=world["updates"], aggregate_data=other)

    assert not valid and "not the one recorded" in reason
    assert world["book"].votes[("t1", 1)]["b-co"]["valid"] is False
    assert aggregate != other


def test_each_party_keeps_only_what_it_produced_or_received(world: dict[str, Any]) -> None:
    stores = world["stores"]
    for c in COMPANIES:
        assert stores[c].exists(digest_of(world["updates"][c]))
    assert not stores["b-co"].exists(digest_of(world["updates"]["c-co"]))


def test_the_apps_run_config_defaults_are_the_run_configs() -> None:
    import tomllib

    from fedledger.fl.config import RunConfig

    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())

    assert RunConfig.from_flower(pyproject["tool"]["flwr"]["app"]["config"]) == RunConfig()
    assert RunConfig().to_flower() == pyproject["tool"]["flwr"]["app"]["config"]


@pytest.fixture(scope="module")
def escrow_keys() -> tuple[Any, Any, Any]:
    from fedledger.crypto import escrow_private_key, generate_keypair

    public, private = generate_keypair(key_bits=512)
    record, _ = escrow_private_key(private, threshold=2, parties=3)
    return public, private, record


@pytest.fixture()
def escrow_world(escrow_keys: tuple[Any, Any, Any], tmp_path: Path) -> dict[str, Any]:
    """An escrow task (b-co the master, a-co the leader), round 1 aggregated and voted valid by all."""
    from fedledger.fl.custody import Custody, dump_escrow_key

    public, private, record = escrow_keys
    spec = TaskSpec(task_id="t2", model="breast-cancer-logreg", dataset="bundled", rounds=2, participants=COMPANIES,
                    committee=COMPANIES, aggregator="a-co", dealer="kmc", threshold=2, quorum=2, min_participants=2,
                    max_weight=100, epsilon_budget=50.0, delta=1e-5, clip_norm=1.0, noise_multiplier=1.0,
                    key_bits=512, custody=Custody.ESCROW, master="b-co", unit=PrivacyUnit.COMPANY)
    book = MemoryLedger()
    book.create_task(spec.genesis(initial_model_sha256="0" * 64), publisher="coord",
                     public_key=dump_escrow_key(public, record))
    plan = TaskPlan.load(book.view("coord"), "t2")
    open_round(plan, book.view("coord"), 1)
    stores = {c: DirectoryStore(tmp_path / c) for c in COMPANIES}
    updates = {c: contribute(plan, book.view(c), stores[c], company=c, round_number=1, update=np.full(4, 0.2),
                             samples=10, compute_millis=1).data for c in COMPANIES}
    aggregate = lead(plan, book.view("a-co"), stores["a-co"], round_number=1, updates=updates).data
    for c in COMPANIES:
        verify(plan, book.view(c), stores[c], round_number=1, updates=updates, aggregate_data=aggregate)
    return {"book": book, "plan": plan, "store": stores["a-co"], "aggregate": aggregate, "private": private}


def test_under_escrow_the_master_decrypts_with_an_opening_the_leader_checks(escrow_world: dict[str, Any]) -> None:
    from fedledger.fl.rounds import finish_opened, master_opening

    book, plan, aggregate, private = (escrow_world[k] for k in ("book", "plan", "aggregate", "private"))

    with pytest.raises(RoundError, match="c-co is not the master of task t2"):
        master_opening(plan, book.view("c-co"), private, member="c-co", round_number=1, aggregate_data=aggregate)
    opening = master_opening(plan, book.view("b-co"), private, member="b-co", round_number=1,
                             aggregate_data=aggregate)
    with pytest.raises(RoundError, match="the ledger names b-co"):
        finish_opened(plan, book.view("a-co"), escrow_world["store"], round_number=1, global_model=np.zeros(4),
                      aggregate_data=aggregate, master="c-co", opening=opening)
    result = finish_opened(plan, book.view("a-co"), escrow_world["store"], round_number=1, global_model=np.zeros(4),
                           aggregate_data=aggregate, master="b-co", opening=opening)

    assert result.used_members == ("b-co",)
    assert book.rounds[("t2", 1)]["status"] == RoundStatus.CLOSED
    assert np.all(np.abs(result.average_update - 0.2) < 8 * 100 / np.sqrt(3) / 10)


def test_under_escrow_a_forged_opening_is_refused_and_the_round_stays_verified(escrow_world: dict[str, Any]) -> None:
    from fedledger.crypto.opening import Opening, dump_opening, load_opening
    from fedledger.fl.rounds import finish_opened, master_opening

    book, plan, aggregate, private = (escrow_world[k] for k in ("book", "plan", "aggregate", "private"))
    honest = load_opening(master_opening(plan, book.view("b-co"), private, member="b-co", round_number=1,
                                         aggregate_data=aggregate))
    forged = dump_opening(Opening((honest.plaintexts[0] + 1, *honest.plaintexts[1:]), honest.nonces))

    with pytest.raises(RoundError, match="decryption of round 1 is refused"):
        finish_opened(plan, book.view("a-co"), escrow_world["store"], round_number=1, global_model=np.zeros(4),
                      aggregate_data=aggregate, master="b-co", opening=forged)
    assert book.rounds[("t2", 1)]["status"] == RoundStatus.VERIFIED
