"""Record-level DP in the round protocol: DP-SGD steps on the union, noise shares, the dropout rule, labels."""

from __future__ import annotations

import math
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from fedledger.crypto import KeyShare, deal_threshold_key, dump_threshold_key
from fedledger.fl.artifacts import digest_of
from fedledger.fl.dpsgd import clipped_gradient_sum
from fedledger.fl.memory import MemoryLedgerError
from fedledger.fl.rounds import (
    NoiseMode,
    PrivacyUnit,
    RoundError,
    RoundStatus,
    ServerStep,
    contribute,
    model_bytes,
)
from fedledger.fl.task import build_model, get_flat, load_dataset
from fedledger.privacy import RdpAccountant, epsilon_micro

from .memory_round import COMPANIES, MemoryTask, task_spec

RECORDS = 120


@pytest.fixture(scope="module")
def dealt() -> tuple[Any, list[KeyShare]]:
    return deal_threshold_key(threshold=2, parties=3, key_bits=512)


def _world(dealt: tuple[Any, list[KeyShare]], tmp_path: Path, **privacy: Any) -> MemoryTask:
    """A record-level task (distributed noise, q = 0.5) with ``privacy`` overriding it."""
    key, shares = dealt
    settings: dict[str, Any] = {"unit": PrivacyUnit.RECORD, "noise_mode": NoiseMode.DISTRIBUTED, "sample_rate": 0.5,
                                "noise_multiplier": 1.0, "clip_norm": 1.0, "max_weight": RECORDS, **privacy}
    initial = get_flat(build_model("breast-cancer-logreg", seed=0))
    return MemoryTask.publish(task_spec(**settings), dump_threshold_key(key), tmp_path, shares=shares,
                              initial_model_sha256=digest_of(model_bytes(initial)))


def test_a_record_level_round_is_one_dp_sgd_step_on_the_union_of_the_companies_data(
        dealt: tuple[Any, list[KeyShare]], tmp_path: Path) -> None:
    # The server step is the task's: its description on the ledger says lr 2, and the leader applies it.
    task = _world(dealt, tmp_path, server_lr=2.0)
    plan = task.plan
    data = load_dataset("breast-cancer-logreg", seed=0)
    model = build_model("breast-cancer-logreg", seed=0)
    initial = get_flat(model)
    sums, vectors = [], {}
    for i, c in enumerate(COMPANIES):
        x, y = data.x_train[i * RECORDS:(i + 1) * RECORDS], data.y_train[i * RECORDS:(i + 1) * RECORDS]
        summed = clipped_gradient_sum(model, x, y, sample_rate=plan.sample_rate, clip_norm=plan.clip_norm)
        sums.append(summed.vector)
        vectors[c] = -summed.vector

    result = task.run_round(1, vectors, global_model=initial, samples=RECORDS)

    # DP-SGD's step: the noised sum of clipped gradients over the expected batch q * sum(n_k).
    expected_batch = plan.sample_rate * RECORDS * len(COMPANIES)
    clean = -np.sum(sums, axis=0) / expected_batch
    # Three shares, each sized for min-participants = 2: the noise on the sum has std sigma*S*sqrt(3/2).
    noise_std = plan.noise_multiplier * plan.clip_norm * math.sqrt(3 / 2) / expected_batch
    error = result.average_update - clean
    assert np.all(np.abs(error) < 6 * noise_std)
    assert 0.4 * noise_std < float(np.std(error)) < 2 * noise_std  # the booked noise is really there
    assert plan.description.server_lr == 2.0
    np.testing.assert_allclose(result.model, (initial + 2.0 * result.average_update).astype(np.float32), rtol=1e-6)
    assert task.round(1)["status"] == RoundStatus.CLOSED


def test_noise_shares_are_sized_for_the_minimum_participants(dealt: tuple[Any, list[KeyShare]], tmp_path: Path) -> None:
    record = _world(dealt, tmp_path / "r").plan
    assert record.gradient_sum and record.weight(RECORDS) == 1
    assert math.isclose(record.noise_share_std(1), 1.0 * 1.0 / math.sqrt(2))
    company = _world(dealt, tmp_path / "c", unit=PrivacyUnit.COMPANY, sample_rate=1.0).plan
    assert not company.gradient_sum and company.weight(60) == 60
    assert math.isclose(company.noise_share_std(60), 1.0 * 1.0 * RECORDS / math.sqrt(2) / 60)
    local = _world(dealt, tmp_path / "l", noise_mode=NoiseMode.LOCAL, steps_per_round=5).plan
    assert local.noise_share_std(60) == 0.0  # its DP-SGD noised every step already


def test_a_round_with_fewer_updates_than_noise_shares_is_refused_before_anything_is_recorded(
        dealt: tuple[Any, list[KeyShare]], tmp_path: Path) -> None:
    # The rule is now the ledger's: collection closes only on min-participants updates (each carries 1/m of
    # the noise booked), and no leader aggregates before collection has closed.
    task = _world(dealt, tmp_path)
    task.open(1)
    updates = task.contribute(1, {"a-co": np.zeros(62)}, samples=RECORDS)

    with pytest.raises(MemoryLedgerError, match="with 1 update\\(s\\): collection cannot close"):
        task.close_collection(1)
    with pytest.raises(RoundError, match="is open: an aggregate is made once collection has closed"):
        task.lead(1, updates, company="a-co")
    record = task.round(1)
    assert record["status"] == RoundStatus.OPEN and "aggregate" not in record and "collected" not in record


def test_a_company_with_more_records_than_the_task_sizes_sums_for_is_refused(
        dealt: tuple[Any, list[KeyShare]], tmp_path: Path) -> None:
    task = _world(dealt, tmp_path)
    task.open(1)
    with pytest.raises(RoundError, match=f"at most {RECORDS}"):
        contribute(task.plan, task.ledger("a-co"), task.stores["a-co"], company="a-co", round_number=1,
                   update=np.zeros(62), samples=RECORDS + 1, compute_millis=1)
    assert task.ledger("coord").list_updates("t1", 1) == []


def test_the_epsilon_booked_is_the_accountants_for_the_tasks_unit(dealt: tuple[Any, list[KeyShare]],
                                                                  tmp_path: Path) -> None:
    tasks = {"record": _world(dealt, tmp_path / "r", label_epsilon=0.5),
             "company": _world(dealt, tmp_path / "c", unit=PrivacyUnit.COMPANY, sample_rate=1.0),
             "local": _world(dealt, tmp_path / "l", noise_mode=NoiseMode.LOCAL, steps_per_round=5)}
    record, company, local = (tasks[k].plan for k in ("record", "company", "local"))

    assert record.epsilon_after(3) == RdpAccountant(noise_multiplier=1.0, sample_rate=0.5,
                                                    label_epsilon=0.5).epsilon_after(3, delta=1e-5)
    assert local.epsilon_after(3) == RdpAccountant(noise_multiplier=1.0, sample_rate=0.5,
                                                   steps_per_round=5).epsilon_after(3, delta=1e-5)
    # Sampling amplifies: the same noise costs less per record than per company.
    assert record.epsilon_after(3) - 0.5 < company.epsilon_after(3)
    # The ledger books the same accountant's epsilon itself when a round opens, in millionths rounded up.
    for task in tasks.values():
        task.open(1)
        assert task.round(1)["epsilon_after_micro"] == epsilon_micro(task.plan.epsilon_after(1))


def test_labels_are_randomized_once_per_task_and_kept_private(tmp_path: Path) -> None:
    from fedledger.fl.client_app import _task_labels

    node = SimpleNamespace(name="a-co", session=SimpleNamespace(home=SimpleNamespace(root=tmp_path)))
    y = np.arange(2000) % 10

    def plan(task_id: str) -> Any:
        return SimpleNamespace(task_id=task_id, label_epsilon=1.0)

    first = _task_labels(node, plan("t1"), y, 10)  # type: ignore[arg-type]
    again = _task_labels(node, plan("t1"), y, 10)  # type: ignore[arg-type]
    other = _task_labels(node, plan("t2"), y, 10)  # type: ignore[arg-type]

    assert np.array_equal(first, again) and not np.array_equal(first, other)
    # Randomized response at epsilon 1 over 10 classes keeps a label with probability e/(e+9) ~ 0.23.
    assert 0.18 < float(np.mean(first == y)) < 0.28
    path = tmp_path / "tasks" / "t1" / "labels.i64"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(RoundError, match="do not match its 1000 records"):
        _task_labels(node, plan("t1"), y[:1000], 10)  # type: ignore[arg-type]
    assert np.array_equal(_task_labels(node, SimpleNamespace(task_id="t3", label_epsilon=0.0), y, 10), y)  # type: ignore[arg-type]


def test_the_server_step_is_heavy_ball_momentum_over_the_two_previous_models() -> None:
    model, previous, average = np.array([1.0, 2.0]), np.array([0.5, 2.5], dtype=np.float32), np.array([0.1, -0.1])
    assert np.allclose(ServerStep().apply(model, average), [1.1, 1.9])
    assert np.allclose(ServerStep(lr=2.0, momentum=0.5).apply(model, average), [1.2, 1.8])  # round 1: no momentum
    moved = ServerStep(lr=2.0, momentum=0.5, previous=previous).apply(model, average)
    assert np.allclose(moved, [1.2 + 0.25, 1.8 - 0.25])
    with pytest.raises(RoundError, match="momentum must be in"):
        ServerStep(momentum=1.0)
    with pytest.raises(RoundError, match="learning rate must be a positive"):
        ServerStep(lr=0.0)
