"""Bring-up of the FedLedger consortium: one orchestrator over interchangeable runtimes (native, docker)."""

from fedledger.network.config import ConsortiumConfig, Node, Organization
from fedledger.network.layout import Layout, default_home
from fedledger.network.orchestrator import ContainerStatus, Network, NodeStatus, UpReport, open_network
from fedledger.network.runtime import RUNTIMES, Launch, Observation, Runtime, RuntimeFactory

__all__ = [
    "RUNTIMES",
    "ConsortiumConfig",
    "ContainerStatus",
    "Launch",
    "Layout",
    "Network",
    "Node",
    "NodeStatus",
    "Observation",
    "Organization",
    "Runtime",
    "RuntimeFactory",
    "UpReport",
    "default_home",
    "open_network",
]
