"""Record-level DP-SGD on one company's data: per-example clipping, Poisson sampling, local steps.

Two ways a company protects each of its records (the genesis' ``dp.unit = record``):

- **distributed** (``clipped_gradient_sum``): one DP-SGD step a round on the union of the
  companies' data. Each company Poisson-samples its records with the task's rate q, clips every
  example's gradient to L2 norm S and sums them; ``fl.rounds.contribute`` then adds its share of the
  Gaussian noise and encrypts. Only the decrypted sum over companies carries the full noise, so the
  round is the subsampled Gaussian mechanism on the union, exactly as a trusted curator running
  DP-SGD would release it, without anyone seeing an un-noised sum;
- **local** (``local_dp_sgd``): the company runs the round's ``steps`` of DP-SGD itself with Opacus
  (its own Poisson sampling at rate q, per-example clipping to S, full noise sigma*S on every
  step) and sends the model update, which is then private on its own.

Poisson sampling must be secret from everyone else for the amplification the accountant counts:
the sampler here is seeded from the operating system's CSPRNG unless a test passes a generator.
Torch code only; no Flower, no Fabric.
"""

from __future__ import annotations

import math
import secrets
import time
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from fedledger.errors import PrivacyError
from fedledger.fl.models import trainable_parameters
from fedledger.fl.task import to_tensors

_CHUNK = 256


@dataclass(frozen=True)
class DpSgd:
    """One company's DP-SGD settings for a round: noise multiplier sigma, clip S, sampling rate q, steps."""

    noise_multiplier: float
    clip_norm: float
    sample_rate: float
    steps: int = 1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise PrivacyError(f"noise multiplier must be a non-negative number, got {self.noise_multiplier!r}")
        if not (math.isfinite(self.clip_norm) and self.clip_norm > 0):
            raise PrivacyError(f"clip norm must be a positive number, got {self.clip_norm!r}")
        if not 0 < self.sample_rate <= 1:
            raise PrivacyError(f"sample rate must be in (0, 1], got {self.sample_rate!r}")
        if self.steps < 1:
            raise PrivacyError(f"steps must be at least 1, got {self.steps}")


@dataclass(frozen=True)
class GradientSum:
    """The sum of one Poisson batch's per-example gradients, each clipped to S (float64, flat)."""

    vector: npt.NDArray[np.float64]
    batch: int
    clipped: int
    seconds: float


def secret_rng() -> np.random.Generator:
    """A generator seeded from the OS CSPRNG: the company's sampling is secret from the other parties."""
    return np.random.default_rng(secrets.randbits(128))


def poisson_sample(count: int, rate: float, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Each of ``count`` records independently with probability ``rate`` (the batch may be empty)."""
    return np.flatnonzero(rng.random(count) < rate).astype(np.int64)


def clipped_gradient_sum(model: nn.Module, x: npt.ArrayLike, y: npt.ArrayLike, *, sample_rate: float,
                         clip_norm: float, rng: np.random.Generator | None = None) -> GradientSum:
    """Poisson-sample the records at ``sample_rate``, clip each example's loss gradient to ``clip_norm``, sum.

    The gradient is of the cross-entropy at the model's current weights, over its trainable
    parameters in ``get_flat`` order. An empty batch gives a zero vector (the round's noise share
    is still added by the caller: the mechanism must not reveal that the batch was empty).
    """
    from torch.func import functional_call, grad, vmap

    settings = DpSgd(0.0, clip_norm, sample_rate)
    xt, yt = to_tensors(x, y)
    rng = rng if rng is not None else secret_rng()
    start = time.perf_counter()
    batch = poisson_sample(int(xt.shape[0]), settings.sample_rate, rng)
    # In get_flat's order, so the sum lines up with the model's flat vector.
    params = {name: p.detach() for name, p in trainable_parameters(model)}
    total = torch.zeros(sum(p.numel() for p in params.values()), dtype=torch.float64)
    clipped = 0
    criterion = nn.CrossEntropyLoss()

    def example_loss(weights: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, weights, (xb.unsqueeze(0),))
        loss: torch.Tensor = criterion(logits, yb.unsqueeze(0))
        return loss

    per_example = vmap(grad(example_loss), in_dims=(None, 0, 0))
    was_training = model.training
    model.eval()  # no dropout or batch statistics: the models have neither, and vmap needs none
    try:
        for lo in range(0, len(batch), _CHUNK):
            index = torch.from_numpy(batch[lo:lo + _CHUNK])
            grads = per_example(params, xt[index], yt[index])
            flat = torch.cat([grads[n].reshape(len(index), -1) for n in params], dim=1).to(torch.float64)
            norms = flat.norm(dim=1, keepdim=True)
            scale = torch.clamp(clip_norm / (norms + 1e-12), max=1.0)
            clipped += int((norms.squeeze(1) > clip_norm).sum())
            total += (flat * scale).sum(dim=0)
    finally:
        model.train(was_training)
    return GradientSum(total.numpy(), int(len(batch)), clipped, time.perf_counter() - start)


class OpacusDpSgd:
    """DP-SGD with Opacus over one dataset, a step at a time, its state kept between steps.

    Opacus's ``GradSampleModule`` computes per-example gradients, its ``DPOptimizer`` (over SGD
    with ``momentum``) clips each to S and adds N(0, (sigma S)^2) to every batch's sum, divided by
    the expected batch q N, and its ``DPDataLoader`` Poisson-samples at exactly ``settings.sample_rate``
    (``settings.steps`` is not used here: the caller steps). Sampling and noise generators are
    seeded by ``seed``, or from the OS CSPRNG without it. ``close`` hands the model back without
    Opacus's hooks.
    """

    def __init__(self, model: nn.Module, x: npt.ArrayLike, y: npt.ArrayLike, *, settings: DpSgd, lr: float,
                 momentum: float = 0.0, seed: int | None = None) -> None:
        from opacus import GradSampleModule
        from opacus.data_loader import DPDataLoader
        from opacus.optimizers import DPOptimizer
        from torch.utils.data import TensorDataset

        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        xt, yt = to_tensors(x, y)
        seed = seed if seed is not None else secrets.randbits(63)
        self.loader = DPDataLoader(TensorDataset(xt, yt), sample_rate=settings.sample_rate,
                                   generator=torch.Generator().manual_seed(seed))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            self.module = GradSampleModule(model)
        self.optimizer = DPOptimizer(torch.optim.SGD(self.module.parameters(), lr=lr, momentum=momentum),
                                     noise_multiplier=settings.noise_multiplier, max_grad_norm=settings.clip_norm,
                                     expected_batch_size=max(1, round(settings.sample_rate * len(yt))),
                                     generator=torch.Generator().manual_seed(seed ^ 0x5EED))
        self.criterion = nn.CrossEntropyLoss()
        self._batches = iter(self.loader)

    def step(self) -> int:
        """One DP-SGD step on the next Poisson batch (the loader restarts when a pass ends); its size."""
        try:
            xb, yb = next(self._batches)
        except StopIteration:  # a pass of the loader is 1/q batches; take the next pass
            self._batches = iter(self.loader)
            xb, yb = next(self._batches)
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            # The first layer's input never requires a gradient; torch warns about Opacus's backward hooks.
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            if len(yb):
                self.criterion(self.module(xb), yb).backward()
            # An empty Poisson batch still takes its noise-only step, as the accountant assumes.
            self.optimizer.step()
        return int(len(yb))

    def close(self) -> None:
        """Leave the model as it was given: no per-example hooks, no grad_sample fields."""
        self.module.to_standard_module()


@dataclass(frozen=True)
class LocalDpSgdResult:
    """What ``local_dp_sgd`` did: steps taken, the mean batch, seconds, and Opacus's epsilon."""

    steps: int
    mean_batch: float
    seconds: float
    opacus_epsilon: float


def local_dp_sgd(model: nn.Module, x: npt.ArrayLike, y: npt.ArrayLike, *, settings: DpSgd, lr: float,
                 delta: float, rounds_so_far: int = 0, seed: int | None = None) -> LocalDpSgdResult:
    """Run ``settings.steps`` steps of DP-SGD with Opacus (``OpacusDpSgd``) on the company's records, in place.

    The returned epsilon is Opacus's RDP accountant over this company's steps in all rounds so far
    plus this one (``rounds_so_far``), the figure the company reports next to the one the ledger
    books. ``seed`` fixes sampling and noise (tests); without it both are seeded from the OS CSPRNG.
    """
    from opacus.accountants import RDPAccountant

    start = time.perf_counter()
    trainer = OpacusDpSgd(model, x, y, settings=settings, lr=lr, seed=seed)
    try:
        seen = sum(trainer.step() for _ in range(settings.steps))
    finally:
        trainer.close()
    accountant = RDPAccountant()
    accountant.history = [(settings.noise_multiplier, settings.sample_rate, settings.steps * (rounds_so_far + 1))]
    epsilon = float(accountant.get_epsilon(delta)) if settings.noise_multiplier > 0 else math.inf
    return LocalDpSgdResult(settings.steps, seen / settings.steps, time.perf_counter() - start, epsilon)
