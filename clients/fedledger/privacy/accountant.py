"""Privacy accounting: Renyi DP of the sampled Gaussian mechanism and of label noise, as (epsilon, delta).

The maths (pure functions) follows Mironov, Talwar & Zhang, "Renyi Differential Privacy of the
Sampled Gaussian Mechanism" (2019): an exact finite sum at integer orders and a convergent series
at fractional ones (their Section 3.3). A pure epsilon-DP mechanism (the label randomized response)
enters through Bun & Steinke (2016), Proposition 3.3. The conversion to (epsilon, delta) is the one
of Balle et al. (2020) and Canonne, Kamath & Steinke (2020). These are the formulas of Opacus's
``RDPAccountant``, at the same default orders, so for the same mechanism the two agree to rounding;
a unit test holds them together, and against Google's dp-accounting (RDP and PLD).

Who uses what: one round of a task is ``steps_per_round`` steps of the Gaussian mechanism, each
sampling its unit with probability ``sample_rate``. Record-level DP: the unit is one record, a step
is one DP-SGD step (``sample_rate`` the batch's Poisson rate). Company-level DP: the unit is a
company's whole clipped update, one step a round, and every company takes part (``sample_rate`` 1,
``steps_per_round`` 1). Label noise (randomized response) is applied once per task, so its cost is
added once, not per round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fedledger.errors import PrivacyError

# Opacus's RDPAccountant.DEFAULT_ALPHAS, computed the same way so the floats are identical: the
# fractional orders matter for small epsilons (the best order then lies close to 1).
DEFAULT_ORDERS: tuple[float, ...] = tuple(1 + x / 10 for x in range(1, 100)) + tuple(float(a) for a in range(12, 64))

# The fractional-order series stops once its tail is known to within e^-30 (about 1e-13) of the total
# (see _log_a_fractional). The cap only guards against parameters for which the series would not
# converge in reasonable time; such an order is dropped.
_LOG_TAIL_CUTOFF = 30.0
_MAX_SERIES_TERMS = 100_000

# Below this, log(erfc(x)) is accurate from math.erfc (erfc(20) ~ 5e-176, far from underflow).
_ERFC_DIRECT_LIMIT = 20.0
_LOG_HALF = -math.log(2.0)
_LOG_SQRT_PI = 0.5 * math.log(math.pi)


def _log_add(a: float, b: float) -> float:
    """log(e^a + e^b)."""
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))


def _log_sub(a: float, b: float) -> float:
    """log(e^a - e^b) for a >= b (-inf when they are equal)."""
    if b == -math.inf:
        return a
    if a == b:
        return -math.inf
    return a + math.log1p(-math.exp(b - a))


def _log_erfc(x: float) -> float:
    """log(erfc(x)), accurate where erfc(x) itself underflows."""
    if x < _ERFC_DIRECT_LIMIT:
        return math.log(math.erfc(x))
    # Asymptotic expansion: erfc(x) = e^(-x^2) / (x sqrt(pi)) * sum_k (-1)^k (2k-1)!! / (2x^2)^k.
    # At x >= 20 the ratio of successive terms is at most (2k-1)/800: eight terms reach 1e-19.
    u = 1.0 / (2.0 * x * x)
    series = u * (-1 + u * (3 + u * (-15 + u * (105 + u * (-945 + u * (10395 + u * (-135135 + u * 2027025)))))))
    return -x * x - math.log(x) - _LOG_SQRT_PI + math.log1p(series)


def _log_a_integer(q: float, sigma: float, order: int) -> float:
    """log A at integer ``order``: A = sum_k C(order, k) q^k (1-q)^(order-k) e^((k^2 - k) / (2 sigma^2))."""
    log_q, log_1q = math.log(q), math.log1p(-q)
    two_var = 2 * sigma**2
    log_a = -math.inf
    for k in range(order + 1):
        log_binom = math.lgamma(order + 1) - math.lgamma(k + 1) - math.lgamma(order - k + 1)
        log_a = _log_add(log_a, log_binom + k * log_q + (order - k) * log_1q + (k * k - k) / two_var)
    return log_a


def _log_a_fractional(q: float, sigma: float, order: float) -> float:
    """log A at a fractional ``order`` > 1 (Mironov, Talwar & Zhang 2019, Section 3.3).

    A = E_{z ~ N(0, s^2)} [(1 - q + q r(z))^order] with r = N(1, s^2) / N(0, s^2). Split the line at
    z0 = s^2 log(1/q - 1) + 1/2, where q r = 1 - q: below it expand in powers of q r / (1 - q), above it
    in powers of (1 - q) / (q r); both binomial series converge. Integrating term by term, term i is
    C(order, i) times

        q^i (1-q)^(order-i) e^((i^2 - i) / 2s^2) erfc((i - z0) / (sqrt(2) s)) / 2             (below)
      + q^(order-i) (1-q)^i e^((j^2 - j) / 2s^2) erfc((z0 - j) / (sqrt(2) s)) / 2,  j = order - i (above).

    Summed in log space, positive and negative coefficients apart. Past i = floor(order) + 1 the
    signs alternate; once the terms' sizes m_i shrink convexly, the rest of the series lies between
    m_{i+1} / 2 and m_i / 2 in size, so it is taken as m_i / 2, wrong by at most (m_{i-1} - m_i) / 2,
    and the sum stops when that is e^-30 (about 1e-13) of the total: log A is then exact to about
    1e-13, as with Opacus's truncation (it drops terms below e^-30), but with far fewer terms at
    orders near 1, where they shrink only like i^-(order + 2).

    Returns inf when the series has not converged within the term cap (such an order is useless,
    and dropping it from the minimum over orders is safe).
    """
    log_q, log_1q = math.log(q), math.log1p(-q)
    two_var = 2 * sigma**2
    root2_sigma = math.sqrt(2) * sigma
    z0 = sigma**2 * (log_1q - log_q) + 0.5
    log_gamma_top = math.lgamma(order + 1)
    # C(order, i) > 0 up to i = floor(order) + 1; from there its sign alternates with i.
    head = math.floor(order) + 1
    positive = negative = -math.inf
    before_last = last = math.inf  # log m_{i-2}, log m_{i-1}
    for i in range(_MAX_SERIES_TERMS):
        j = order - i
        log_binom = log_gamma_top - math.lgamma(i + 1) - math.lgamma(j + 1)  # lgamma is log|Gamma|
        below = i * log_q + j * log_1q + (i * i - i) / two_var + _LOG_HALF + _log_erfc((i - z0) / root2_sigma)
        above = j * log_q + i * log_1q + (j * j - j) / two_var + _LOG_HALF + _log_erfc((z0 - j) / root2_sigma)
        term = log_binom + _log_add(below, above)
        is_negative = i > head and (i - head) % 2 == 1
        if is_negative:
            negative = _log_add(negative, term)
        else:
            positive = _log_add(positive, term)
        if i > head + 1 and term < last < before_last and positive > negative:
            step, previous_step = _log_sub(last, term), _log_sub(before_last, last)
            # Sizes shrinking convexly: the tail estimate m_i / 2 is off by at most (m_{i-1} - m_i) / 2.
            if step <= previous_step and step + _LOG_HALF < _log_sub(positive, negative) - _LOG_TAIL_CUTOFF:
                # The tail takes the sign of term i + 1, the opposite of term i's.
                if is_negative:
                    positive = _log_add(positive, term + _LOG_HALF)
                else:
                    negative = _log_add(negative, term + _LOG_HALF)
                return _log_sub(positive, negative) if positive > negative else math.inf
        before_last, last = last, term
    return math.inf


def gaussian_rdp(*, noise_multiplier: float, sample_rate: float, order: float) -> float:
    """RDP at ``order`` of one step of the sampled Gaussian mechanism.

    Each unit is included with probability ``sample_rate`` (Poisson sampling) and Gaussian noise of
    standard deviation ``noise_multiplier`` times the sensitivity is added to the sum. The RDP is
    ``log(A) / (order - 1)``, with A exact at integer orders and a convergent series at fractional
    ones (see the module docstring); ``order / (2 sigma^2)`` at ``sample_rate`` 1.

    Parameters
    ----------
    noise_multiplier : float
        sigma, the noise standard deviation over the sensitivity; positive and finite.
    sample_rate : float
        q, in [0, 1]; 0 releases nothing (RDP 0).
    order : float
        The Renyi order alpha, finite and > 1; integers need not be ints (2.0 is exact too).

    Returns
    -------
    float
        The RDP epsilon at ``order``; ``inf`` if the fractional series does not converge.

    Raises
    ------
    PrivacyError
        If a parameter is out of range.
    """
    if not (order > 1 and math.isfinite(order)):
        raise PrivacyError(f"orders must be finite and > 1, got {order!r}")
    if not (noise_multiplier > 0 and math.isfinite(noise_multiplier)):
        raise PrivacyError(f"noise_multiplier must be positive and finite, got {noise_multiplier!r}")
    if not 0 <= sample_rate <= 1:
        raise PrivacyError(f"sample_rate must be in [0, 1], got {sample_rate!r}")
    if sample_rate == 0:
        return 0.0
    if sample_rate == 1:
        return order / (2 * noise_multiplier**2)
    if float(order).is_integer():
        log_a = _log_a_integer(sample_rate, noise_multiplier, int(order))
    else:
        log_a = _log_a_fractional(sample_rate, noise_multiplier, order)
    return log_a / (order - 1)


def pure_dp_rdp(*, epsilon: float, order: float) -> float:
    """RDP at ``order`` of a pure ``epsilon``-DP mechanism: ``min(epsilon, order * epsilon^2 / 2)``.

    Pure epsilon-DP bounds every Renyi divergence by epsilon, and implies (epsilon^2 / 2)-zCDP, i.e.
    RDP ``order * epsilon^2 / 2`` (Bun & Steinke 2016, Proposition 3.3). FedLedger uses it for the
    label randomized response, which each company applies once per task.

    Raises
    ------
    PrivacyError
        If ``epsilon`` is negative or not finite, or ``order`` is not finite and > 1.
    """
    if not (epsilon >= 0 and math.isfinite(epsilon)):
        raise PrivacyError(f"a pure-DP epsilon must be finite and >= 0, got {epsilon!r}")
    if not (order > 1 and math.isfinite(order)):
        raise PrivacyError(f"orders must be finite and > 1, got {order!r}")
    return min(epsilon, order * epsilon**2 / 2)


def epsilon_from_rdp(rdp: Sequence[float], orders: Sequence[float], *, delta: float) -> tuple[float, float]:
    """The smallest epsilon over ``orders`` for the RDP curve ``rdp``, and the order achieving it.

    ``epsilon = rdp(a) + log((a - 1) / a) - (log(delta) + log(a)) / (a - 1)`` (Balle et al. 2020,
    Theorem 21), as in Opacus; never below 0.

    Raises
    ------
    PrivacyError
        If ``delta`` is not in (0, 1) or the two sequences differ in length or are empty.
    """
    if not 0 < delta < 1:
        raise PrivacyError(f"delta must be in (0, 1), got {delta!r}")
    if len(rdp) != len(orders) or not orders:
        raise PrivacyError(f"need one RDP value per order, got {len(rdp)} values for {len(orders)} orders")
    best, best_order = math.inf, orders[0]
    for r, a in zip(rdp, orders):
        eps = r - (math.log(delta) + math.log(a)) / (a - 1) + math.log((a - 1) / a)
        if eps < best:
            best, best_order = eps, a
    return max(best, 0.0), best_order


# The ledger books epsilon as an integer count of millionths ("micro"); see epsilon_micro.
_MICRO = 1_000_000


def epsilon_micro(epsilon: float) -> int:
    """``epsilon`` in millionths, rounded up: the integer the ledger books for it.

    Rounding up keeps the booked value an upper bound of the spent privacy. The chaincode's Go
    twin (chaincode/accountant) books ``ceil(epsilon * 1e6)`` the same way; the shared vectors
    in tests/vectors/accountant.json hold the two together.

    Raises
    ------
    PrivacyError
        If ``epsilon`` is negative, infinite or NaN (an unbounded epsilon cannot be booked).
    """
    if not (epsilon >= 0 and math.isfinite(epsilon)):
        raise PrivacyError(f"epsilon must be finite and >= 0 to be booked in millionths, got {epsilon!r}")
    return math.ceil(epsilon * _MICRO)


class RdpAccountant:
    """Tracks the privacy a task has spent, round by round, and plans rounds against its budget.

    One round is ``steps_per_round`` steps of the Gaussian mechanism sampled at ``sample_rate``;
    RDP adds up over steps, and the label noise (``label_epsilon``-DP randomized response, applied
    once per task) adds its RDP once, from the first round on. Company-level DP:
    ``sample_rate=1, steps_per_round=1``. Record-level DP: the DP-SGD batch rate and the local
    steps of a round.

    Parameters
    ----------
    noise_multiplier : float
        sigma, the noise standard deviation over the sensitivity (the clip norm); positive, finite.
    sample_rate : float
        q, each unit's chance to be in a step, in (0, 1].
    steps_per_round : int
        Steps of the mechanism in one round, >= 1.
    label_epsilon : float
        Epsilon of the label randomized response, >= 0 and finite (0: no label noise).
    orders : sequence of float
        Renyi orders, each finite and > 1; the default is Opacus's.

    Raises
    ------
    PrivacyError
        If a parameter is out of range (each message names it).
    """

    def __init__(self, *, noise_multiplier: float, sample_rate: float = 1.0, steps_per_round: int = 1,
                 label_epsilon: float = 0.0, orders: Sequence[float] = DEFAULT_ORDERS) -> None:
        if not (noise_multiplier > 0 and math.isfinite(noise_multiplier)):
            raise PrivacyError(f"noise_multiplier must be positive and finite, got {noise_multiplier!r}")
        if not 0 < sample_rate <= 1:
            raise PrivacyError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
        if isinstance(steps_per_round, bool) or not isinstance(steps_per_round, int) or steps_per_round < 1:
            raise PrivacyError(f"steps_per_round must be an integer >= 1, got {steps_per_round!r}")
        if not (label_epsilon >= 0 and math.isfinite(label_epsilon)):
            raise PrivacyError(f"label_epsilon must be finite and >= 0 (0: no label noise), got {label_epsilon!r}")
        if not orders:
            raise PrivacyError("orders must not be empty")
        self.noise_multiplier = noise_multiplier
        self.sample_rate = sample_rate
        self.steps_per_round = steps_per_round
        self.label_epsilon = label_epsilon
        self.orders = tuple(orders)
        self._per_step = tuple(gaussian_rdp(noise_multiplier=noise_multiplier, sample_rate=sample_rate, order=a)
                               for a in self.orders)
        self._label = tuple(pure_dp_rdp(epsilon=label_epsilon, order=a) for a in self.orders)
        self.rounds = 0

    def step(self, count: int = 1) -> None:
        """Record ``count`` more rounds."""
        if count < 0:
            raise PrivacyError(f"cannot take back rounds ({count})")
        self.rounds += count

    def rdp_after(self, rounds: int) -> tuple[float, ...]:
        """The RDP curve (one value per order) after ``rounds`` rounds, label noise included."""
        if rounds < 0:
            raise PrivacyError(f"rounds must be >= 0, got {rounds}")
        if rounds == 0:
            return tuple(0.0 for _ in self.orders)
        steps = rounds * self.steps_per_round
        return tuple(steps * r + label for r, label in zip(self._per_step, self._label))

    def epsilon_after(self, rounds: int, *, delta: float) -> float:
        """Epsilon after ``rounds`` rounds in total; 0.0 before the first (nothing released yet)."""
        if not 0 < delta < 1:
            raise PrivacyError(f"delta must be in (0, 1), got {delta!r}")
        if rounds == 0:
            # The conversion alone would report a small positive bound for nothing released.
            return 0.0
        eps, _ = epsilon_from_rdp(self.rdp_after(rounds), self.orders, delta=delta)
        return eps

    def epsilon(self, *, delta: float) -> float:
        """Epsilon spent by the rounds recorded so far."""
        return self.epsilon_after(self.rounds, delta=delta)

    def max_rounds(self, *, epsilon_budget: float, delta: float, limit: int = 1_000_000) -> int:
        """The most rounds (up to ``limit``) whose total epsilon stays within ``epsilon_budget``."""
        if self.epsilon_after(1, delta=delta) > epsilon_budget:
            return 0
        lo, hi = 1, 1
        while hi < limit and self.epsilon_after(hi * 2, delta=delta) <= epsilon_budget:
            hi *= 2
        hi = min(hi * 2, limit)
        while lo < hi:  # the largest rounds with epsilon_after(rounds) <= budget
            mid = (lo + hi + 1) // 2
            if self.epsilon_after(mid, delta=delta) <= epsilon_budget:
                lo = mid
            else:
                hi = mid - 1
        return lo


# calibrate_noise searches sigma on a grid of hundredths up to this.
_MAX_NOISE_MULTIPLIER = 100.0


def calibrate_noise(*, epsilon_budget: float, delta: float, rounds: int, sample_rate: float = 1.0,
                    steps_per_round: int = 1, label_epsilon: float = 0.0) -> float:
    """The smallest noise multiplier, a multiple of 0.01, whose ``rounds`` rounds fit the budget.

    Epsilon falls as sigma grows, so a bisection over the hundredths from 0.01 to 100 finds it; the
    other parameters are those of :class:`RdpAccountant`.

    Raises
    ------
    PrivacyError
        If a parameter is out of range, or no sigma up to 100 fits (the message says whether the
        label noise alone already costs more than the budget).
    """
    if not (epsilon_budget > 0 and math.isfinite(epsilon_budget)):
        raise PrivacyError(f"epsilon_budget must be positive and finite, got {epsilon_budget!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise PrivacyError(f"rounds must be an integer >= 1, got {rounds!r}")

    def fits(hundredths: int) -> bool:
        accountant = RdpAccountant(noise_multiplier=hundredths / 100, sample_rate=sample_rate,
                                   steps_per_round=steps_per_round, label_epsilon=label_epsilon)
        return accountant.epsilon_after(rounds, delta=delta) <= epsilon_budget

    low, high = 1, round(_MAX_NOISE_MULTIPLIER * 100)
    if not fits(high):
        if label_epsilon > 0:
            label_only, _ = epsilon_from_rdp([pure_dp_rdp(epsilon=label_epsilon, order=a) for a in DEFAULT_ORDERS],
                                             DEFAULT_ORDERS, delta=delta)
            if label_only > epsilon_budget:
                raise PrivacyError(
                    f"the label noise alone (label_epsilon {label_epsilon}) costs epsilon {label_only:.4g} at "
                    f"delta {delta}, more than the budget {epsilon_budget}: raise the budget or label_epsilon")
        raise PrivacyError(
            f"no noise multiplier up to {_MAX_NOISE_MULTIPLIER:g} fits {rounds} rounds of {steps_per_round} "
            f"step(s) at sample_rate {sample_rate} in epsilon {epsilon_budget} (delta {delta}): "
            f"lower the rounds or raise the budget")
    if fits(low):
        return low / 100
    while high - low > 1:  # invariant: low does not fit, high fits
        mid = (low + high) // 2
        if fits(mid):
            high = mid
        else:
            low = mid
    return high / 100
