"""The task audit on the in-memory ledger: an untouched run passes, and each rule broken on the ledger is named.

The artifacts themselves are hash-checked by the store (the e2e tamper corpus covers them); here the
ledger's own record is altered behind the protocol's back, which only the audit's rules can catch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedledger.crypto import KeyShare, deal_threshold_key, dump_threshold_key
from fedledger.fl.artifacts import DirectoryStore, digest_of
from fedledger.fl.audit import AuditReport, audit_task
from fedledger.fl.rounds import model_bytes

from .memory_round import COMPANIES, PUBLISHER, MemoryTask, task_spec

DIMENSION = 6


@pytest.fixture(scope="module")
def dealt() -> tuple[Any, list[KeyShare]]:
    return deal_threshold_key(threshold=2, parties=3, key_bits=512)


@pytest.fixture()
def trained(dealt: tuple[Any, list[KeyShare]], tmp_path: Path) -> tuple[MemoryTask, DirectoryStore]:
    """Two closed rounds, and an auditor's store holding every artifact any party kept."""
    key, shares = dealt
    initial = model_bytes(np.zeros(DIMENSION))
    task = MemoryTask.publish(task_spec(), dump_threshold_key(key), tmp_path, shares=shares,
                              initial_model_sha256=digest_of(initial))
    model = np.zeros(DIMENSION)
    rng = np.random.default_rng(3)
    for n in (1, 2):
        model = task.run_round(n, {c: rng.normal(0, 0.3, DIMENSION) for c in COMPANIES}, global_model=model).model
    auditor = DirectoryStore(tmp_path / "auditor")
    auditor.put(initial)
    for store in task.stores.values():
        for path in store.root.rglob("*"):
            if path.is_file():
                auditor.put(path.read_bytes())
    return task, auditor


def _audit(task: MemoryTask, store: DirectoryStore) -> AuditReport:
    return audit_task(task.ledger(PUBLISHER), store, task.plan.task_id)


def _failed(report: AuditReport) -> list[tuple[int, str]]:
    return [(f.round, f.check) for f in report.findings if not f.ok]


def test_an_untouched_run_passes_every_check_and_re_derives_every_model(
        trained: tuple[MemoryTask, DirectoryStore]) -> None:
    report = _audit(*trained)
    assert report.ok, _failed(report)
    derived = [f.round for f in report.findings if f.check == "closing model derived from the partial decryptions"]
    assert derived == [1, 2]
    assert {f.check for f in report.findings} >= {"leader ranking is the sortition of the recorded VRF proofs",
                                                  "aggregate includes exactly the fixed updates",
                                                  "epsilon booked matches the accountant"}


def test_a_closing_model_that_is_not_the_derivation_of_the_partials_is_named(
        trained: tuple[MemoryTask, DirectoryStore]) -> None:
    task, store = trained
    # A model that is in the store and hashes right, but is not what the partials decrypt to.
    task.round(2)["model_sha256"] = store.put(model_bytes(np.full(DIMENSION, 0.5)))
    report = _audit(task, store)
    assert (2, "closing model derived from the partial decryptions") in _failed(report)
    assert (2, "closing model stored and intact") not in _failed(report)


def test_a_ranking_that_is_not_the_sortition_of_the_proofs_is_named(
        trained: tuple[MemoryTask, DirectoryStore]) -> None:
    task, store = trained
    task.round(1)["election"]["ranking"].reverse()
    assert (1, "leader ranking is the sortition of the recorded VRF proofs") in _failed(_audit(task, store))


def test_an_aggregate_that_is_not_exactly_the_fixed_updates_is_named(
        trained: tuple[MemoryTask, DirectoryStore]) -> None:
    task, store = trained
    task.round(1)["collected"] = sorted(COMPANIES)[:2]
    assert (1, "aggregate includes exactly the fixed updates") in _failed(_audit(task, store))


def test_an_epsilon_the_accountant_does_not_give_is_named(trained: tuple[MemoryTask, DirectoryStore]) -> None:
    task, store = trained
    task.round(2)["epsilon_after_micro"] -= 1000
    assert (2, "epsilon booked matches the accountant") in _failed(_audit(task, store))


def test_a_partial_recorded_for_the_wrong_member_is_named(trained: tuple[MemoryTask, DirectoryStore]) -> None:
    task, store = trained
    first, second = task.round(1)["decrypted_by"][:2]
    votes = task.book.votes[(task.plan.task_id, 1)]
    votes[first]["partial_sha256"], votes[second]["partial_sha256"] = \
        votes[second]["partial_sha256"], votes[first]["partial_sha256"]
    assert (1, "closing model derived from the partial decryptions") in _failed(_audit(task, store))
