"""The plain-FedAvg yardstick, run by the coordinator through the same nodes and Flower deployment.

A benchmark needs FedLedger's cost against what the same federation would spend without it: the
same task (its model and participants, read from the ledger's genesis), the same SuperLink and
SuperNodes, the same authentication of nodes by their ledger-recorded keys, the same partition of
the data. Each round the coordinator sends the model, every company trains with plain local SGD
(``fl.reference.local_update``, the recipe of the in-process reference) and sends its update in
the clear, and the coordinator averages them by sample count (``fl.reference.fedavg_step``). No
clipping, noise or encryption, no leader or committee, and nothing written to the ledger.

Nobody's privacy: a node answers only if its company opted in with ``plain-baseline = "true"``
in its own node config (``fedledger train --protocol plain-fedavg`` starts the demo's nodes so).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fedledger.fl.config import Protocol
from fedledger.fl.messages import MessageType
from fedledger.fl.reference import fedavg_step
from fedledger.fl.rounds import RoundError, model_bytes, model_from_bytes

if TYPE_CHECKING:
    from fedledger.fl.server_app import Coordinator


@dataclass
class PlainFedAvg:
    """Plain FedAvg rounds, driven through a :class:`Coordinator`'s connected nodes and metrics."""

    coordinator: Coordinator

    def train_round(self, n: int, weights: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Round ``n`` from ``weights``: the new weights and the round's metrics."""
        coordinator = self.coordinator
        coordinator.wire = {}
        participants = coordinator.nodes_of(coordinator.plan.participants)
        message = coordinator.training_message(n, model_bytes(weights))
        started, started_at = time.perf_counter(), time.time()
        trained = coordinator.ask(participants, MessageType.FEDAVG, {node: message for node in participants})
        train_wall = time.perf_counter() - started
        if len(trained.results) < int(coordinator.plan.task["min_participants"]):
            raise RoundError(f"plain FedAvg round {n}: {len(trained.results)} update(s), "
                             f"{coordinator.plan.task['min_participants']} needed: {trained.problems}")
        updates = {c: (int(r["samples"]), np.frombuffer(bytes(r["update"]), dtype="<f8"))
                   for c, r in sorted(trained.results.items())}
        weights = fedavg_step(weights, list(updates.values()))
        included = list(updates)
        entry = {"round": n, "started_at": started_at, "protocol": str(Protocol.PLAIN_FEDAVG),
                 "included": included, "missing": sorted(set(coordinator.plan.participants) - set(included)),
                 "unanswered": dict(trained.problems),
                 "seconds": {"train_wall": train_wall, "round_wall": time.perf_counter() - started},
                 "wire_bytes": {c: dict(w) for c, w in sorted(coordinator.wire.items())},
                 "client_seconds": {c: {"train": float(r["train-seconds"])} for c, r in trained.results.items()}}
        return weights, entry

    def run(self) -> None:
        """Train the task's rounds by plain FedAvg from its initial model; score and keep every model."""
        coordinator = self.coordinator
        plain = {"epsilon": 0.0, "privacy_unit": "none", "protocol": str(Protocol.PLAIN_FEDAVG)}
        evaluator, dataset, model, _ = coordinator.begin(plain)
        weights = model_from_bytes(model).astype(np.float64)
        store = coordinator.session.store
        for n in range(1, coordinator.plan.task["rounds"] + 1):
            weights, entry = self.train_round(n, weights)
            data = model_bytes(weights)
            coordinator.score(evaluator, dataset, n, data, store.put(data), {**plain, **entry})
