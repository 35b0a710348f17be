"""One round of the FedLedger protocol on the real ledger, role by role (no Flower in between)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from fedledger.crypto import combine_partials, load_partial, load_vector
from fedledger.fl.company import CompanySession
from fedledger.fl.publish import TaskSpec, publish_task, store_own_share
from fedledger.fl.rounds import RoundError, TaskPlan, contribute, decryption_share, finish, lead, open_round, verify
from fedledger.fl.training import Company, ensure_company
from fedledger.network.companies import Consortium as Operators
from fedledger.privacy import clip_by_l2_norm

from .conftest import Consortium

COMPANIES = (Company("rounds-a", "Manufacturer"), Company("rounds-b", "Warehouse"), Company("rounds-c", "Carrier"))
COORDINATOR = Company("rounds-lead", "Manufacturer")


@pytest.fixture(scope="module")
def sessions(consortium: Consortium) -> Iterator[dict[str, CompanySession]]:
    operators = Operators(consortium.net)
    ensure_company(operators, COORDINATOR, "participant,publisher", lambda _: None)
    for company in COMPANIES:
        ensure_company(operators, company, "committee,participant", lambda _: None)
    opened = {c.name: CompanySession.open(consortium.net.layout.home, c.name) for c in (*COMPANIES, COORDINATOR)}
    yield opened
    for session in opened.values():
        session.close()


def _publish(sessions: dict[str, CompanySession], task_id: str, dimension: int) -> TaskPlan:
    names = tuple(c.name for c in COMPANIES)
    spec = TaskSpec(task_id=task_id, model="breast-cancer-logreg", dataset="bundled", rounds=2, participants=names,
                    committee=names, aggregator=COORDINATOR.name, threshold=2, quorum=2, min_participants=2,
                    max_weight=100, epsilon_budget=100, delta=1e-5, clip_norm=1.0, noise_multiplier=1.0,
                    noise_mode="central", key_bits=1024)
    lead_session = sessions[COORDINATOR.name]
    published = publish_task(spec, lead_session.ledger, lead_session.store, initial_model=np.zeros(dimension))
    for name in names:
        session = sessions[name]
        store_own_share(session.ledger, task_id, published.share_bytes(name),
                        own_msp=session.enrollment.identity.msp_id, other_msps=session.org_msp_ids)
    return TaskPlan.load(lead_session.ledger, lead_session.store, task_id)


def test_the_decrypted_aggregate_equals_the_plaintext_weighted_sum_within_the_quantization_bound(
        sessions: dict[str, CompanySession]) -> None:
    rng = np.random.default_rng(7)
    plan = _publish(sessions, "rounds-equal", 62)
    lead_session = sessions[COORDINATOR.name]
    open_round(plan, lead_session.ledger, 1)
    updates = {c.name: rng.normal(0, 0.5, 62) for c in COMPANIES}
    samples = {"rounds-a": 40, "rounds-b": 70, "rounds-c": 100}
    for name, update in updates.items():
        contribute(plan, sessions[name].ledger, sessions[name].store, company=name, round_number=1, update=update,
                   samples=samples[name], compute_millis=5)

    receipt = lead(plan, lead_session.ledger, lead_session.store, round_number=1)
    for name in ("rounds-a", "rounds-b"):
        assert verify(plan, sessions[name].ledger, sessions[name].store, round_number=1) == (True, "")
    partials = [decryption_share(plan, sessions[n].ledger, sessions[n].store, _share(sessions[n], plan),
                                 round_number=1, aggregate_sha256=receipt.aggregate_sha256)
                for n in ("rounds-a", "rounds-c")]

    vector = load_vector(lead_session.store.get(receipt.aggregate_sha256), plan.key.public_key, plan.layout)
    decrypted = combine_partials(plan.key, vector, [load_partial(p) for p in partials]).values
    plaintext = sum(samples[n] * clip_by_l2_norm(u, clip_norm=plan.clip_norm)[0] for n, u in updates.items())
    assert np.max(np.abs(decrypted - plaintext)) <= plan.layout.error_bound(sum(samples.values()))
    result = finish(plan, lead_session.ledger, lead_session.store, round_number=1, global_model=np.zeros(62),
                    partials=partials)
    assert lead_session.ledger.get_round("rounds-equal", 1)["model_sha256"] == result.model_sha256


def _share(session: CompanySession, plan: TaskPlan):  # type: ignore[no-untyped-def]
    from fedledger.crypto import load_key_share

    return load_key_share(session.ledger.read_key_share(plan.task_id), plan.key)


def test_the_committee_refuses_to_decrypt_anything_but_the_recorded_aggregate(
        sessions: dict[str, CompanySession]) -> None:
    plan = _publish(sessions, "rounds-refuse", 8)
    lead_session = sessions[COORDINATOR.name]
    open_round(plan, lead_session.ledger, 1)
    receipts = [contribute(plan, sessions[c.name].ledger, sessions[c.name].store, company=c.name, round_number=1,
                           update=np.full(8, 0.1), samples=10, compute_millis=1) for c in COMPANIES]
    lead(plan, lead_session.ledger, lead_session.store, round_number=1)
    member = sessions["rounds-b"]
    share = _share(member, plan)

    # Before the committee has verified the round: refused.
    with pytest.raises(RoundError, match="shares are given only for a verified aggregate"):
        decryption_share(plan, member.ledger, member.store, share, round_number=1,
                         aggregate_sha256=lead_session.ledger.get_round("rounds-refuse", 1)["aggregate"]["sha256"])
    for name in ("rounds-a", "rounds-b"):
        verify(plan, sessions[name].ledger, sessions[name].store, round_number=1)
    before = lead_session.ledger.get_round("rounds-refuse", 1)

    # A leader asking for one company's update (a valid ciphertext under the same key): refused.
    with pytest.raises(RoundError, match="not the aggregate recorded for round 1"):
        decryption_share(plan, member.ledger, member.store, share, round_number=1,
                         aggregate_sha256=receipts[0].artifact_sha256)
    assert lead_session.ledger.get_round("rounds-refuse", 1) == before


def test_the_coordinator_holds_no_key_share_of_the_task(sessions: dict[str, CompanySession]) -> None:
    plan = _publish(sessions, "rounds-noshare", 4)

    from fedledger.errors import GatewayError

    with pytest.raises(GatewayError, match="does not hold the committee role"):
        sessions[COORDINATOR.name].ledger.read_key_share(plan.task_id)
