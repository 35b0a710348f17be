"""Bring-up of the FedLedger consortium: configuration, crypto material, channel, chaincode, nodes."""

from fedledger.network.config import ConsortiumConfig, Node, Organization
from fedledger.network.layout import Layout, default_home
from fedledger.network.native import NativeNetwork, NodeStatus, UpReport

__all__ = [
    "ConsortiumConfig",
    "Layout",
    "NativeNetwork",
    "Node",
    "NodeStatus",
    "Organization",
    "UpReport",
    "default_home",
]
