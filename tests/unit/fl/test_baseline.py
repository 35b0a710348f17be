"""The plain-FedAvg yardstick: its average, its coordinator loop, and a node's consent to it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from fedledger.fl.baseline import PlainFedAvg
from fedledger.fl.config import Protocol, RunConfig, RunConfigError
from fedledger.fl.messages import MessageType
from fedledger.fl.reference import fedavg_step
from fedledger.fl.rounds import RoundError
from fedledger.fl.server_app import Coordinator, Replies


def test_fedavg_weights_each_update_by_its_samples_from_the_float32_model() -> None:
    weights = np.array([0.1, 1.0], dtype=np.float64)
    stepped = fedavg_step(weights, [(1, np.array([1.0, 0.0])), (3, np.array([0.0, 4.0]))])
    start = weights.astype(np.float32).astype(np.float64)
    assert start[0] != 0.1 and np.allclose(stepped, start + np.array([0.25, 3.0]), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="at least one update"):
        fedavg_step(weights, [])
    with pytest.raises(ValueError, match="at least one sample"):
        fedavg_step(weights, [(0, np.zeros(2))])


def test_the_protocol_is_a_run_config_enum() -> None:
    assert RunConfig.from_flower({"protocol": "plain-fedavg"}).protocol is Protocol.PLAIN_FEDAVG
    assert RunConfig().protocol is Protocol.FEDLEDGER
    with pytest.raises(RunConfigError, match="protocol = 'fedsgd' is invalid"):
        RunConfig.from_flower({"protocol": "fedsgd"})


class FakeCoordinator:
    """The parts of a Coordinator the yardstick drives: its nodes, its messages, its config."""

    def __init__(self, answers: dict[str, dict[str, Any]], problems: dict[str, str] | None = None) -> None:
        self.plan = SimpleNamespace(task_id="t1", participants=("a-co", "b-co", "c-co"),
                                    task={"min_participants": 2})
        self.config = RunConfig(seed=3)
        self.wire: dict[str, dict[str, int]] = {"stale": {"received": 1, "sent": 1}}
        self.answers, self.problems = answers, problems or {}
        self.asked: list[tuple[Any, ...]] = []

    training_message = Coordinator.training_message

    def nodes_of(self, names: tuple[str, ...]) -> dict[int, str]:
        return {i: c for i, c in enumerate(names)}

    def ask(self, companies: dict[int, str], kind: MessageType, content: dict[int, dict[str, Any]]) -> Replies:
        self.asked.append((kind, dict(companies), content))
        for company in self.answers:
            self.wire[company] = {"received": 10, "sent": 20}
        return Replies(dict(self.answers), dict(self.problems))


def _answer(samples: int, update: list[float]) -> dict[str, Any]:
    return {"samples": samples, "update": np.asarray(update, dtype="<f8").tobytes(), "train-seconds": 0.5}


def test_a_plain_round_averages_the_answers_by_samples_and_names_who_is_missing() -> None:
    coordinator = FakeCoordinator({"a-co": _answer(1, [2.0, 0.0]), "b-co": _answer(3, [2.0, 4.0])},
                                  {"c-co": "its node failed: this node takes no part in plain FedAvg"})

    weights, entry = PlainFedAvg(coordinator).train_round(4, np.zeros(2))  # type: ignore[arg-type]

    assert np.allclose(weights, [2.0, 3.0])
    kind, companies, content = coordinator.asked[0]
    assert kind is MessageType.FEDAVG and sorted(companies.values()) == ["a-co", "b-co", "c-co"]
    assert content[0]["round"] == 4 and content[0]["seed"] == 3 and np.frombuffer(content[0]["model"], "<f4").size == 2
    assert entry["included"] == ["a-co", "b-co"] and entry["missing"] == ["c-co"]
    assert "plain FedAvg" in entry["unanswered"]["c-co"] and entry["protocol"] == "plain-fedavg"
    assert set(entry["wire_bytes"]) == {"a-co", "b-co"}  # this round's bytes only
    assert entry["seconds"]["round_wall"] >= entry["seconds"]["train_wall"] > 0


def test_a_plain_round_with_fewer_answers_than_min_participants_fails_with_the_reasons() -> None:
    coordinator = FakeCoordinator({"a-co": _answer(1, [1.0, 1.0])}, {"b-co": "no answer within 300 s"})
    with pytest.raises(RoundError, match=r"1 update\(s\), 2 needed: .*no answer within 300 s"):
        PlainFedAvg(coordinator).train_round(1, np.zeros(2))  # type: ignore[arg-type]


@pytest.mark.parametrize("node_config", [{"home": "/nowhere"}, {"home": "/nowhere", "plain-baseline": "false"}])
def test_a_node_refuses_the_yardstick_unless_its_own_config_consents(node_config: dict[str, str]) -> None:
    from fedledger.fl.client_app import PlainBaselineRefused, plain_fedavg

    # Refused before the node reads its home, the ledger or its data.
    with pytest.raises(PlainBaselineRefused, match='node config does not say plain-baseline = "true"'):
        plain_fedavg(None, SimpleNamespace(node_config=node_config))  # type: ignore[arg-type]
