"""Privacy accounting: Renyi DP of the (subsampled) Gaussian mechanism, converted to (eps, delta).

The maths (pure functions) follows Mironov, Talwar & Zhang, "Renyi Differential Privacy of the
Sampled Gaussian Mechanism" (2019), at integer orders, where the bound is exact. The conversion to
(epsilon, delta) is the tighter one of Balle et al. (2020) and Canonne, Kamath & Steinke (2020),
as Opacus uses. Integer orders only: slightly looser than also trying fractional orders, never
optimistic.

In FedLedger one round is one step. A company's whole (clipped) update is the unit of privacy,
the noise is ``noise_multiplier * clip_norm`` on the sum, and ``sample_rate`` is the fraction of
companies taking part (1.0 when all do).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fedledger.errors import PrivacyError

DEFAULT_ORDERS: tuple[int, ...] = tuple(range(2, 65)) + (128, 256, 512)


def _log_add(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))


def gaussian_rdp(*, noise_multiplier: float, sample_rate: float, order: int) -> float:
    """RDP at integer ``order`` of one step of the sampled Gaussian mechanism.

    ``log A / (order - 1)`` with ``A = sum_k C(order, k) q^k (1-q)^(order-k) exp((k^2 - k) / (2 sigma^2))``.
    """
    if order < 2 or int(order) != order:
        raise PrivacyError(f"orders must be integers >= 2, got {order!r}")
    if not noise_multiplier > 0:
        raise PrivacyError(f"noise_multiplier must be positive, got {noise_multiplier!r}")
    if not 0 <= sample_rate <= 1:
        raise PrivacyError(f"sample_rate must be in [0, 1], got {sample_rate!r}")
    if sample_rate == 0:
        return 0.0
    sigma2 = noise_multiplier**2
    if sample_rate == 1:
        return order / (2 * sigma2)
    log_q, log_1q = math.log(sample_rate), math.log1p(-sample_rate)
    log_a = -math.inf
    for k in range(order + 1):
        log_binom = math.lgamma(order + 1) - math.lgamma(k + 1) - math.lgamma(order - k + 1)
        log_a = _log_add(log_a, log_binom + k * log_q + (order - k) * log_1q + (k * k - k) / (2 * sigma2))
    return log_a / (order - 1)


def epsilon_from_rdp(rdp: Sequence[float], orders: Sequence[int], *, delta: float) -> tuple[float, int]:
    """The smallest epsilon over ``orders`` for the given RDP curve, and the order achieving it."""
    if not 0 < delta < 1:
        raise PrivacyError(f"delta must be in (0, 1), got {delta!r}")
    best, best_order = math.inf, orders[0]
    for r, a in zip(rdp, orders):
        eps = r - (math.log(delta) + math.log(a)) / (a - 1) + math.log((a - 1) / a)
        if eps < best:
            best, best_order = eps, a
    return max(best, 0.0), best_order


class RdpAccountant:
    """Tracks the privacy spent by rounds of a task and plans rounds against its budget."""

    def __init__(self, *, noise_multiplier: float, sample_rate: float = 1.0,
                 orders: Sequence[int] = DEFAULT_ORDERS) -> None:
        self.noise_multiplier = noise_multiplier
        self.sample_rate = sample_rate
        self.orders = tuple(orders)
        self._per_step = [gaussian_rdp(noise_multiplier=noise_multiplier, sample_rate=sample_rate, order=a)
                          for a in self.orders]
        self.steps = 0

    def step(self, count: int = 1) -> None:
        """Record ``count`` more rounds."""
        if count < 0:
            raise PrivacyError(f"cannot take back rounds ({count})")
        self.steps += count

    def epsilon_after(self, steps: int, *, delta: float) -> float:
        """Epsilon after ``steps`` rounds in total (RDP composes additively across rounds)."""
        if not 0 < delta < 1:
            raise PrivacyError(f"delta must be in (0, 1), got {delta!r}")
        if steps == 0:
            # Nothing released, nothing spent (the conversion alone would report a small bound).
            return 0.0
        eps, _ = epsilon_from_rdp([steps * r for r in self._per_step], self.orders, delta=delta)
        return eps

    def epsilon(self, *, delta: float) -> float:
        """Epsilon spent so far."""
        return self.epsilon_after(self.steps, delta=delta)

    def max_steps(self, *, epsilon_budget: float, delta: float, limit: int = 1_000_000) -> int:
        """The most rounds whose total epsilon stays within ``epsilon_budget``."""
        if self.epsilon_after(1, delta=delta) > epsilon_budget:
            return 0
        lo, hi = 1, 1
        while hi < limit and self.epsilon_after(hi * 2, delta=delta) <= epsilon_budget:
            hi *= 2
        hi = min(hi * 2, limit)
        while lo < hi:  # largest steps with epsilon_after(steps) <= budget
            mid = (lo + hi + 1) // 2
            if self.epsilon_after(mid, delta=delta) <= epsilon_budget:
                lo = mid
            else:
                hi = mid - 1
        return lo
