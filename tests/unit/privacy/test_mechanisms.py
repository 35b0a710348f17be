"""Unit tests of the privacy mechanisms: clipping, CSPRNG Gaussian noise, randomized response."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedledger.errors import PrivacyError
from fedledger.privacy.mechanisms import clip_by_l2_norm, distributed_noise_std, gaussian_noise, randomized_response

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@given(update=arrays(np.float64, st.integers(1, 300), elements=finite), clip=st.floats(1e-3, 1e3))
def test_clipped_norm_is_at_most_the_clip_and_direction_is_kept(update: np.ndarray, clip: float) -> None:
    clipped, norm = clip_by_l2_norm(update, clip_norm=clip)

    assert np.linalg.norm(clipped) <= clip * (1 + 1e-12)
    assert norm == pytest.approx(float(np.linalg.norm(update)))
    if norm <= clip:
        assert np.array_equal(clipped, update)
    else:
        assert np.allclose(clipped * (norm / clip), update)


def test_clipping_refuses_bad_input() -> None:
    with pytest.raises(PrivacyError, match="clip_norm"):
        clip_by_l2_norm([1.0], clip_norm=0.0)
    with pytest.raises(PrivacyError, match="NaN"):
        clip_by_l2_norm([1.0, math.nan], clip_norm=1.0)


def test_gaussian_noise_has_the_requested_moments_and_shape() -> None:
    noise = gaussian_noise((400, 500), std=2.5)

    assert noise.shape == (400, 500)
    # 200,000 samples: the mean is within ~5 standard errors of 0, the std within 1%.
    assert abs(noise.mean()) < 5 * 2.5 / math.sqrt(noise.size)
    assert noise.std() == pytest.approx(2.5, rel=0.01)
    assert not np.array_equal(gaussian_noise(10, std=1.0), gaussian_noise(10, std=1.0))
    assert np.array_equal(gaussian_noise(3, std=0.0), np.zeros(3))


def test_distributed_shares_sum_to_the_central_noise() -> None:
    k, z, s = 10, 1.1, 4.0
    std = distributed_noise_std(noise_multiplier=z, clip_norm=s, participants=k)

    total = sum(gaussian_noise(50_000, std=std) for _ in range(k))

    assert std == pytest.approx(z * s / math.sqrt(k))
    assert total.std() == pytest.approx(z * s, rel=0.02)
    with pytest.raises(PrivacyError, match="participants"):
        distributed_noise_std(noise_multiplier=z, clip_norm=s, participants=0)


def test_randomized_response_keeps_labels_at_the_stated_rate() -> None:
    labels = np.arange(100_000) % 10
    epsilon = 1.0

    noisy = randomized_response(labels, num_classes=10, epsilon=epsilon)

    keep = math.exp(epsilon) / (math.exp(epsilon) + 9)
    assert np.mean(noisy == labels) == pytest.approx(keep, abs=0.01)
    assert noisy.min() >= 0 and noisy.max() <= 9
    # A changed label is spread over the other classes, never the same class.
    changed = noisy[noisy != labels] - labels[noisy != labels]
    assert set(np.unique(changed % 10)) == set(range(1, 10))
    assert np.array_equal(randomized_response(labels, num_classes=10, epsilon=math.inf), labels)


@pytest.mark.parametrize(
    "labels, classes, epsilon, message",
    [([0, 1], 1, 1.0, "num_classes"), ([0, 1], 2, 0.0, "epsilon"), ([0, 2], 2, 1.0, r"\[0, 2\)")],
)
def test_randomized_response_refuses_bad_parameters(labels: list[int], classes: int, epsilon: float, message: str) -> None:
    with pytest.raises(PrivacyError, match=message):
        randomized_response(labels, num_classes=classes, epsilon=epsilon)
