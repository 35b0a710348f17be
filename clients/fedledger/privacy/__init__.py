"""Differential privacy for FedLedger: pure mechanisms and a stateful RDP accountant."""

from fedledger.privacy.accountant import (
    DEFAULT_ORDERS,
    RdpAccountant,
    calibrate_noise,
    epsilon_from_rdp,
    epsilon_micro,
    gaussian_rdp,
    pure_dp_rdp,
)
from fedledger.privacy.mechanisms import (
    clip_by_l2_norm,
    distributed_noise_std,
    gaussian_noise,
    randomized_response,
)

__all__ = [
    "DEFAULT_ORDERS",
    "RdpAccountant",
    "calibrate_noise",
    "clip_by_l2_norm",
    "distributed_noise_std",
    "epsilon_from_rdp",
    "epsilon_micro",
    "gaussian_noise",
    "gaussian_rdp",
    "pure_dp_rdp",
    "randomized_response",
]
