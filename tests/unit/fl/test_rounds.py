"""The round protocol's arithmetic: weights, the packing range under DP, the epsilon it books."""

from __future__ import annotations

import math
from typing import Any, cast

import pytest

from fedledger.crypto import deal_threshold_key
from fedledger.fabric.ledger import TaskRecord
from fedledger.fl.rounds import Description, TaskPlan
from fedledger.privacy import RdpAccountant


@pytest.fixture(scope="module")
def key() -> Any:
    return deal_threshold_key(threshold=2, parties=3, key_bits=512)[0]


def plan(key: Any, *, mode: str = "distributed", sigma: str = "1.5", max_weight: int = 400) -> TaskPlan:
    # Company unit: every company's clipped update in every round, the one unit both noise modes admit.
    task = {"task_id": "t", "dp": {"clip_norm": "4", "noise_multiplier": sigma, "delta": "0.00001",
                                   "noise_mode": mode, "epsilon_budget": "8", "unit": "company",
                                   "sample_rate": "1", "steps_per_round": 1, "label_epsilon": "0"},
            "participants": [f"c{i}" for i in range(10)], "min_participants": 10, "committee": ["c0", "c1", "c2"]}
    return TaskPlan(cast(TaskRecord, task), Description("mnist-cnn", "bundled", max_weight, 512), key)


def test_the_distributed_range_covers_eight_sigmas_of_one_share_at_a_quarter_weight(key: Any) -> None:
    p = plan(key)
    share_std_at_quarter_weight = 1.5 * 4 * 400 / (math.sqrt(10) * 100)

    assert p.layout.clip == pytest.approx(4 + 8 * share_std_at_quarter_weight)
    # Not the sum's noise: sized by the sum, the range (and each quantization step) was ~100x wider.
    assert p.layout.clip < 4 + 8 * p.sum_noise_std / math.sqrt(10) / 50


def test_central_noise_leaves_the_range_at_the_clip_norm(key: Any) -> None:
    assert plan(key, mode="central").layout.clip == 4


def test_weights_are_capped_and_at_least_one(key: Any) -> None:
    p = plan(key)

    assert [p.weight(n) for n in (0, 1, 399, 400, 5000)] == [1, 1, 399, 400, 400]


def test_the_epsilon_booked_is_the_accountants_for_full_participation(key: Any) -> None:
    p = plan(key)

    assert p.epsilon_after(3) == RdpAccountant(noise_multiplier=1.5).epsilon_after(3, delta=1e-5)
    assert p.epsilon_after(1) < p.epsilon_after(2) < p.epsilon_after(3)
