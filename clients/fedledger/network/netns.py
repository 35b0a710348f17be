"""The netns runtime: every node a local process in a network namespace of its own, at its own address.

The hosts are a ``HostPlan`` (``fedledger.network.hosts``): a private /24 on a bridge, one namespace
per node, named by the node. The plan's namespaces must exist before the bring-up
(``separate_hosts``); this runtime only places each node in its own (``ip netns exec``), binding its
own address, which is also where this machine's tools and the other nodes reach it: so
certificates, the genesis block and the connection profile all name those addresses, and no node
is reached at 127.0.0.1. Everything else (binaries, logs, the state file, restart) is the native
runtime's. The plan is recorded in the state file, so a later command reopens the network with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedledger.errors import NetworkConfigError, NetworkError
from fedledger.network.config import ConsortiumConfig, Node
from fedledger.network.hosts import HostPlan, Placement, hosts_up, require_privileges
from fedledger.network.layout import Layout
from fedledger.network.native import NativeRuntime
from fedledger.network.runtime import RuntimeFactory

PLAN_KEY = "host_plan"


class NetnsRuntime(NativeRuntime):
    """Nodes as local processes, each in its own network namespace at its own address on a bridge."""

    name = "netns"

    def __init__(self, config: ConsortiumConfig, layout: Layout, *, bin_dir: Path,
                 recorded: Mapping[str, Any] | None = None, plan: HostPlan | None = None) -> None:
        super().__init__(config, layout, bin_dir=bin_dir, recorded=recorded)
        if plan is None and recorded is not None and PLAN_KEY in recorded:
            plan = HostPlan.from_json(recorded[PLAN_KEY])
        if plan is None:
            raise NetworkConfigError("the netns runtime needs a host plan (a subnet and a namespace per node); "
                                     "bring the network up with Network(config, home, "
                                     "runtime=NetnsRuntime.on(plan)) inside separate_hosts(plan)")
        self.config = config
        self.plan = plan

    @classmethod
    def on(cls, plan: HostPlan) -> RuntimeFactory:
        """A factory of this runtime placing the nodes as ``plan`` says (``Network(..., runtime=...)``)."""
        def factory(config: ConsortiumConfig, layout: Layout, *, bin_dir: Path,
                    recorded: Mapping[str, Any] | None = None) -> NetnsRuntime:
            return cls(config, layout, bin_dir=bin_dir, recorded=recorded, plan=plan)
        return factory

    def record(self) -> dict[str, object]:
        return {PLAN_KEY: self.plan.to_json()}

    def placement(self, node: Node) -> Placement:
        return self.plan.placement(node.name)

    def preflight(self) -> None:
        require_privileges()
        super().preflight()
        for node in self.config.nodes():
            self.placement(node)  # every node has a place in the plan
        missing = hosts_up(self.plan)
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise NetworkError(f"the host plan for {self.plan.subnet} is not on this machine (missing: {shown}); "
                               "make it first (fedledger.network.hosts.separate_hosts)")


if TYPE_CHECKING:
    _factory: RuntimeFactory = NetnsRuntime
