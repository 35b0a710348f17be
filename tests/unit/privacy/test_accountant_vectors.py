"""Unit tests holding the accountant to the vectors it shares with the chaincode's Go twin, and of epsilon_micro."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from fedledger.errors import PrivacyError
from fedledger.privacy import DEFAULT_ORDERS, RdpAccountant, epsilon_micro

# Written by tests/vectors/make_accountant_vectors.py; chaincode/accountant/accountant_test.go
# checks the Go accountant against the same file.
VECTORS_FILE = Path(__file__).resolve().parents[2] / "vectors" / "accountant.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = VECTORS["cases"]
MICRO = 1_000_000


def _case_id(case: dict[str, Any]) -> str:
    return str(case["name"])


# Shared vectors (the Go chaincode tests against the same file)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_the_vectors_file_reproduces_exactly(case: dict[str, Any]) -> None:
    # The ledger's millionths become floats by one division, as in the Go accountant.
    accountant = RdpAccountant(noise_multiplier=case["noise_multiplier_micro"] / MICRO,
                               sample_rate=case["sample_rate_micro"] / MICRO,
                               steps_per_round=case["steps_per_round"],
                               label_epsilon=case["label_epsilon_micro"] / MICRO)

    epsilon = accountant.epsilon_after(case["rounds"], delta=case["delta_micro"] / MICRO)

    # Exact: the same code on the same floats; any change to the maths must regenerate the file.
    assert epsilon == case["epsilon"]
    assert epsilon_micro(epsilon) == case["epsilon_micro"]


def test_the_vectors_orders_are_the_default_orders() -> None:
    assert tuple(VECTORS["orders"]) == DEFAULT_ORDERS


def test_the_vectors_cover_the_settings_the_ledger_admits() -> None:
    # Company level (q 1), local mode (several steps), label noise, long tasks, both usual deltas.
    assert any(c["sample_rate_micro"] == MICRO for c in CASES)
    assert any(c["steps_per_round"] > 1 for c in CASES)
    assert any(c["label_epsilon_micro"] > 0 for c in CASES)
    assert any(c["rounds"] >= 1000 for c in CASES)
    assert {10, 1000} <= {c["delta_micro"] for c in CASES}
    assert len({c["name"] for c in CASES}) == len(CASES)


def test_the_vectors_file_is_canonical_json() -> None:
    text = VECTORS_FILE.read_text(encoding="utf-8")

    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


# epsilon_micro


@pytest.mark.parametrize(("epsilon", "expected"), [
    (0.0, 0),
    (1.0, 1_000_000),
    (3.2, 3_200_000),
    (1.7681017291445005, 1_768_102),  # rounded up, never down
    (1e-9, 1),  # any privacy spent books at least one millionth
    (48.80169282486775, 48_801_693),
])
def test_epsilon_micro_rounds_up_to_millionths(epsilon: float, expected: int) -> None:
    assert epsilon_micro(epsilon) == expected


@pytest.mark.parametrize("epsilon", [math.inf, math.nan, -1e-9, -math.inf])
def test_epsilon_micro_refuses_what_cannot_be_booked(epsilon: float) -> None:
    with pytest.raises(PrivacyError, match="epsilon must be finite and >= 0"):
        epsilon_micro(epsilon)
