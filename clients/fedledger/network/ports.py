"""Free loopback ports for a whole consortium: what tests and benchmarks bring networks up on."""

from __future__ import annotations

from fedledger.errors import NetworkError
from fedledger.network.config import ConsortiumConfig
from fedledger.network.processes import port_in_use


def free_base_port(companies: int, start: int = 27000) -> int:
    """The first base port from ``start`` (stepping by 1000) whose whole port plan for ``companies``
    companies is free on 127.0.0.1."""
    for base in range(start, 60000, 1000):
        config = ConsortiumConfig.from_dict({"base-port": base, "company": [{"name": f"C{i}"} for i in range(companies)]})
        if not any(port_in_use(p) for n in config.nodes() for p in n.ports().values()):
            return base
    raise NetworkError(f"no free range of ports from {start} to 60000 on 127.0.0.1 for a network of {companies} "
                       "companies")
