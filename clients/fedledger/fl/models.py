"""Models for federated tasks, and their trainable parameters as one flat float32 vector.

The models are small on purpose: every trainable parameter is clipped, quantized and
Paillier-encrypted each round, so the parameter count is the cost of a round. None uses batch
normalization, whose running statistics are not trainable parameters and which Opacus's per-example
gradients do not support.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from fedledger.errors import DataError


class SmallCNN(nn.Module):
    """Two 5x5 convolutions (each followed by ReLU and 2x2 max-pooling) and two fully connected layers.

    For MNIST (``in_channels=1, image_size=28``) with the default widths this has 20,522
    parameters: conv 1->8 (208), conv 8->16 (3,216), fc 256->64 (16,448), fc 64->10 (650).

    Parameters
    ----------
    in_channels, image_size:
        The input is ``N x in_channels x image_size x image_size``.
    num_classes:
        Outputs one logit per class.
    channels:
        The two convolutions' output channels.
    hidden:
        The width of the first fully connected layer.
    """

    def __init__(self, *, in_channels: int = 1, image_size: int = 28, num_classes: int = 10,
                 channels: tuple[int, int] = (8, 16), hidden: int = 64) -> None:
        super().__init__()
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for two 5x5 convolutions and two poolings")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels[0], kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels[0], channels[1], kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(channels[1] * side * side, hidden), nn.ReLU(), nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.features(x))
        return out


class LogisticRegression(nn.Module):
    """Multinomial logistic regression: one linear layer whose logits go to a softmax cross-entropy.

    For breast cancer (30 features, 2 classes) it has 62 parameters. Two logits rather than one
    keep every task on the same loss (cross-entropy over class logits).
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x.flatten(start_dim=1))
        return out


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The trainable parameters by name, in ``state_dict`` order: the layout of ``get_flat``'s vector."""
    # The state_dict's order is fixed by the module's definition, the same in every company's
    # process, so position i of the vector means the same weight everywhere.
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    return [(name, params[name]) for name in model.state_dict(keep_vars=True) if name in params]


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters: the length of ``get_flat(model)``."""
    return sum(p.numel() for _, p in trainable_parameters(model))


def get_flat(model: nn.Module) -> npt.NDArray[np.float32]:
    """The model's trainable parameters as one float32 vector, in ``state_dict`` order.

    Buffers (running statistics, masks) and frozen parameters are not included: they are not
    trained, so they are not part of an update.
    """
    params = trainable_parameters(model)
    if not params:
        return np.zeros(0, dtype=np.float32)
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1).to(torch.float32).cpu() for _, p in params])
    return flat.numpy().copy()


def set_flat(model: nn.Module, vector: npt.ArrayLike) -> None:
    """Overwrite the model's trainable parameters, in place, from a vector laid out as ``get_flat`` makes it.

    Raises
    ------
    DataError
        The vector is not one-dimensional, its length is not the model's trainable parameter count
        (the model or the task differs from the one the vector was made for), or it holds NaN or
        infinity.
    """
    flat = np.asarray(vector)
    expected = count_parameters(model)
    if flat.ndim != 1:
        raise DataError(f"a parameter vector must be one-dimensional, got shape {flat.shape}")
    if flat.shape[0] != expected:
        raise DataError(f"parameter vector has {flat.shape[0]} values but {type(model).__name__} has {expected} "
                        f"trainable parameters; was it made for another model or task?")
    if not np.all(np.isfinite(flat)):
        raise DataError("parameter vector holds NaN or infinite values; refusing to load it into the model")
    source = torch.from_numpy(np.ascontiguousarray(flat, dtype=np.float32))
    offset = 0
    with torch.no_grad():
        for _, p in trainable_parameters(model):
            n = p.numel()
            p.copy_(source[offset:offset + n].reshape(p.shape).to(dtype=p.dtype, device=p.device))
            offset += n
