"""Unit tests of stake-weighted sortition: shared vectors, determinism, exclusions, stake-proportional odds."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.crypto.sortition import (
    MAX_TOTAL_STAKE,
    Candidate,
    combined_seed,
    draw,
    select,
    sortition_input,
)
from fedledger.crypto.vrf import VrfKeyPair, proof_to_hash, prove
from fedledger.errors import CryptoError, VrfError

VECTORS_FILE = Path(__file__).resolve().parents[2] / "vectors" / "sortition.json"
CASES: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))["cases"]

ALPHA = sortition_input("task-1", 3, b"previous round seed")


def _keypair(company: str) -> VrfKeyPair:
    return VrfKeyPair.from_secret_key(hashlib.sha256(b"test key/" + company.encode()).digest())


def _candidates(stakes: dict[str, int], alpha: bytes = ALPHA) -> list[Candidate]:
    candidates = []
    for company, stake in stakes.items():
        keypair = _keypair(company)
        candidates.append(Candidate(company, keypair.public_key, prove(keypair.secret_key, alpha), stake))
    return candidates


def _case_id(case: dict[str, Any]) -> str:
    return str(case["name"])


# Shared vectors (the Go chaincode tests against the same file)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_the_vectors_file_reproduces(case: dict[str, Any]) -> None:
    alpha = sortition_input(case["task_id"], case["round"], bytes.fromhex(case["seed"]))
    assert alpha.hex() == case["alpha"]
    candidates = []
    for row in case["candidates"]:
        keypair = VrfKeyPair.from_secret_key(bytes.fromhex(row["sk"]))
        pi = prove(keypair.secret_key, alpha)
        assert keypair.public_key.hex() == row["pk"]
        assert pi.hex() == row["pi"]
        assert proof_to_hash(pi).hex() == row["beta"]
        candidates.append(Candidate(row["company"], keypair.public_key, pi, row["stake"]))

    selection = select(candidates, alpha=alpha, committee_size=case["committee_size"])

    expected = case["expected"]
    assert selection.leader == expected["leader"]
    assert list(selection.committee) == expected["committee"]
    assert selection.seed.hex() == expected["combined_seed"]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_the_combined_seed_covers_exactly_the_staked_companies(case: dict[str, Any]) -> None:
    outputs = [(row["company"], bytes.fromhex(row["beta"])) for row in case["candidates"] if row["stake"] > 0]

    assert combined_seed(outputs).hex() == case["expected"]["combined_seed"]


def test_the_vectors_file_is_canonical_json() -> None:
    text = VECTORS_FILE.read_text(encoding="utf-8")

    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


# Determinism and exclusions


def test_selection_is_deterministic_and_ignores_candidate_order() -> None:
    candidates = _candidates({"acme": 5, "globex": 7, "initech": 1, "hooli": 9})

    first = select(candidates, alpha=ALPHA, committee_size=2)
    again = select(candidates, alpha=ALPHA, committee_size=2)
    reversed_order = select(list(reversed(candidates)), alpha=ALPHA, committee_size=2)

    assert first == again == reversed_order
    assert len(first.seed) == 64


def test_another_round_gives_another_seed() -> None:
    stakes = {"acme": 5, "globex": 7, "initech": 1}
    other_alpha = sortition_input("task-1", 4, b"previous round seed")

    this_round = select(_candidates(stakes), alpha=ALPHA, committee_size=1)
    next_round = select(_candidates(stakes, other_alpha), alpha=other_alpha, committee_size=1)

    assert this_round.seed != next_round.seed


def test_zero_stake_companies_are_never_chosen_but_their_proofs_are_checked() -> None:
    candidates = _candidates({"acme": 1, "idle": 0, "globex": 1, "initech": 1})

    selection = select(candidates, alpha=ALPHA, committee_size=2)

    assert {selection.leader, *selection.committee} == {"acme", "globex", "initech"}
    forged = [dataclasses.replace(c, proof=candidates[0].proof) if c.company == "idle" else c for c in candidates]
    with pytest.raises(VrfError, match="company 'idle': proof does not verify"):
        select(forged, alpha=ALPHA, committee_size=2)


def test_an_invalid_proof_names_its_company() -> None:
    candidates = _candidates({"acme": 1, "globex": 2, "initech": 3})
    # globex publishes a proof for another round.
    stale = prove(_keypair("globex").secret_key, sortition_input("task-1", 2, b"previous round seed"))
    candidates[1] = dataclasses.replace(candidates[1], proof=stale)

    with pytest.raises(VrfError, match="company 'globex': proof does not verify"):
        select(candidates, alpha=ALPHA, committee_size=1)


def test_a_malformed_proof_names_its_company() -> None:
    candidates = _candidates({"acme": 1, "globex": 2})
    candidates[0] = dataclasses.replace(candidates[0], proof=candidates[0].proof[:79])

    with pytest.raises(VrfError, match="company 'acme': proof is 79 bytes, expected 80"):
        select(candidates, alpha=ALPHA, committee_size=1)


def test_duplicate_company_ids_are_refused() -> None:
    candidates = _candidates({"acme": 1, "globex": 2})

    with pytest.raises(CryptoError, match="duplicate company id 'acme'"):
        select([*candidates, candidates[0]], alpha=ALPHA, committee_size=1)


@pytest.mark.parametrize("stake", [-1, 1.5, True])
def test_a_stake_that_is_not_a_non_negative_integer_is_refused(stake: Any) -> None:
    candidates = _candidates({"acme": 1, "globex": 2})
    candidates[1] = dataclasses.replace(candidates[1], stake=stake)

    with pytest.raises(CryptoError, match="stake of company 'globex'"):
        select(candidates, alpha=ALPHA, committee_size=1)


def test_stakes_past_the_int64_limit_are_refused() -> None:
    candidates = _candidates({"acme": MAX_TOTAL_STAKE, "globex": 1})

    with pytest.raises(CryptoError, match="exceeds the maximum"):
        select(candidates, alpha=ALPHA, committee_size=1)


def test_too_few_staked_companies_for_the_committee_is_refused() -> None:
    candidates = _candidates({"acme": 1, "globex": 2, "idle": 0})

    with pytest.raises(CryptoError, match="need 3 companies with stake, got 2"):
        select(candidates, alpha=ALPHA, committee_size=2)


def test_a_committee_of_zero_is_just_a_leader() -> None:
    selection = select(_candidates({"acme": 1}), alpha=ALPHA, committee_size=0)

    assert selection.leader == "acme"
    assert selection.committee == ()


@pytest.mark.parametrize(
    ("task_id", "round_number", "seed", "message"),
    [("", 1, b"", "task id must be a non-empty string"), ("t", -1, b"", "round number"), ("t", 2**64, b"", "round number")],
)
def test_sortition_input_refuses_bad_fields(task_id: str, round_number: int, seed: bytes, message: str) -> None:
    with pytest.raises(CryptoError, match=message):
        sortition_input(task_id, round_number, seed)


def test_sortition_input_is_length_prefixed() -> None:
    # Without length prefixes these two would both be "ab" || "c".
    assert sortition_input("ab", 1, b"c") != sortition_input("a", 1, b"bc")
    assert sortition_input("ab", 1, b"c").startswith(b"fedledger/sortition/v1")


# Invariants of the draw

stake_maps = st.dictionaries(
    st.text(alphabet="abcdefgh", min_size=1, max_size=4), st.integers(min_value=1, max_value=10**12), min_size=1, max_size=8
)


@given(seed=st.binary(min_size=64, max_size=64), stakes=stake_maps, data=st.data())
def test_draws_are_distinct_so_the_leader_is_never_on_the_committee(
    seed: bytes, stakes: dict[str, int], data: st.DataObject
) -> None:
    count = data.draw(st.integers(min_value=1, max_value=len(stakes)))

    drawn = draw(seed, stakes, count=count)

    assert len(drawn) == count
    assert len(set(drawn)) == count
    assert set(drawn) <= set(stakes)
    assert drawn[0] not in drawn[1:]


@given(seed=st.binary(min_size=64, max_size=64), stakes=stake_maps)
def test_a_draw_ignores_the_mapping_order(seed: bytes, stakes: dict[str, int]) -> None:
    reordered = dict(reversed(list(stakes.items())))

    assert draw(seed, stakes, count=len(stakes)) == draw(seed, reordered, count=len(stakes))


def test_a_zero_stake_cannot_be_drawn() -> None:
    with pytest.raises(CryptoError, match="zero stake"):
        draw(bytes(64), {"acme": 1, "idle": 0}, count=1)


# Stake-proportional odds


def test_the_leader_slot_tracks_stake() -> None:
    trials = 2000
    wins = Counter(
        draw(hashlib.sha512(b"trial %d" % i).digest(), {"light": 1, "heavy": 3}, count=1)[0] for i in range(trials)
    )

    # Expected 75%; 65-85% is more than 7 standard deviations either side.
    assert 0.65 <= wins["heavy"] / trials <= 0.85


def test_the_leader_slot_tracks_stake_end_to_end_with_real_proofs() -> None:
    keys = {company: _keypair(company) for company in ("light", "heavy")}
    stakes = {"light": 1, "heavy": 3}
    trials = 300
    heavy_wins = 0
    for i in range(trials):
        alpha = sortition_input("odds", i, b"")
        candidates = [
            Candidate(company, keys[company].public_key, prove(keys[company].secret_key, alpha), stake)
            for company, stake in stakes.items()
        ]
        heavy_wins += select(candidates, alpha=alpha, committee_size=0).leader == "heavy"

    # Expected 75%, standard deviation 2.5%.
    assert 0.6 <= heavy_wins / trials <= 0.9


def test_committee_seats_track_stake_among_those_left() -> None:
    trials = 3000
    stakes = {"a": 1, "b": 2, "c": 3}
    second = Counter(draw(hashlib.sha512(b"seat %d" % i).digest(), stakes, count=2)[1] for i in range(trials))

    # P(a second) = P(b first) * 1/4 + P(c first) * 1/3 = 1/3 * 1/4 + 1/2 * 1/3 = 0.25.
    assert 0.21 <= second["a"] / trials <= 0.29
