"""Unit tests of the RDP accountant: reference values, monotonicity, planning against a budget."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.errors import PrivacyError
from fedledger.privacy.accountant import RdpAccountant, gaussian_rdp

# (noise multiplier, sample rate, rounds, delta) -> epsilon, computed with Opacus 1.6.0
# (opacus.accountants.analysis.rdp compute_rdp + get_privacy_spent) on the same integer orders.
OPACUS_REFERENCE = [
    (1.1, 1.0, 5, 1e-5, 11.000038587480912),
    (0.8, 0.3, 20, 1e-5, 15.970558253848951),
    (2.0, 0.01, 1000, 1e-6, 0.7827964235975876),
    (1.0, 0.5, 1, 1e-5, 3.910622203260199),
    (4.0, 1.0, 100, 1e-5, 14.176691480042896),
]


@pytest.mark.parametrize("z, q, rounds, delta, expected", OPACUS_REFERENCE)
def test_epsilon_matches_opacus_reference_values(z: float, q: float, rounds: int, delta: float, expected: float) -> None:
    accountant = RdpAccountant(noise_multiplier=z, sample_rate=q)

    accountant.step(rounds)

    assert accountant.epsilon(delta=delta) == pytest.approx(expected, abs=1e-9)


def test_full_participation_is_the_plain_gaussian_mechanism() -> None:
    for order in (2, 7, 64):
        assert gaussian_rdp(noise_multiplier=1.5, sample_rate=1.0, order=order) == pytest.approx(order / (2 * 1.5**2))
    # Subsampling amplifies privacy: a smaller sample rate never costs more.
    assert gaussian_rdp(noise_multiplier=1.0, sample_rate=0.1, order=8) < gaussian_rdp(noise_multiplier=1.0, sample_rate=1.0, order=8)
    assert gaussian_rdp(noise_multiplier=1.0, sample_rate=0.0, order=8) == 0.0


@given(z=st.floats(0.5, 5.0), q=st.floats(0.01, 1.0), steps=st.integers(0, 200), delta=st.sampled_from([1e-5, 1e-6]))
def test_epsilon_never_decreases_with_more_rounds(z: float, q: float, steps: int, delta: float) -> None:
    accountant = RdpAccountant(noise_multiplier=z, sample_rate=q)

    assert accountant.epsilon_after(steps, delta=delta) <= accountant.epsilon_after(steps + 1, delta=delta)


@given(z=st.floats(0.6, 5.0), budget=st.floats(0.5, 20.0))
def test_max_steps_is_the_last_round_within_the_budget(z: float, budget: float) -> None:
    accountant = RdpAccountant(noise_multiplier=z)

    steps = accountant.max_steps(epsilon_budget=budget, delta=1e-5, limit=10_000)

    if steps:
        assert accountant.epsilon_after(steps, delta=1e-5) <= budget
    if steps < 10_000:
        assert accountant.epsilon_after(steps + 1, delta=1e-5) > budget


def test_stepping_and_planning_agree() -> None:
    accountant = RdpAccountant(noise_multiplier=1.3, sample_rate=0.5)
    planned = accountant.epsilon_after(7, delta=1e-5)

    for _ in range(7):
        accountant.step()

    assert accountant.steps == 7 and accountant.epsilon(delta=1e-5) == planned
    assert RdpAccountant(noise_multiplier=1.0).epsilon(delta=1e-5) == 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"noise_multiplier": 0.0}, "noise_multiplier must be positive"),
        ({"noise_multiplier": 1.0, "sample_rate": 1.5}, "sample_rate"),
        ({"noise_multiplier": 1.0, "orders": [1]}, "orders must be integers >= 2"),
        ({"noise_multiplier": 1.0, "orders": [2.5]}, "orders must be integers >= 2"),
    ],
)
def test_invalid_parameters_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PrivacyError, match=message):
        RdpAccountant(**kwargs)  # type: ignore[arg-type]


def test_invalid_delta_and_negative_steps_are_refused() -> None:
    accountant = RdpAccountant(noise_multiplier=1.0)

    with pytest.raises(PrivacyError, match="delta"):
        accountant.epsilon(delta=0.0)
    with pytest.raises(PrivacyError, match="take back"):
        accountant.step(-1)
    assert math.isfinite(accountant.epsilon_after(10, delta=1e-5))
