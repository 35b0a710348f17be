"""Unit tests of the membership-inference audit: ROC metrics, per-example scores, the loss attack and LiRA."""

from __future__ import annotations

import json
import math

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import roc_auc_score
from torch import nn

from fedledger.fl.membership import (
    AttackResult,
    lira,
    lira_scores,
    loss_threshold_attack,
    per_example_losses,
    per_example_scores,
    roc_auc,
    tpr_at_fpr,
    train_shadows,
)
from fedledger.fl.task import LogisticRegression, train_local

Array = npt.NDArray[np.float64]

# Scores with many ties (small integers) and scores with almost none (floats).
tied_scores = hnp.arrays(np.float64, st.integers(1, 40), elements=st.integers(-3, 3).map(float))
float_scores = hnp.arrays(np.float64, st.integers(1, 40),
                          elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))


def sklearn_auc(members: Array, nonmembers: Array) -> float:
    labels = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    return float(roc_auc_score(labels, np.concatenate([members, nonmembers])))


def gaussian_task(n: int, d: int, *, label_noise: float, seed: int) -> tuple[npt.NDArray[np.float32],
                                                                             npt.NDArray[np.int64]]:
    """A binary task whose labels follow a random linear rule plus Gaussian noise (more noise: more to memorize)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=d)
    y = (x @ w + rng.normal(scale=label_noise * np.linalg.norm(w), size=n) > 0).astype(np.int64)
    return x, y


def fit_mlp(x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], seed: int, *, steps: int = 150) -> nn.Module:
    """A small MLP trained full-batch with Adam until it has memorized much of its data (fast: ~0.1 s)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(x.shape[1], 32), nn.ReLU(), nn.Linear(32, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        optimizer.step()
    return model


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


# --- ROC metrics ---------------------------------------------------------------------------------------

@given(tied_scores, tied_scores)
def test_auc_matches_sklearn_on_tied_scores(members: Array, nonmembers: Array) -> None:
    assert roc_auc(members, nonmembers) == pytest.approx(sklearn_auc(members, nonmembers), abs=1e-12)


@given(float_scores, float_scores)
def test_auc_matches_sklearn_on_random_scores(members: Array, nonmembers: Array) -> None:
    assert roc_auc(members, nonmembers) == pytest.approx(sklearn_auc(members, nonmembers), abs=1e-12)


def test_auc_matches_sklearn_on_large_samples() -> None:
    rng = np.random.default_rng(0)
    members, nonmembers = rng.normal(0.3, 1, 3000), rng.normal(0, 1, 2000)
    members[:500] = np.round(members[:500], 1)  # some ties too
    nonmembers[:500] = np.round(nonmembers[:500], 1)

    assert roc_auc(members, nonmembers) == pytest.approx(sklearn_auc(members, nonmembers), abs=1e-12)


@given(tied_scores, tied_scores)
def test_auc_is_symmetric_and_invariant_under_increasing_maps(members: Array, nonmembers: Array) -> None:
    auc = roc_auc(members, nonmembers)

    assert 0.0 <= auc <= 1.0
    assert auc + roc_auc(nonmembers, members) == pytest.approx(1.0, abs=1e-12)
    assert roc_auc(3 * members + 7, 3 * nonmembers + 7) == auc


def test_auc_of_identical_scores_is_one_half_and_of_separated_ones_is_one() -> None:
    assert roc_auc([1.0, 1.0, 1.0], [1.0, 1.0]) == 0.5
    assert roc_auc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert roc_auc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert roc_auc([math.inf, 0.0], [-math.inf, 0.0]) == 0.875


def test_tpr_at_fpr_takes_the_best_threshold_within_the_false_positive_budget() -> None:
    nonmembers = np.arange(100.0)  # 0..99: a 1% budget is one false positive
    members = np.array([200.0, 150.0, 98.5, 10.0, 5.0])

    # Threshold 98.5 lets one non-member (99) through and catches 200, 150 and 98.5.
    assert tpr_at_fpr(members, nonmembers, fpr=0.01) == pytest.approx(3 / 5)
    assert tpr_at_fpr(members, nonmembers, fpr=0.0) == pytest.approx(2 / 5)
    assert tpr_at_fpr(members, nonmembers, fpr=0.02) == pytest.approx(3 / 5)
    assert tpr_at_fpr(members, nonmembers, fpr=1.0) == 1.0


def test_tpr_at_fpr_never_splits_a_tie() -> None:
    members = np.array([5.0, 5.0])
    one_tied = np.concatenate([[5.0], np.zeros(99)])
    two_tied = np.concatenate([[5.0, 5.0], np.zeros(98)])

    assert tpr_at_fpr(members, one_tied, fpr=0.01) == 1.0  # one false positive: within budget
    assert tpr_at_fpr(members, two_tied, fpr=0.01) == 0.0  # two: the tie cannot be half taken


@given(float_scores, float_scores, st.floats(0, 1), st.floats(0, 1))
def test_tpr_at_fpr_grows_with_the_budget(members: Array, nonmembers: Array, a: float, b: float) -> None:
    low, high = sorted((a, b))

    assert 0.0 <= tpr_at_fpr(members, nonmembers, fpr=low) <= tpr_at_fpr(members, nonmembers, fpr=high) <= 1.0


@pytest.mark.parametrize(("members", "nonmembers"), [([], [1.0]), ([1.0], []), ([math.nan], [1.0]),
                                                     ([[1.0]], [1.0])])
def test_metrics_refuse_empty_nan_or_misshapen_scores(members: list[float], nonmembers: list[float]) -> None:
    with pytest.raises(ValueError):
        roc_auc(members, nonmembers)
    with pytest.raises(ValueError):
        tpr_at_fpr(members, nonmembers)


def test_tpr_at_fpr_refuses_a_rate_outside_zero_one() -> None:
    with pytest.raises(ValueError, match="fpr"):
        tpr_at_fpr([1.0], [0.0], fpr=1.5)


# --- per-example scores and results --------------------------------------------------------------------

def logistic_with_logits(rows: list[list[float]]) -> tuple[nn.Module, npt.NDArray[np.float32]]:
    """A model whose logits on the returned inputs are exactly ``rows`` (identity weights, no bias)."""
    logits = np.array(rows, dtype=np.float32)
    model = LogisticRegression(logits.shape[1], logits.shape[1])
    with torch.no_grad():
        model.linear.weight.copy_(torch.eye(logits.shape[1]))
        model.linear.bias.zero_()
    return model, logits


def test_scores_are_logit_scaled_confidence_and_losses_are_cross_entropy() -> None:
    model, x = logistic_with_logits([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [0.0, 0.0, 0.0]])
    y = np.array([0, 1, 2])
    p = torch.softmax(torch.from_numpy(x).double(), dim=1).numpy()[np.arange(3), y]

    np.testing.assert_allclose(per_example_scores(model, x, y), np.log(p / (1 - p)), rtol=1e-6)
    np.testing.assert_allclose(per_example_losses(model, x, y), -np.log(p), rtol=1e-6)


def test_scores_and_losses_keep_their_precision_when_the_model_is_certain() -> None:
    model, x = logistic_with_logits([[60.0, 0.0], [0.0, 60.0]])

    scores = per_example_scores(model, x, np.array([0, 0]))
    losses = per_example_losses(model, x, np.array([0, 0]))

    # p_y rounds to 1 in float64, yet log(p / (1 - p)) is the logit gap itself, and the loss
    # -log p_y = log(1 + exp(-60)) does not round to 0.
    np.testing.assert_allclose(scores, [60.0, -60.0])
    np.testing.assert_allclose(losses, [math.exp(-60.0), 60.0], rtol=1e-12)


def test_scores_refuse_labels_outside_the_models_classes() -> None:
    model, x = logistic_with_logits([[1.0, 0.0]])

    with pytest.raises(ValueError, match="labels"):
        per_example_scores(model, x, np.array([2]))


def test_scoring_leaves_the_model_in_its_training_mode() -> None:
    model, x = logistic_with_logits([[1.0, 0.0]])
    model.train()

    per_example_losses(model, x, np.array([0]))

    assert model.training


def test_attack_result_round_trips_through_json() -> None:
    result = AttackResult.from_scores("loss-threshold", [3.0, 2.0, 0.5], [1.0, 0.0])

    assert result == AttackResult("loss-threshold", 5 / 6, 2 / 3, 3, 2)
    assert AttackResult.from_json(json.loads(json.dumps(result.to_json()))) == result
    with pytest.raises(ValueError, match="auc"):
        AttackResult.from_json({"name": "x"})


# --- the loss-threshold attack -------------------------------------------------------------------------

def test_loss_attack_is_near_chance_against_a_model_trained_on_neither_set() -> None:
    x, y = gaussian_task(1000, 10, label_noise=0.5, seed=1)
    model = fit_mlp(*gaussian_task(200, 10, label_noise=0.5, seed=2), seed=0)

    result = loss_threshold_attack(model, (x[:500], y[:500]), (x[500:], y[500:]))

    assert abs(result.auc - 0.5) < 0.1
    assert (result.members, result.nonmembers) == (500, 500)


def test_loss_attack_finds_the_members_of_an_overfit_logistic_regression() -> None:
    # 40 examples with random labels in 50 dimensions: separable, so training drives their loss to
    # zero, while on fresh examples the model is a confident coin toss (half of them get a tiny
    # loss too, so the AUC tends to 0.75, not 1).
    rng = np.random.default_rng(3)
    x = rng.normal(size=(240, 50)).astype(np.float32)
    y = rng.integers(0, 2, size=240)
    torch.manual_seed(0)
    model = LogisticRegression(50, 2)
    train_local(model, x[:40], y[:40], epochs=200, batch_size=40, lr=0.5, seed=0)

    result = loss_threshold_attack(model, (x[:40], y[:40]), (x[40:], y[40:]))

    assert result.name == "loss-threshold"
    assert result.auc > 0.7


# --- LiRA ----------------------------------------------------------------------------------------------

def test_lira_scores_are_the_gaussian_log_likelihood_ratio() -> None:
    # Two examples, eight shadows: IN scores 4 +- 1 and OUT scores 0 +- 1; the first example is IN
    # for shadows 0-3, the second for shadows 4-7. The target is confident in the first only.
    inside = np.array([[True, False]] * 4 + [[False, True]] * 4)
    shadow = np.where(inside, 4.0, 0.0) + np.array([[-1.0], [1.0], [-1.0], [1.0]] * 2)
    observed = np.array([4.0, 0.0])

    scores = lira_scores(observed, shadow, inside, global_variance=False)

    # Each side: mean 4 (or 0), sample variance 4/3. The ratio at o = 4 is exp(+6) and at 0 exp(-6).
    variance = 4 / 3
    np.testing.assert_allclose(scores, [6.0, -6.0])
    assert 0.5 * 16 / variance == pytest.approx(6.0)
    np.testing.assert_allclose(lira_scores(observed, shadow, inside, out_only=True, global_variance=False),
                               [4 / math.sqrt(variance), 0.0])


def test_lira_scores_use_a_global_variance_with_few_shadows() -> None:
    rng = np.random.default_rng(0)
    inside = np.zeros((8, 50), dtype=bool)
    inside[:4] = True
    shadow = rng.normal(size=(8, 50)) + 2.0 * inside
    observed = rng.normal(size=50)

    auto = lira_scores(observed, shadow, inside)

    np.testing.assert_allclose(auto, lira_scores(observed, shadow, inside, global_variance=True))
    assert not np.allclose(auto, lira_scores(observed, shadow, inside, global_variance=False))


def test_lira_scores_refuse_examples_without_out_scores_and_bad_shapes() -> None:
    inside = np.ones((4, 3), dtype=bool)

    with pytest.raises(ValueError, match="OUT"):
        lira_scores(np.zeros(3), np.zeros((4, 3)), inside)
    with pytest.raises(ValueError, match="shadows x"):
        lira_scores(np.zeros(2), np.zeros((4, 3)), inside)


def test_every_example_is_in_half_the_shadows_and_each_shadow_gets_its_own_seed() -> None:
    x, y = gaussian_task(60, 4, label_noise=0.5, seed=0)
    calls: list[tuple[npt.NDArray[np.int64], int]] = []

    def shadow_train(indices: npt.NDArray[np.int64], seed: int) -> nn.Module:
        calls.append((indices, seed))
        return LogisticRegression(4, 2)

    shadows = train_shadows(shadow_train, x, y, np.arange(10, 30), shadows=6, seed=7)

    assert shadows.scores.shape == shadows.inside.shape == (6, 20)
    assert (shadows.inside.sum(axis=0) == 3).all()
    assert len({seed for _, seed in calls}) == 6
    for k, (indices, _) in enumerate(calls):
        np.testing.assert_array_equal(np.isin(np.arange(10, 30), indices), shadows.inside[k])
    again = train_shadows(lambda i, s: LogisticRegression(4, 2), x, y, np.arange(10, 30), shadows=6, seed=7)
    np.testing.assert_array_equal(again.inside, shadows.inside)


def test_lira_finds_the_members_of_an_overfit_mlp() -> None:
    x, y = gaussian_task(200, 10, label_noise=1.0, seed=0)
    order = np.random.default_rng(0).permutation(200)
    members, nonmembers = order[:100], order[100:]
    target = fit_mlp(x[members], y[members], seed=12345)

    def shadow_train(indices: npt.NDArray[np.int64], seed: int) -> nn.Module:
        return fit_mlp(x[indices], y[indices], seed)

    online = lira(target, shadow_train, x, y, members, nonmembers, shadows=8, seed=1)
    offline = lira(target, shadow_train, x, y, members, nonmembers, shadows=8, seed=1, out_only=True)

    assert (online.name, online.members, online.nonmembers) == ("lira", 100, 100)
    assert online.auc > 0.65
    assert offline.name == "lira-offline"
    assert offline.auc > 0.55


@pytest.mark.parametrize(("members", "nonmembers", "shadows", "message"), [
    ([0, 1], [1, 2], 8, "share"),
    ([0, 60], [2], 8, "index the pool"),
    ([0, 0], [2], 8, "repeats"),
    ([0, 1], [2], 2, "at least 4"),
])
def test_lira_refuses_bad_candidates_before_training(members: list[int], nonmembers: list[int], shadows: int,
                                                     message: str) -> None:
    x, y = gaussian_task(60, 4, label_noise=0.5, seed=0)

    def never(indices: npt.NDArray[np.int64], seed: int) -> nn.Module:
        raise AssertionError("no shadow should be trained")

    with pytest.raises(ValueError, match=message):
        lira(LogisticRegression(4, 2), never, x, y, members, nonmembers, shadows=shadows)
