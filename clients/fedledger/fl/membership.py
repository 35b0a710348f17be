"""Membership-inference audits of trained models: the loss-threshold attack, LiRA, and their ROC metrics.

A membership-inference attack gets a trained model and an example and guesses whether the example
was in the model's training set. Each attack here gives every candidate a *score* (higher means
"more likely a member"), and an audit reports two things about the scores of known members and
known non-members:

* ``roc_auc``: the chance that a random member scores above a random non-member (ties count half),
  0.5 for a model that leaks nothing measurable to this attack;
* ``tpr_at_fpr``: the share of members caught while wrongly accusing at most 1% of non-members.
  Carlini et al. argue this, not the AUC, is what matters: an attack that is sure about a few
  examples is a real breach even when its AUC is near 0.5. Guessing gives TPR = FPR (0.01).

The layers, from pure to convenient:

* scores of a model on examples: ``per_example_losses``, ``per_example_scores`` (torch, lazily);
* pure maths on numpy arrays: ``roc_auc``, ``tpr_at_fpr``, ``lira_scores``;
* attacks: ``loss_threshold_attack`` (Yeom et al. 2018), and LiRA (Carlini et al. 2022) as
  ``train_shadows`` + ``lira_scores`` or, in one call, ``lira``.

The caller trains the models: LiRA takes a callable that trains one shadow model on given pool
indices, so shadows can be trained exactly as the target was (plain SGD, DP-SGD, federated).
No Flower, no Fabric; numpy only until a model is scored.

References: S. Yeom, I. Giacomelli, M. Fredrikson, S. Jha, "Privacy Risk in Machine Learning:
Analyzing the Connection to Overfitting", CSF 2018. N. Carlini, S. Chien, M. Nasr, S. Song,
A. Terzis, F. Tramèr, "Membership Inference Attacks From First Principles", IEEE S&P 2022.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "AttackResult",
    "ShadowSet",
    "ShadowTrainer",
    "lira",
    "lira_scores",
    "loss_threshold_attack",
    "per_example_losses",
    "per_example_scores",
    "roc_auc",
    "tpr_at_fpr",
    "train_shadows",
]

_log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

ShadowTrainer = Callable[[IndexArray, int], "nn.Module"]
"""Trains one shadow model: given indices into the attacker's pool and a seed, returns the trained model.

It should train the way the target was trained (architecture, optimizer, epochs, DP-SGD or not);
LiRA is only as strong as this guess. The seed differs from shadow to shadow, as independent
training runs would (initial weights, batch order, DP noise).
"""

# LiRA estimates one variance per example only with at least this many IN and this many OUT
# shadow scores; below that a single variance shared by every example estimates better, as
# Carlini et al. observe for small numbers of shadow models (they use 64 and more per example).
_OWN_VARIANCE_MIN = 32
# A floor for LiRA's variances: shadows that agree exactly (deterministic training, saturated
# confidences) would otherwise divide by zero.
_VARIANCE_FLOOR = 1e-12


# --- results -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AttackResult:
    """How well one attack told members from non-members.

    ``auc`` is the area under the ROC curve, ``tpr_at_1pct_fpr`` the true-positive rate at a
    false-positive rate of at most 1% (see ``tpr_at_fpr``), and ``members`` / ``nonmembers`` how
    many of each the attack scored.
    """

    name: str
    auc: float
    tpr_at_1pct_fpr: float
    members: int
    nonmembers: int

    @classmethod
    def from_scores(cls, name: str, member_scores: npt.ArrayLike, nonmember_scores: npt.ArrayLike) -> AttackResult:
        """The result of an attack that gave these scores (higher means "member") to known members and non-members."""
        members = _scores(member_scores, "member_scores")
        nonmembers = _scores(nonmember_scores, "nonmember_scores")
        return cls(name, roc_auc(members, nonmembers), tpr_at_fpr(members, nonmembers, fpr=0.01),
                   len(members), len(nonmembers))

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict with snake_case keys."""
        return {"name": self.name, "auc": self.auc, "tpr_at_1pct_fpr": self.tpr_at_1pct_fpr,
                "members": self.members, "nonmembers": self.nonmembers}

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> AttackResult:
        """The result ``to_json`` described.

        Raises
        ------
        ValueError
            A key is missing or a value has the wrong type.
        """
        try:
            name, auc, tpr = raw["name"], raw["auc"], raw["tpr_at_1pct_fpr"]
            members, nonmembers = raw["members"], raw["nonmembers"]
        except KeyError as err:
            raise ValueError(f"an attack result needs the key {err.args[0]!r}") from None
        if not (isinstance(name, str) and isinstance(auc, (int, float)) and isinstance(tpr, (int, float))
                and isinstance(members, int) and isinstance(nonmembers, int)):
            # ValueError, not TypeError: one error for any malformed document, as for a missing key.
            raise ValueError(f"an attack result has a value of the wrong type: {dict(raw)!r}")  # noqa: TRY004
        return cls(name, float(auc), float(tpr), members, nonmembers)


# --- per-example scores of a model ---------------------------------------------------------------------

def _logits(model: nn.Module, x: npt.ArrayLike, y: npt.ArrayLike, batch_size: int) -> tuple[FloatArray, IndexArray]:
    import torch

    from fedledger.fl.task import to_tensors

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    xt, yt = to_tensors(x, y)
    labels: IndexArray = yt.numpy()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            parts = [model(xt[lo:lo + batch_size]).to(torch.float64).numpy()
                     for lo in range(0, xt.shape[0], batch_size)]
    finally:
        model.train(was_training)
    logits: FloatArray = np.concatenate(parts)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"the model must return N x C logits with C >= 2 classes, got shape {logits.shape}")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(f"labels must be in [0, {logits.shape[1]}), got {labels.min()}..{labels.max()}")
    return logits, labels


def _logsumexp(z: FloatArray) -> FloatArray:
    top = np.max(z, axis=1, keepdims=True)
    out: FloatArray = (top + np.log(np.sum(np.exp(z - top), axis=1, keepdims=True)))[:, 0]
    return out


def per_example_losses(model: nn.Module, x: npt.ArrayLike, y: npt.ArrayLike, *,
                       batch_size: int = 1024) -> FloatArray:
    """Each example's cross-entropy loss under ``model`` (in eval mode, without gradients), as float64.

    Computed as ``log(1 + exp(-s))`` from the logit-scaled confidence ``s`` of ``per_example_scores``,
    so a confidently right example keeps a loss like 1e-20 instead of rounding to 0: an overfit
    model puts most members *and* non-members there, and ties at 0 would hide how they differ.

    Raises
    ------
    ValueError
        Empty or mismatched data, a label outside the model's classes, or a model that does not
        return one row of at least two logits per example.
    """
    losses: FloatArray = np.logaddexp(0.0, -per_example_scores(model, x, y, batch_size=batch_size))
    return losses


def per_example_scores(model: nn.Module, x: npt.ArrayLike, y: npt.ArrayLike, *,
                       batch_size: int = 1024) -> FloatArray:
    """Each example's logit-scaled confidence in its true label, ``log(p_y / (1 - p_y))``, as float64.

    This is the statistic LiRA models as Gaussian: the softmax confidence ``p_y`` piles up near 1
    for trained examples, and the logit spreads it out again. It is computed from the logits as
    ``z_y - logsumexp_{j != y} z_j``, which equals ``log p_y - log(1 - p_y)`` without ever forming
    ``1 - p_y`` (which rounds to 0 once ``p_y`` is within 1e-16 of 1).

    Raises
    ------
    ValueError
        As ``per_example_losses``.
    """
    logits, labels = _logits(model, x, y, batch_size)
    rows = np.arange(len(labels))
    others = logits.copy()
    others[rows, labels] = -np.inf
    scores: FloatArray = logits[rows, labels] - _logsumexp(others)
    return scores


# --- ROC metrics ---------------------------------------------------------------------------------------

def _scores(values: npt.ArrayLike, what: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.shape[0] == 0:
        raise ValueError(f"{what} must be a non-empty one-dimensional array, got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"{what} holds NaN; an attack must give every example a score")
    return array


def _roc_counts(members: FloatArray, nonmembers: FloatArray) -> tuple[IndexArray, IndexArray]:
    # One ROC point per distinct score, thresholds falling: "member" is guessed when score >= t.
    # Tied scores cross the threshold together, so a tie between a member and a non-member is one
    # diagonal step of the curve, worth half a correctly ordered pair in the area.
    thresholds = np.unique(np.concatenate([members, nonmembers]))[::-1]
    ordered_m, ordered_n = np.sort(members), np.sort(nonmembers)
    tp = len(ordered_m) - np.searchsorted(ordered_m, thresholds, side="left")
    fp = len(ordered_n) - np.searchsorted(ordered_n, thresholds, side="left")
    zero = np.zeros(1, dtype=np.int64)
    return np.concatenate([zero, tp.astype(np.int64)]), np.concatenate([zero, fp.astype(np.int64)])


def roc_auc(member_scores: npt.ArrayLike, nonmember_scores: npt.ArrayLike) -> float:
    """The area under the ROC curve of scores where higher means "member".

    Equal to the probability that a random member scores above a random non-member, ties counting
    half (the Mann-Whitney U statistic over ``len(members) * len(nonmembers)``), and to
    ``sklearn.metrics.roc_auc_score`` with members labelled 1. Infinite scores are allowed.

    Raises
    ------
    ValueError
        Either array is empty, not one-dimensional, or holds NaN.
    """
    members = _scores(member_scores, "member_scores")
    nonmembers = _scores(nonmember_scores, "nonmember_scores")
    tp, fp = _roc_counts(members, nonmembers)
    # The trapezoid rule in integer counts: exact up to the one division.
    twice_area = int(np.sum((fp[1:] - fp[:-1]) * (tp[1:] + tp[:-1])))
    return twice_area / (2 * len(members) * len(nonmembers))


def tpr_at_fpr(member_scores: npt.ArrayLike, nonmember_scores: npt.ArrayLike, *, fpr: float = 0.01) -> float:
    """The highest true-positive rate at any threshold whose false-positive rate is at most ``fpr``.

    Only the ROC curve's own points count (no interpolation between them): a threshold at a score
    that members and non-members share takes all of them or none, so ties never earn a partial
    true positive. With fewer than ``1 / fpr`` non-members the only admissible threshold may be one
    above every score, giving 0.

    Raises
    ------
    ValueError
        ``fpr`` outside [0, 1], or a score array that ``roc_auc`` would refuse.
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr!r}")
    members = _scores(member_scores, "member_scores")
    nonmembers = _scores(nonmember_scores, "nonmember_scores")
    tp, fp = _roc_counts(members, nonmembers)
    # Compare counts, not rates: 0.01 * 1000 false positives must admit exactly 10 of them.
    allowed = math.floor(fpr * len(nonmembers) + 1e-9)
    return float(tp[fp <= allowed].max()) / len(members)


# --- the loss-threshold attack -------------------------------------------------------------------------

def loss_threshold_attack(model: nn.Module, members: tuple[npt.ArrayLike, npt.ArrayLike],
                          nonmembers: tuple[npt.ArrayLike, npt.ArrayLike], *, batch_size: int = 1024) -> AttackResult:
    """Yeom et al.'s attack: an example whose loss is below a threshold is guessed to be a member.

    What it assumes: the attacker can query the model's output probabilities and knows each
    candidate's true label; nothing about the training recipe. One threshold serves every
    example, so an example that is easy whether trained on or not looks like a member; LiRA
    calibrates per example instead. The AUC and TPR sweep every threshold, so they describe the
    best an attacker who can choose the threshold (Yeom et al. take the mean training loss) can
    do, not one fixed threshold.

    Parameters
    ----------
    model:
        The target, scored in eval mode.
    members, nonmembers:
        ``(x, y)`` of examples known to be in, and known not to be in, the target's training set.

    Returns
    -------
    AttackResult
        Named ``"loss-threshold"``.
    """
    member_losses = per_example_losses(model, *members, batch_size=batch_size)
    nonmember_losses = per_example_losses(model, *nonmembers, batch_size=batch_size)
    return AttackResult.from_scores("loss-threshold", -member_losses, -nonmember_losses)


# --- LiRA ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class ShadowSet:
    """The shadow models' confidences on the candidate examples, and which shadow trained on which.

    ``scores[k, j]`` is shadow ``k``'s ``per_example_scores`` on pool example ``targets[j]``, and
    ``inside[k, j]`` whether that example was in shadow ``k``'s training set. ``seconds`` is the
    wall-clock time of training and scoring them all.
    """

    targets: IndexArray
    scores: FloatArray
    inside: BoolArray
    seconds: float

    @property
    def shadows(self) -> int:
        """How many shadow models were trained."""
        return int(self.scores.shape[0])


def _pool_indices(values: npt.ArrayLike, size: int, what: str) -> IndexArray:
    array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must be a non-empty one-dimensional integer array, got {array.dtype} {array.shape}")
    if array.min() < 0 or array.max() >= size:
        raise ValueError(f"{what} must index the pool of {size} examples, got {array.min()}..{array.max()}")
    if len(np.unique(array)) != len(array):
        raise ValueError(f"{what} repeats an index; each candidate must be scored once")
    return array.astype(np.int64)


def train_shadows(shadow_train: ShadowTrainer, pool_x: npt.ArrayLike, pool_y: npt.ArrayLike,
                  targets: npt.ArrayLike, *, shadows: int = 8, seed: int = 0, batch_size: int = 1024) -> ShadowSet:
    """Train ``shadows`` shadow models on random halves of the pool and score each on the ``targets``.

    Every pool example is IN for exactly ``shadows // 2`` shadows, chosen at random, and OUT for the
    rest (Carlini et al.'s protocol), so each candidate gets as many IN as OUT observations and
    each shadow trains on about half of the pool.

    Parameters
    ----------
    shadow_train:
        Trains one shadow on the pool indices it is given, with the seed it is given.
    pool_x, pool_y:
        The data the attacker holds: the candidates, and more of the same distribution.
    targets:
        Indices into the pool of the examples to score (the candidates of the audit).
    shadows:
        At least 4, so every candidate has at least two IN and two OUT scores.
    seed:
        Fixes which shadow gets which half, and each shadow's training seed.

    Raises
    ------
    ValueError
        Fewer than 4 shadows, mismatched pool arrays, or target indices outside the pool or repeated.
    """
    if shadows < 4:
        raise ValueError(f"LiRA needs at least 4 shadow models (two IN and two OUT per example), got {shadows}")
    x = np.asarray(pool_x)
    y = np.asarray(pool_y)
    if y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"pool_x has {x.shape[0]} examples but pool_y has shape {y.shape}; expected one label each")
    chosen = _pool_indices(targets, len(y), "targets")
    assignment_seq, training_seq = np.random.SeedSequence(seed).spawn(2)
    # Ranking independent uniforms down each column gives a uniformly random set of shadows//2
    # IN shadows per example, independently across examples.
    ranks = np.random.default_rng(assignment_seq).random((shadows, len(y))).argsort(axis=0)
    inside: BoolArray = ranks < shadows // 2
    seeds = training_seq.generate_state(shadows, dtype=np.uint32)
    scores = np.empty((shadows, len(chosen)), dtype=np.float64)
    start = time.perf_counter()
    for k in range(shadows):
        half = np.flatnonzero(inside[k]).astype(np.int64)
        model = shadow_train(half, int(seeds[k]))
        scores[k] = per_example_scores(model, x[chosen], y[chosen], batch_size=batch_size)
        _log.info("shadow %d/%d trained on %d examples (%.1f s so far)", k + 1, shadows, len(half),
                  time.perf_counter() - start)
    return ShadowSet(chosen, scores, inside[:, chosen], time.perf_counter() - start)


def _moments(scores: FloatArray, mask: BoolArray, *, own_variance: bool, what: str) -> tuple[FloatArray, FloatArray]:
    counts = mask.sum(axis=0)
    if (counts < 1).any():
        raise ValueError(f"every example needs at least one {what} shadow score; "
                         f"{int((counts < 1).sum())} have none")
    means = np.where(mask, scores, 0.0).sum(axis=0) / counts
    squares = np.where(mask, (scores - means) ** 2, 0.0).sum(axis=0)
    if own_variance:
        if (counts < 2).any():
            raise ValueError(f"a variance per example needs at least two {what} shadow scores per example")
        variances = squares / (counts - 1)
    else:
        # The pooled within-example variance: every example's deviations from its own mean.
        dof = int((counts - 1).sum())
        if dof < 1:
            raise ValueError(f"too few {what} shadow scores to estimate a variance: add shadow models")
        variances = np.full(scores.shape[1], squares.sum() / dof)
    return means, np.maximum(variances, _VARIANCE_FLOOR)


def lira_scores(observed: npt.ArrayLike, shadow_scores: npt.ArrayLike, inside: npt.ArrayLike, *,
                out_only: bool = False, global_variance: bool | None = None) -> FloatArray:
    """LiRA's membership score of each example, from the target's and the shadows' confidences.

    For each example LiRA fits a Gaussian to the shadows' logit-scaled confidences when it was IN
    their training set and another to those when it was OUT, then scores the target's confidence
    ``o`` by the log likelihood ratio ``log N(o; mu_in, s_in^2) - log N(o; mu_out, s_out^2)``
    (Carlini et al.'s online attack). With ``out_only`` it uses the OUT Gaussian alone and scores
    ``(o - mu_out) / s_out``, which ranks examples as the paper's one-sided offline test does.

    Parameters
    ----------
    observed:
        The target model's ``per_example_scores`` on the examples (length N).
    shadow_scores, inside:
        ``shadows x N``: each shadow's scores on the examples, and whether each was in its training set.
    global_variance:
        One variance per side shared by every example (the pooled within-example variance), or one
        per example. None picks per example only with at least 32 IN and 32 OUT scores per example.

    Returns
    -------
    numpy.ndarray
        One float64 score per example; higher means "member".

    Raises
    ------
    ValueError
        Mismatched shapes, NaN, or too few IN or OUT scores for the variance asked for.
    """
    o = _scores(observed, "observed")
    s = np.asarray(shadow_scores, dtype=np.float64)
    mask = np.asarray(inside, dtype=bool)
    if s.ndim != 2 or s.shape != mask.shape or s.shape[1] != o.shape[0]:
        raise ValueError(f"shadow_scores {s.shape} and inside {mask.shape} must both be shadows x {o.shape[0]}")
    if not np.isfinite(s).all():
        raise ValueError("shadow_scores hold NaN or infinity; a shadow model's logits overflowed")
    in_counts, out_counts = mask.sum(axis=0), (~mask).sum(axis=0)
    fewest = int(out_counts.min()) if out_only else int(min(in_counts.min(), out_counts.min()))
    own = (fewest >= _OWN_VARIANCE_MIN) if global_variance is None else not global_variance
    mu_out, var_out = _moments(s, ~mask, own_variance=own, what="OUT")
    if out_only:
        offline: FloatArray = (o - mu_out) / np.sqrt(var_out)
        return offline
    mu_in, var_in = _moments(s, mask, own_variance=own, what="IN")
    online: FloatArray = (-0.5 * ((o - mu_in) ** 2 / var_in - (o - mu_out) ** 2 / var_out)
                          - 0.5 * np.log(var_in / var_out))
    return online


def lira(target_model: nn.Module, shadow_train: ShadowTrainer, pool_x: npt.ArrayLike, pool_y: npt.ArrayLike,
         target_member_idx: npt.ArrayLike, target_nonmember_idx: npt.ArrayLike, *, shadows: int = 8,
         seed: int = 0, out_only: bool = False, global_variance: bool | None = None,
         batch_size: int = 1024) -> AttackResult:
    """Carlini et al.'s Likelihood Ratio Attack (LiRA) against ``target_model``, shadows trained up front.

    The shadows are trained once, before the target is queried, on random halves of a fixed pool
    that holds every candidate (``train_shadows``), then the target's confidences are scored by
    ``lira_scores``. Note the paper's terms: by default the test is its *online* one (Gaussians
    for IN and OUT; the pool must hold the candidates, as here); ``out_only=True`` is its
    *offline* one (OUT only, so shadows need never have seen the candidates).

    What it assumes: the attacker can query the target's logits on each candidate and knows its
    label; holds a pool of data from the training distribution that contains the candidates; and
    can train shadow models the way the target was trained (``shadow_train``), which is the
    attack's main lever and its main uncertainty. Members and non-members are equally likely a
    priori. No query augmentation (the paper also averages over flipped and shifted queries).

    Parameters
    ----------
    target_model:
        The model under audit.
    shadow_train:
        Trains one shadow model on the pool indices and seed it is given.
    pool_x, pool_y:
        The attacker's data; candidates are given as indices into it.
    target_member_idx, target_nonmember_idx:
        Pool indices of examples known to be in, and known not to be in, the target's training
        set: the ground truth the result is measured against (disjoint).
    shadows, seed:
        As ``train_shadows``.
    out_only, global_variance:
        As ``lira_scores``.

    Returns
    -------
    AttackResult
        Named ``"lira"``, or ``"lira-offline"`` with ``out_only``.

    Raises
    ------
    ValueError
        Overlapping or invalid candidate indices, or anything ``train_shadows`` or ``lira_scores`` refuses.
    """
    size = len(np.asarray(pool_y))
    members = _pool_indices(target_member_idx, size, "target_member_idx")
    nonmembers = _pool_indices(target_nonmember_idx, size, "target_nonmember_idx")
    if np.intersect1d(members, nonmembers).size:
        raise ValueError("target_member_idx and target_nonmember_idx share indices; an example cannot be both")
    targets = np.concatenate([members, nonmembers])
    shadow_set = train_shadows(shadow_train, pool_x, pool_y, targets, shadows=shadows, seed=seed,
                               batch_size=batch_size)
    x, y = np.asarray(pool_x), np.asarray(pool_y)
    observed = per_example_scores(target_model, x[targets], y[targets], batch_size=batch_size)
    scores = lira_scores(observed, shadow_set.scores, shadow_set.inside, out_only=out_only,
                         global_variance=global_variance)
    return AttackResult.from_scores("lira-offline" if out_only else "lira", scores[:len(members)],
                                    scores[len(members):])
