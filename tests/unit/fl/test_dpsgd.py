"""Record-level DP-SGD on a company's data: per-example clipping, Poisson sampling, Opacus local steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fedledger.errors import PrivacyError
from fedledger.fl.dpsgd import DpSgd, clipped_gradient_sum, local_dp_sgd, poisson_sample
from fedledger.fl.task import Dataset, build_model, evaluate, get_flat, load_dataset
from fedledger.privacy import RdpAccountant


@pytest.fixture(scope="module")
def breast_cancer() -> Dataset:
    return load_dataset("breast-cancer-logreg", seed=0)


def _loop_sum(model: nn.Module, x: np.ndarray, y: np.ndarray, batch: np.ndarray, clip: float) -> np.ndarray:
    """The clipped gradient sum the slow way: one backward pass per example."""
    total = np.zeros(sum(p.numel() for p in model.parameters()))
    for i in batch:
        model.zero_grad()
        nn.CrossEntropyLoss()(model(torch.from_numpy(x[i:i + 1])), torch.from_numpy(y[i:i + 1])).backward()
        g = np.concatenate([p.grad.reshape(-1).numpy() for p in model.parameters()]).astype(np.float64)
        total += g * min(1.0, clip / np.linalg.norm(g))
    return total


@pytest.mark.parametrize("clip", [0.05, 100.0])
def test_the_clipped_gradient_sum_is_the_sum_of_each_example_clipped(breast_cancer: Dataset, clip: float) -> None:
    model = build_model("breast-cancer-logreg", seed=0)
    x, y = breast_cancer.x_train, breast_cancer.y_train
    summed = clipped_gradient_sum(model, x, y, sample_rate=0.3, clip_norm=clip, rng=np.random.default_rng(7))
    batch = poisson_sample(len(y), 0.3, np.random.default_rng(7))

    assert summed.batch == len(batch) and 0 < summed.batch < len(y)
    np.testing.assert_allclose(summed.vector, _loop_sum(model, x, y, batch, clip), rtol=1e-4, atol=1e-5)
    # Each example contributes at most S: the sum's norm is at most S times the batch.
    assert np.linalg.norm(summed.vector) <= clip * summed.batch * (1 + 1e-6)
    assert (summed.clipped == summed.batch) if clip == 0.05 else summed.clipped == 0


def test_poisson_sampling_draws_each_record_with_the_rate_and_may_be_empty() -> None:
    rng = np.random.default_rng(0)
    sizes = [len(poisson_sample(1000, 0.1, rng)) for _ in range(200)]
    assert abs(np.mean(sizes) - 100) < 3
    assert len(poisson_sample(10, 1e-9, rng)) == 0
    assert len(poisson_sample(10, 1.0, rng)) == 10


def test_an_empty_batch_gives_a_zero_sum(breast_cancer: Dataset) -> None:
    model = build_model("breast-cancer-logreg", seed=0)
    summed = clipped_gradient_sum(model, breast_cancer.x_train[:3], breast_cancer.y_train[:3], sample_rate=1e-9,
                                  clip_norm=1.0, rng=np.random.default_rng(0))
    assert summed.batch == 0 and not summed.vector.any() and summed.vector.shape == (62,)


def test_local_dp_sgd_learns_reports_opacus_epsilon_and_leaves_a_plain_model(breast_cancer: Dataset) -> None:
    model = build_model("breast-cancer-logreg", seed=0)
    settings = DpSgd(noise_multiplier=1.0, clip_norm=1.0, sample_rate=0.1, steps=30)
    result = local_dp_sgd(model, breast_cancer.x_train, breast_cancer.y_train, settings=settings, lr=0.5,
                          delta=1e-5, rounds_so_far=2, seed=3)

    assert result.steps == 30 and 20 < result.mean_batch < 70
    # Opacus's accountant over all three rounds' steps; ours is the reference and agrees.
    ours = RdpAccountant(noise_multiplier=1.0, sample_rate=0.1, steps_per_round=30).epsilon_after(3, delta=1e-5)
    assert math.isclose(result.opacus_epsilon, ours, abs_tol=1e-6)
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())
    assert set(model.state_dict()) == {"linear.weight", "linear.bias"}
    _, accuracy = evaluate(model, breast_cancer.x_test, breast_cancer.y_test)
    assert accuracy > 0.85, accuracy


def test_local_dp_sgd_is_fixed_by_its_seed(breast_cancer: Dataset) -> None:
    flats = []
    for seed in (5, 5, 6):
        model = build_model("breast-cancer-logreg", seed=0)
        local_dp_sgd(model, breast_cancer.x_train, breast_cancer.y_train, lr=0.5, delta=1e-5, seed=seed,
                     settings=DpSgd(noise_multiplier=1.0, clip_norm=1.0, sample_rate=0.05, steps=5))
        flats.append(get_flat(model))
    assert np.array_equal(flats[0], flats[1]) and not np.array_equal(flats[0], flats[2])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"noise_multiplier": -1.0, "clip_norm": 1.0, "sample_rate": 0.1}, "noise multiplier must be"),
    ({"noise_multiplier": 1.0, "clip_norm": 0.0, "sample_rate": 0.1}, "clip norm must be"),
    ({"noise_multiplier": 1.0, "clip_norm": 1.0, "sample_rate": 0.0}, r"sample rate must be in \(0, 1\]"),
    ({"noise_multiplier": 1.0, "clip_norm": 1.0, "sample_rate": 0.1, "steps": 0}, "steps must be at least 1"),
])
def test_bad_dp_sgd_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(PrivacyError, match=message):
        DpSgd(**kwargs)  # type: ignore[arg-type]
