"""Write tests/vectors/accountant.json: the Python accountant's epsilons, for the Go twin to match.

Run from anywhere, with the project's venv: ``python tests/vectors/make_accountant_vectors.py``.
Each case gives a task's privacy parameters as the ledger holds them (millionths, "micro"), a round
count, the epsilon ``RdpAccountant.epsilon_after`` reports and the millionths the ledger books for
it (``epsilon_micro``). chaincode/accountant/accountant_test.go holds the Go accountant to them and
tests/unit/privacy/test_accountant_vectors.py holds the Python one, so a change to either side is
caught. Regenerate only on purpose, when the accountant's maths changes, and say why in the commit.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "clients"))

from fedledger.privacy import DEFAULT_ORDERS, RdpAccountant, calibrate_noise, epsilon_micro  # noqa: E402

OUT = ROOT / "tests" / "vectors" / "accountant.json"
MICRO = 1_000_000
# A case whose epsilon * 1e6 lies this close (relative) to a whole number would make the booked
# millionths depend on the last bits of the floats, which Go and Python need not share: refuse it.
BOUNDARY_MARGIN = 1e-10


def _micro(value: float) -> int:
    return round(value * MICRO)


def _demo_sigma() -> float:
    # The README demo: record level, epsilon 3 at delta 1e-5 over 5 rounds at sample rate 0.25.
    return calibrate_noise(epsilon_budget=3.0, delta=1e-5, rounds=5, sample_rate=0.25)


def _specs() -> list[tuple[str, float, float, int, float, float, int]]:
    """(name, sigma, q, steps per round, label epsilon, delta, rounds)."""
    demo = _demo_sigma()
    return [
        # The README demo, with the calibrated sigma (1.41), and its variants.
        (f"demo: record level, sigma {demo}, q 0.25, 0 rounds", demo, 0.25, 1, 0.0, 1e-5, 0),
        (f"demo: record level, sigma {demo}, q 0.25, 1 round", demo, 0.25, 1, 0.0, 1e-5, 1),
        (f"demo: record level, sigma {demo}, q 0.25, 3 rounds", demo, 0.25, 1, 0.0, 1e-5, 3),
        (f"demo: record level, sigma {demo}, q 0.25, 5 rounds", demo, 0.25, 1, 0.0, 1e-5, 5),
        (f"demo with label noise 1.0: sigma {demo}, q 0.25, 5 rounds", demo, 0.25, 1, 1.0, 1e-5, 5),
        (f"demo, delta 1e-3: sigma {demo}, q 0.25, 5 rounds", demo, 0.25, 1, 0.0, 1e-3, 5),
        (f"demo run long: sigma {demo}, q 0.25, 100 rounds", demo, 0.25, 1, 0.0, 1e-5, 100),
        # Company level: every company in every round (q 1), one noised sum a round.
        ("company level: sigma 1.1, 5 rounds", 1.1, 1.0, 1, 0.0, 1e-5, 5),
        ("company level: sigma 0.8, 1 round", 0.8, 1.0, 1, 0.0, 1e-5, 1),
        ("company level: sigma 0.5, 10 rounds", 0.5, 1.0, 1, 0.0, 1e-5, 10),
        ("company level: sigma 2.5, 20 rounds, delta 1e-3", 2.5, 1.0, 1, 0.0, 1e-3, 20),
        ("company level: sigma 4.0, 100 rounds", 4.0, 1.0, 1, 0.0, 1e-5, 100),
        ("company level: sigma 5.0, 1000 rounds", 5.0, 1.0, 1, 0.0, 1e-5, 1000),
        ("company level: sigma 50, 1000 rounds", 50.0, 1.0, 1, 0.0, 1e-5, 1000),
        ("company level: sigma 50, 1 round", 50.0, 1.0, 1, 0.0, 1e-5, 1),
        ("company level with label noise 2.5: sigma 5.0, 10 rounds", 5.0, 1.0, 1, 2.5, 1e-5, 10),
        ("company level with label noise 1.0: sigma 1.1, 5 rounds", 1.1, 1.0, 1, 1.0, 1e-5, 5),
        # Record level, small sampling rates.
        ("record level: sigma 1.1, q 0.01, 1 round", 1.1, 0.01, 1, 0.0, 1e-5, 1),
        ("record level: sigma 1.1, q 0.01, 100 rounds", 1.1, 0.01, 1, 0.0, 1e-5, 100),
        ("record level: sigma 1.1, q 0.01, 1000 rounds", 1.1, 0.01, 1, 0.0, 1e-5, 1000),
        ("record level: sigma 1.1, q 0.01, 100000 rounds (the ledger's most)", 1.1, 0.01, 1, 0.0, 1e-5, 100_000),
        ("record level: sigma 2.0, q 0.01, 1000 rounds, delta 1e-6", 2.0, 0.01, 1, 0.0, 1e-6, 1000),
        ("record level: sigma 0.5, q 0.01, 10 rounds", 0.5, 0.01, 1, 0.0, 1e-5, 10),
        ("record level: sigma 0.5, q 0.01, 1000 rounds, delta 1e-3", 0.5, 0.01, 1, 0.0, 1e-3, 1000),
        ("record level: sigma 5.0, q 0.01, 1 round", 5.0, 0.01, 1, 0.0, 1e-5, 1),
        ("record level: sigma 50, q 0.01, 1000 rounds", 50.0, 0.01, 1, 0.0, 1e-5, 1000),
        ("record level: sigma 5.0, q 0.001, 1 round", 5.0, 0.001, 1, 0.0, 1e-5, 1),
        ("record level: sigma 0.8, q 0.3, 20 rounds", 0.8, 0.3, 1, 0.0, 1e-5, 20),
        ("record level: sigma 1.0, q 0.5, 1 round", 1.0, 0.5, 1, 0.0, 1e-5, 1),
        ("record level: sigma 2.5, q 0.5, 100 rounds, delta 1e-3", 2.5, 0.5, 1, 0.0, 1e-3, 100),
        ("record level: sigma 50, q 0.5, 10 rounds", 50.0, 0.5, 1, 0.0, 1e-5, 10),
        ("record level: sigma 1.1, q 0.000001 (the smallest rate), 1000 rounds", 1.1, 0.000001, 1, 0.0, 1e-5, 1000),
        ("record level: sigma 1.0, q 0.999999 (the largest below 1), 5 rounds", 1.0, 0.999999, 1, 0.0, 1e-5, 5),
        ("record level: sigma 0.3, q 0.9, 1 round", 0.3, 0.9, 1, 0.0, 1e-5, 1),
        ("record level: sigma 1.1, q 0.01, 1 round, delta 0.5", 1.1, 0.01, 1, 0.0, 0.5, 1),
        ("record level: sigma 1.1, q 0.01, 100 rounds, delta 0.000001", 1.1, 0.01, 1, 0.0, 1e-6, 100),
        # Local mode: several DP-SGD steps a round.
        ("local mode: sigma 0.7, q 0.064, 10 steps, 10 rounds", 0.7, 0.064, 10, 0.0, 1e-5, 10),
        ("local mode: sigma 1.1, q 0.01, 10 steps, 1000 rounds", 1.1, 0.01, 10, 0.0, 1e-5, 1000),
        ("local mode: sigma 2.5, q 0.25, 10 steps, 100 rounds", 2.5, 0.25, 10, 0.0, 1e-5, 100),
        ("local mode: sigma 1.0, q 0.001, 10000 steps (the ledger's most), 100 rounds", 1.0, 0.001, 10_000, 0.0,
         1e-5, 100),
        (f"local mode, demo rate: sigma {demo}, q 0.25, 10 steps, 5 rounds", demo, 0.25, 10, 0.0, 1e-5, 5),
        # Label noise, applied once per task: below, at and past where the pure epsilon bound binds.
        ("label noise 0.1: sigma 1.1, q 0.01, 100 rounds", 1.1, 0.01, 1, 0.1, 1e-5, 100),
        ("label noise 1.0: sigma 1.1, q 0.01, 1000 rounds", 1.1, 0.01, 1, 1.0, 1e-5, 1000),
        ("label noise 2.5: sigma 2.5, q 0.25, 10 steps, 100 rounds", 2.5, 0.25, 10, 2.5, 1e-5, 100),
        ("label noise 2.5 dominating: sigma 50, q 0.001, 1 round", 50.0, 0.001, 1, 2.5, 1e-5, 1),
        ("label noise 8.0: sigma 5.0, q 1, 3 rounds, delta 1e-3", 5.0, 1.0, 1, 8.0, 1e-3, 3),
        ("label noise 1.0, 0 rounds: nothing released yet", 1.1, 0.01, 1, 1.0, 1e-5, 0),
    ]


def _case(name: str, sigma: float, q: float, steps: int, label: float, delta: float, rounds: int) -> dict[str, Any]:
    params = {"noise_multiplier_micro": _micro(sigma), "sample_rate_micro": _micro(q), "delta_micro": _micro(delta),
              "label_epsilon_micro": _micro(label), "steps_per_round": steps}
    # The accountant sees the floats the micro values stand for, as the Go side does.
    accountant = RdpAccountant(noise_multiplier=params["noise_multiplier_micro"] / MICRO,
                               sample_rate=params["sample_rate_micro"] / MICRO, steps_per_round=steps,
                               label_epsilon=params["label_epsilon_micro"] / MICRO)
    epsilon = accountant.epsilon_after(rounds, delta=params["delta_micro"] / MICRO)
    booked = epsilon_micro(epsilon)
    scaled = epsilon * MICRO
    if epsilon > 0 and math.ceil(scaled * (1 - BOUNDARY_MARGIN)) != math.ceil(scaled * (1 + BOUNDARY_MARGIN)):
        raise SystemExit(f"case {name!r}: epsilon {epsilon!r} is within {BOUNDARY_MARGIN} of a whole millionth; "
                         f"choose other parameters")
    return {"name": name, **params, "rounds": rounds, "epsilon": epsilon, "epsilon_micro": booked}


def main() -> None:
    cases = [_case(*spec) for spec in _specs()]
    names = [c["name"] for c in cases]
    if len(set(names)) != len(names):
        raise SystemExit("case names must be unique")
    document = {"orders": list(DEFAULT_ORDERS), "cases": cases}
    OUT.write_text(json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases to {OUT.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
