"""Bring-up of the FedLedger consortium: one orchestrator over interchangeable runtimes (native, docker, netns)."""

from fedledger.network.config import ConsortiumConfig, Node, Organization
from fedledger.network.hosts import LOCAL, HostPlan, Placement, separate_hosts
from fedledger.network.layout import Layout, default_home
from fedledger.network.orchestrator import ContainerStatus, Network, NodeStatus, UpReport, open_network
from fedledger.network.runtime import RUNTIMES, Launch, Observation, Runtime, RuntimeFactory

__all__ = [
    "LOCAL",
    "RUNTIMES",
    "ConsortiumConfig",
    "ContainerStatus",
    "HostPlan",
    "Launch",
    "Layout",
    "Network",
    "Node",
    "NodeStatus",
    "Observation",
    "Organization",
    "Placement",
    "Runtime",
    "RuntimeFactory",
    "UpReport",
    "default_home",
    "open_network",
    "separate_hosts",
]
