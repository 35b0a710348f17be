"""Unit tests of the RDP accountant: pinned values, label noise, monotonicity, planning and calibration.

The comparisons made live against Opacus and Google's dp-accounting are in test_accountant_references.py.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.errors import PrivacyError
from fedledger.privacy import calibrate_noise, pure_dp_rdp
from fedledger.privacy.accountant import DEFAULT_ORDERS, RdpAccountant, epsilon_from_rdp, gaussian_rdp

# The integer orders the accountant used before it took fractional ones.
INTEGER_ORDERS = tuple(range(2, 65)) + (128, 256, 512)

# (noise multiplier, sample rate, steps, delta) -> epsilon, best order: Opacus 1.6.0's RDPAccountant
# (history [(z, q, steps)], get_privacy_spent) at its default orders, which are DEFAULT_ORDERS.
OPACUS_REFERENCE = [
    (1.1, 1.0, 5, 1e-5, 10.941319823567268, 3.2),
    (0.8, 0.3, 20, 1e-5, 15.485198332616191, 2.2),
    (2.0, 0.01, 1000, 1e-6, 0.7827964235975876, 26.0),
    (1.0, 0.5, 1, 1e-5, 3.8935758781414105, 5.4),
    (4.0, 1.0, 100, 1e-5, 14.132226163159334, 2.8),
    (1.1, 0.01, 100, 1e-5, 0.9560910987474418, 10.7),
    (0.7, 0.064, 10, 1e-5, 5.562957045549073, 3.2),
    (5.0, 0.001, 1, 1e-5, 0.10286854000214402, 63.0),
]

# The same computation on INTEGER_ORDERS (Opacus 1.6.0 compute_rdp + get_privacy_spent).
OPACUS_INTEGER_ORDERS_REFERENCE = [
    (1.1, 1.0, 5, 1e-5, 11.000038587480912),
    (0.8, 0.3, 20, 1e-5, 15.970558253848951),
    (2.0, 0.01, 1000, 1e-6, 0.7827964235975876),
    (1.0, 0.5, 1, 1e-5, 3.910622203260199),
    (4.0, 1.0, 100, 1e-5, 14.176691480042896),
]

# (sample rate, noise multiplier, order) -> RDP from the defining integral
# log E_{z~N(0,s^2)}[(1 - q + q e^((2z - 1) / 2s^2))^order] / (order - 1), by mpmath quadrature at 50 digits
# (tanh-sinh and Gauss-Legendre agree to all of them). Opacus misses the first by 1e-6 relative and
# the (0.5, 100, 1.1) one by 2.3e-12 absolute; both are within this accountant's stated accuracy.
EXACT_FRACTIONAL_RDP = [
    (0.001, 5.0, 1.1, 2.2445090613383967685e-8),
    (0.01, 1.1, 1.1, 6.9588515593702618402e-5),
    (0.064, 0.8, 1.5, 0.010038117752417879999),
    (0.25, 0.5, 3.7, 5.5003475908952174614),
    (0.5, 100.0, 1.1, 1.3750206247507885579e-5),
    (0.5, 5.0, 2.5, 0.012753025434984810124),
    (0.25, 2.0, 10.9, 0.20480878167196142448),
    (0.9, 0.3, 1.3, 6.794096144226324457),
]


def test_default_orders_are_opacus_defaults() -> None:
    assert DEFAULT_ORDERS[:3] == (1.1, 1.2, 1.3) and DEFAULT_ORDERS[98:101] == (10.9, 12.0, 13.0)
    assert len(DEFAULT_ORDERS) == 99 + 52 and DEFAULT_ORDERS[-1] == 63.0
    assert list(DEFAULT_ORDERS) == sorted(set(DEFAULT_ORDERS))


@pytest.mark.parametrize("z, q, steps, delta, expected, best_order", OPACUS_REFERENCE)
def test_epsilon_matches_opacus_reference_values(z: float, q: float, steps: int, delta: float, expected: float,
                                                 best_order: float) -> None:
    accountant = RdpAccountant(noise_multiplier=z, sample_rate=q)

    accountant.step(steps)

    assert accountant.epsilon(delta=delta) == pytest.approx(expected, abs=1e-9)
    assert epsilon_from_rdp(accountant.rdp_after(steps), DEFAULT_ORDERS, delta=delta)[1] == best_order


@pytest.mark.parametrize("z, q, steps, delta, expected", OPACUS_INTEGER_ORDERS_REFERENCE)
def test_integer_orders_still_match_their_opacus_values(z: float, q: float, steps: int, delta: float,
                                                        expected: float) -> None:
    accountant = RdpAccountant(noise_multiplier=z, sample_rate=q, orders=INTEGER_ORDERS)

    assert accountant.epsilon_after(steps, delta=delta) == pytest.approx(expected, abs=1e-9)
    # More orders can only find a smaller epsilon.
    assert RdpAccountant(noise_multiplier=z, sample_rate=q).epsilon_after(steps, delta=delta) <= expected + 1e-12


@pytest.mark.parametrize("q, z, order, exact", EXACT_FRACTIONAL_RDP)
def test_fractional_orders_match_the_defining_integral(q: float, z: float, order: float, exact: float) -> None:
    rdp = gaussian_rdp(noise_multiplier=z, sample_rate=q, order=order)

    # The series stops when its tail is known to e^-30 of A, i.e. log A (= (order - 1) RDP) to e^-30.
    assert rdp == pytest.approx(exact, rel=1e-8, abs=math.exp(-30) / (order - 1))


@pytest.mark.parametrize("q", [0.01, 0.25, 0.9])
@pytest.mark.parametrize("z", [0.7, 2.0])
@pytest.mark.parametrize("order", [2, 5, 11])
def test_fractional_series_meets_the_exact_integer_sum(q: float, z: float, order: int) -> None:
    exact = gaussian_rdp(noise_multiplier=z, sample_rate=q, order=order)

    # Two different formulas: the finite binomial sum at the integer, the series just beside it.
    for beside in (order - 1e-7, order + 1e-7):
        assert gaussian_rdp(noise_multiplier=z, sample_rate=q, order=beside) == pytest.approx(exact, rel=1e-5)
    assert gaussian_rdp(noise_multiplier=z, sample_rate=q, order=float(order)) == exact


def test_full_participation_is_the_plain_gaussian_mechanism() -> None:
    for order in (1.5, 2, 7, 63):
        assert gaussian_rdp(noise_multiplier=1.5, sample_rate=1.0, order=order) == pytest.approx(order / (2 * 1.5**2))
    # Subsampling amplifies privacy: a smaller sample rate never costs more.
    for order in (1.5, 8):
        sampled = gaussian_rdp(noise_multiplier=1.0, sample_rate=0.1, order=order)
        assert 0 < sampled < gaussian_rdp(noise_multiplier=1.0, sample_rate=1.0, order=order)
    assert gaussian_rdp(noise_multiplier=1.0, sample_rate=0.0, order=2.5) == 0.0


def test_pure_dp_rdp_is_the_smaller_of_epsilon_and_the_zcdp_bound() -> None:
    assert pure_dp_rdp(epsilon=1.0, order=1.5) == pytest.approx(0.75)  # order eps^2 / 2
    assert pure_dp_rdp(epsilon=1.0, order=3.0) == 1.0  # epsilon itself
    assert pure_dp_rdp(epsilon=0.0, order=10.0) == 0.0
    with pytest.raises(PrivacyError, match="pure-DP epsilon"):
        pure_dp_rdp(epsilon=-0.1, order=2.0)
    with pytest.raises(PrivacyError, match="orders must be finite and > 1"):
        pure_dp_rdp(epsilon=1.0, order=1.0)


@pytest.mark.parametrize("z, q, spr", [(1.0, 1.0, 1), (3.0, 1.0, 1), (1.1, 0.01, 20), (0.9, 0.25, 3)])
@pytest.mark.parametrize("label_epsilon", [0.1, 1.0, 4.0])
def test_label_noise_is_added_once_and_within_basic_composition(z: float, q: float, spr: int,
                                                                 label_epsilon: float) -> None:
    plain = RdpAccountant(noise_multiplier=z, sample_rate=q, steps_per_round=spr)
    labelled = RdpAccountant(noise_multiplier=z, sample_rate=q, steps_per_round=spr, label_epsilon=label_epsilon)

    for rounds in (1, 5, 50):
        without, with_labels = plain.epsilon_after(rounds, delta=1e-5), labelled.epsilon_after(rounds, delta=1e-5)
        assert without <= with_labels <= without + label_epsilon + 1e-12
        # Once per task: the label term does not grow with the rounds.
        gap = [b - a for a, b in zip(plain.rdp_after(rounds), labelled.rdp_after(rounds))]
        assert gap == pytest.approx([pure_dp_rdp(epsilon=label_epsilon, order=a) for a in DEFAULT_ORDERS])
    assert labelled.epsilon_after(0, delta=1e-5) == 0.0


def test_a_round_is_steps_per_round_steps() -> None:
    per_round = RdpAccountant(noise_multiplier=1.1, sample_rate=0.02, steps_per_round=25)
    per_step = RdpAccountant(noise_multiplier=1.1, sample_rate=0.02)

    assert per_round.epsilon_after(4, delta=1e-5) == per_step.epsilon_after(100, delta=1e-5)


@given(z=st.floats(0.5, 5.0), q=st.floats(0.001, 1.0), rounds=st.integers(1, 300),
       more_noise=st.floats(1.01, 3.0), more_sampling=st.floats(1.01, 3.0), delta=st.sampled_from([1e-5, 1e-6]))
def test_epsilon_grows_with_rounds_and_sample_rate_and_falls_with_noise(z: float, q: float, rounds: int,
                                                                        more_noise: float, more_sampling: float,
                                                                        delta: float) -> None:
    accountant = RdpAccountant(noise_multiplier=z, sample_rate=q)
    epsilon = accountant.epsilon_after(rounds, delta=delta)

    assert accountant.epsilon_after(rounds - 1, delta=delta) <= epsilon <= accountant.epsilon_after(rounds + 1, delta=delta)
    denser = RdpAccountant(noise_multiplier=z, sample_rate=min(1.0, q * more_sampling))
    # Within float rounding: at q one ulp below 1 the sampled series and q = 1's closed form agree to
    # about 1e-15 relative, and either may come out on top (hypothesis found q = 0.9999999999999999).
    assert epsilon <= denser.epsilon_after(rounds, delta=delta) * (1 + 1e-12)
    noisier = RdpAccountant(noise_multiplier=z * more_noise, sample_rate=q)
    assert noisier.epsilon_after(rounds, delta=delta) <= epsilon


@given(z=st.floats(0.6, 5.0), budget=st.floats(0.5, 20.0), spr=st.integers(1, 4), label=st.sampled_from([0.0, 0.3]))
def test_max_rounds_is_the_last_round_within_the_budget(z: float, budget: float, spr: int, label: float) -> None:
    accountant = RdpAccountant(noise_multiplier=z, steps_per_round=spr, label_epsilon=label)

    rounds = accountant.max_rounds(epsilon_budget=budget, delta=1e-5, limit=10_000)

    if rounds:
        assert accountant.epsilon_after(rounds, delta=1e-5) <= budget
    if rounds < 10_000:
        assert accountant.epsilon_after(rounds + 1, delta=1e-5) > budget


def test_stepping_and_planning_agree() -> None:
    accountant = RdpAccountant(noise_multiplier=1.3, sample_rate=0.5, steps_per_round=2, label_epsilon=0.5)
    planned = accountant.epsilon_after(7, delta=1e-5)

    for _ in range(7):
        accountant.step()

    assert accountant.rounds == 7 and accountant.epsilon(delta=1e-5) == planned
    assert RdpAccountant(noise_multiplier=1.0, label_epsilon=1.0).epsilon(delta=1e-5) == 0.0


@pytest.mark.parametrize(
    "budget, rounds, q, spr, label",
    [(1.0, 1, 1.0, 1, 0.0), (8.0, 50, 1.0, 1, 0.0), (3.0, 20, 1.0, 1, 0.5), (2.0, 10, 0.01, 30, 0.0),
     (4.0, 5, 0.05, 10, 1.0), (10_000.0, 1, 1.0, 1, 0.0)],
)
def test_calibrated_noise_is_the_smallest_hundredth_that_fits(budget: float, rounds: int, q: float, spr: int,
                                                              label: float) -> None:
    def epsilon(z: float) -> float:
        accountant = RdpAccountant(noise_multiplier=z, sample_rate=q, steps_per_round=spr, label_epsilon=label)
        return accountant.epsilon_after(rounds, delta=1e-5)

    z = calibrate_noise(epsilon_budget=budget, delta=1e-5, rounds=rounds, sample_rate=q, steps_per_round=spr,
                        label_epsilon=label)

    assert z == round(z, 2) and epsilon(z) <= budget
    if z > 0.01:
        assert epsilon(round(z - 0.01, 2)) > budget
    else:
        assert budget == 10_000.0  # the floor: even sigma 0.01 fits


def test_calibration_says_why_nothing_fits() -> None:
    with pytest.raises(PrivacyError, match="label noise alone"):
        calibrate_noise(epsilon_budget=1.0, delta=1e-5, rounds=1, label_epsilon=2.0)
    with pytest.raises(PrivacyError, match="no noise multiplier up to 100 fits 1000000 rounds"):
        calibrate_noise(epsilon_budget=0.01, delta=1e-5, rounds=1_000_000)
    with pytest.raises(PrivacyError, match="rounds must be an integer >= 1"):
        calibrate_noise(epsilon_budget=1.0, delta=1e-5, rounds=0)
    with pytest.raises(PrivacyError, match="epsilon_budget"):
        calibrate_noise(epsilon_budget=0.0, delta=1e-5, rounds=1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"noise_multiplier": 0.0}, "noise_multiplier must be positive"),
        ({"noise_multiplier": math.nan}, "noise_multiplier must be positive"),
        ({"noise_multiplier": 1.0, "sample_rate": 1.5}, r"sample_rate must be in \(0, 1\]"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.0}, r"sample_rate must be in \(0, 1\]"),
        ({"noise_multiplier": 1.0, "steps_per_round": 0}, "steps_per_round must be an integer >= 1"),
        ({"noise_multiplier": 1.0, "steps_per_round": 2.5}, "steps_per_round must be an integer >= 1"),
        ({"noise_multiplier": 1.0, "label_epsilon": -1.0}, "label_epsilon must be finite and >= 0"),
        ({"noise_multiplier": 1.0, "label_epsilon": math.inf}, "label_epsilon must be finite and >= 0"),
        ({"noise_multiplier": 1.0, "orders": [1]}, "orders must be finite and > 1"),
        ({"noise_multiplier": 1.0, "orders": [0.5]}, "orders must be finite and > 1"),
        ({"noise_multiplier": 1.0, "orders": []}, "orders must not be empty"),
    ],
)
def test_invalid_parameters_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PrivacyError, match=message):
        RdpAccountant(**kwargs)  # type: ignore[arg-type]


def test_invalid_delta_and_negative_rounds_are_refused() -> None:
    accountant = RdpAccountant(noise_multiplier=1.0)

    with pytest.raises(PrivacyError, match="delta"):
        accountant.epsilon(delta=0.0)
    with pytest.raises(PrivacyError, match="take back"):
        accountant.step(-1)
    with pytest.raises(PrivacyError, match="rounds must be >= 0"):
        accountant.epsilon_after(-1, delta=1e-5)
    assert math.isfinite(accountant.epsilon_after(10, delta=1e-5))
