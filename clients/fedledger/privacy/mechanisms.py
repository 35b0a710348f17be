"""Privacy mechanisms as pure functions: L2 clipping, Gaussian noise, randomized response.

Noise comes from the operating system's CSPRNG (uniforms from ``os.urandom`` through Box-Muller),
not from a seeded PRNG whose state could be recovered. Sampling Gaussians in floating point is
still open to Mironov's (2012) least-significant-bit attack. FedLedger's updates are quantized
by the Paillier packer before they leave the client, which removes most of that signal, but a
discrete Gaussian would close it fully.
"""

from __future__ import annotations

import math
import os

import numpy as np
import numpy.typing as npt

from fedledger.errors import PrivacyError


def clip_by_l2_norm(update: npt.ArrayLike, *, clip_norm: float) -> tuple[npt.NDArray[np.float64], float]:
    """Scale ``update`` down so its L2 norm is at most ``clip_norm``; return it and its old norm."""
    if not (math.isfinite(clip_norm) and clip_norm > 0):
        raise PrivacyError(f"clip_norm must be a positive finite number, got {clip_norm!r}")
    v = np.asarray(update, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise PrivacyError("the update holds NaN or infinite values")
    norm = float(np.linalg.norm(v))
    if norm <= clip_norm:
        return v.copy(), norm
    return v * (clip_norm / norm), norm


def _secure_uniform(count: int) -> npt.NDArray[np.float64]:
    """``count`` uniforms in (0, 1) with 53 random bits each, from the OS CSPRNG."""
    raw = np.frombuffer(os.urandom(8 * count), dtype=np.uint64) >> np.uint64(11)
    return (raw.astype(np.float64) + 0.5) / float(1 << 53)


def gaussian_noise(shape: int | tuple[int, ...], *, std: float) -> npt.NDArray[np.float64]:
    """Gaussian noise N(0, std^2) of the given shape, from the OS CSPRNG (Box-Muller)."""
    if not (math.isfinite(std) and std >= 0):
        raise PrivacyError(f"std must be a non-negative finite number, got {std!r}")
    size = int(np.prod(shape))
    pairs = (size + 1) // 2
    u1, u2 = _secure_uniform(pairs), _secure_uniform(pairs)
    radius = np.sqrt(-2.0 * np.log(u1))
    z = np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])[:size]
    return (z * std).reshape(shape)


def distributed_noise_std(*, noise_multiplier: float, clip_norm: float, participants: int) -> float:
    """Each of K participants' noise std, so the sum of their shares is N(0, (sigma S)^2).

    Distributed DP: every company adds N(0, sigma^2 S^2 / K); only the sum carries the full noise,
    and nobody (the aggregator included) ever sees an un-noised sum.
    """
    if participants < 1:
        raise PrivacyError(f"participants must be at least 1, got {participants}")
    if not (noise_multiplier >= 0 and clip_norm > 0):
        raise PrivacyError("noise_multiplier must be >= 0 and clip_norm > 0")
    return noise_multiplier * clip_norm / math.sqrt(participants)


def randomized_response(labels: npt.ArrayLike, *, num_classes: int, epsilon: float) -> npt.NDArray[np.int64]:
    """k-ary randomized response on labels (the label noise of 000_b005f3d8904386cc.txt).

    Each label is kept with probability ``e^eps / (e^eps + k - 1)`` and otherwise replaced by one
    of the other ``k - 1`` classes uniformly: ``epsilon``-local DP for each label.
    """
    if num_classes < 2:
        raise PrivacyError(f"num_classes must be at least 2, got {num_classes}")
    if not epsilon > 0:
        raise PrivacyError(f"epsilon must be positive, got {epsilon!r}")
    y = np.asarray(labels, dtype=np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise PrivacyError(f"labels must lie in [0, {num_classes})")
    keep_probability = 1.0 if math.isinf(epsilon) else math.exp(epsilon) / (math.exp(epsilon) + num_classes - 1)
    keep = _secure_uniform(y.size).reshape(y.shape) < keep_probability
    # Another class, uniformly: shift by 1..k-1.
    shift = 1 + np.minimum((_secure_uniform(y.size) * (num_classes - 1)).astype(np.int64), num_classes - 2)
    return np.where(keep, y, (y + shift.reshape(y.shape)) % num_classes)
