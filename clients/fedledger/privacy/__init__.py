"""Differential privacy for FedLedger: pure mechanisms and a stateful RDP accountant."""

from fedledger.privacy.accountant import DEFAULT_ORDERS, RdpAccountant, epsilon_from_rdp, gaussian_rdp
from fedledger.privacy.mechanisms import (
    clip_by_l2_norm,
    distributed_noise_std,
    gaussian_noise,
    randomized_response,
)

__all__ = [
    "DEFAULT_ORDERS",
    "RdpAccountant",
    "clip_by_l2_norm",
    "distributed_noise_std",
    "epsilon_from_rdp",
    "gaussian_noise",
    "gaussian_rdp",
    "randomized_response",
]
