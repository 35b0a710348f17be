"""What training without privacy would give: plain FedAvg on the same data, partition and rounds.

The yardstick the README's accuracy claims are measured against: every company trains from the
global model exactly as a company-level task's ClientApp does (``train_local`` with the run's
local epochs, batch, learning rate and per-round seed), and the updates are averaged by sample
count, in the clear, with no clipping, noise or encryption. Plain numpy and torch; no Flower, no
Fabric, nobody's privacy: a reference for measurement only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fedledger.fl import task as tasks
from fedledger.fl.config import Partitioner, RunConfig
from fedledger.fl.data import partition_dirichlet, partition_iid


@dataclass(frozen=True)
class Reference:
    """Test accuracy and loss of plain FedAvg after each round (index 0: the initial model)."""

    accuracy: tuple[float, ...]
    loss: tuple[float, ...]


def company_parts(labels: npt.ArrayLike, companies: int, *, partitioner: Partitioner, alpha: float,
                  seed: int) -> list[npt.NDArray[np.int64]]:
    """Each company's indices into the training split: how the demo's node configs split a dataset."""
    if partitioner is Partitioner.DIRICHLET:
        return partition_dirichlet(labels, companies, alpha=alpha, seed=seed)
    return partition_iid(len(np.asarray(labels)), companies, seed=seed)


def local_update(model: str, weights: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike, *, epochs: int,
                 batch_size: int, lr: float, seed: int) -> npt.NDArray[np.float64]:
    """A company's plain local SGD from the global ``weights`` (as a company-level ClientApp trains): its update."""
    start = np.asarray(weights, dtype=np.float32)
    local = tasks.build_model(model)
    tasks.set_flat(local, start)
    tasks.train_local(local, x, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    return tasks.get_flat(local).astype(np.float64) - start.astype(np.float64)


def fedavg_step(weights: npt.ArrayLike, updates: Sequence[tuple[int, npt.ArrayLike]]) -> npt.NDArray[np.float64]:
    """FedAvg: the float32 global ``weights`` plus the sample-weighted mean of ``(n_k, update_k)``."""
    if not updates or any(n < 1 for n, _ in updates):
        raise ValueError("FedAvg needs at least one update, each from at least one sample")
    total = sum(n * np.asarray(u, dtype=np.float64) for n, u in updates)
    return np.asarray(weights, dtype=np.float32).astype(np.float64) + total / sum(n for n, _ in updates)


def plain_fedavg(model: str, *, companies: int, rounds: int, run: RunConfig,
                 data_path: Path | str | None = None, parts: Sequence[npt.NDArray[np.int64]] | None = None) -> Reference:
    """Train task ``model`` by plain FedAvg across ``companies`` for ``rounds`` rounds; score every round."""
    dataset = tasks.load_dataset(model, data_path=data_path, seed=run.seed)
    parts = list(parts) if parts is not None else company_parts(
        dataset.y_train, companies, partitioner=run.partitioner, alpha=run.alpha, seed=run.seed)
    evaluator = tasks.build_model(model)
    weights = tasks.get_flat(tasks.build_model(model)).astype(np.float64)
    accuracy, loss = [], []

    def score() -> None:
        tasks.set_flat(evaluator, weights.astype(np.float32))
        lost, right = tasks.evaluate(evaluator, dataset.x_test, dataset.y_test)
        accuracy.append(right)
        loss.append(lost)

    score()
    for n in range(1, rounds + 1):
        weights = fedavg_step(weights, [(len(indices), local_update(
            model, weights, dataset.x_train[indices], dataset.y_train[indices], epochs=run.local_epochs,
            batch_size=run.batch_size, lr=run.lr, seed=run.seed * 1000 + n)) for indices in parts])
        score()
    return Reference(tuple(accuracy), tuple(loss))
