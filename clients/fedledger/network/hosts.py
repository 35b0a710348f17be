"""Separate hosts on one machine: a bridge, a private /24, and a network namespace per host.

A ``HostPlan`` is the whole picture: the subnet, the bridge, this machine's own address on it (where
the operator's tools reach the nodes from) and, for each host (a Fabric node or a party), its
namespace and address. ``separate_hosts`` makes them and removes them again. A ``Placement`` is what
one host's processes need to know of it: the namespace they run in and the address they bind; the
netns runtime places Fabric nodes with it, and the parties' commands and Flower processes are
placed with it too (``fedledger.node``). On one machine without namespaces everything is
``LOCAL``: this machine's own network, at 127.0.0.1.

No namespace gets a route beyond the subnet, and the only firewall change is one rule letting the
bridge forward between its own ports (once Docker has run, ``FORWARD`` drops bridged packets), so
no traffic leaves the hosts of the plan.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fedledger.errors import NetworkConfigError, NetworkError
from fedledger.network.processes import in_namespace

NETNS_DIR = Path("/run/netns")
_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,7}$")


@dataclass(frozen=True)
class Placement:
    """Where one host's processes run: a network namespace (None: this machine's own) and the
    address they bind and are reached at."""

    address: str = "127.0.0.1"
    namespace: str | None = None

    @property
    def local(self) -> bool:
        """Whether this is this machine's own network, where ports can be checked from here."""
        return self.namespace is None

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as run there: under ``ip netns exec`` in a namespace, unchanged on this machine."""
        return in_namespace(self.namespace, argv)


LOCAL = Placement()


@dataclass(frozen=True)
class HostPlan:
    """A private /24 on a bridge of this machine, and one namespace with its own address per host.

    This machine is ``.1`` on the bridge; the hosts follow in the order given, from ``.2``. Every
    name made on the machine starts with ``prefix``: the bridge ``<prefix>br``, the namespaces
    ``<prefix>-<host>``, the veth pairs ``<prefix><n>``/``<prefix><n>b`` (Linux allows 15 characters).
    """

    subnet: str
    hosts: tuple[str, ...]
    prefix: str = "fl"

    def __post_init__(self) -> None:
        try:
            network = ipaddress.IPv4Network(self.subnet)
        except ValueError as err:
            raise NetworkConfigError(f"subnet {self.subnet!r} is not an IPv4 network: {err}") from None
        if network.prefixlen != 24 or not network.is_private or network.is_loopback:
            raise NetworkConfigError(f"subnet {self.subnet} must be a private /24 (e.g. 10.213.7.0/24), "
                                     "not loopback: every host gets its own address in it")
        if not _PREFIX.match(self.prefix):
            raise NetworkConfigError(f"prefix {self.prefix!r} must be 1-8 lower-case letters and digits, "
                                     "starting with a letter (interface names are at most 15 characters)")
        if len(set(self.hosts)) != len(self.hosts) or not 1 <= len(self.hosts) <= 253:
            raise NetworkConfigError(f"a host plan needs 1 to 253 distinct hosts; got {len(self.hosts)}, "
                                     f"{len(self.hosts) - len(set(self.hosts))} repeated")
        bad = [h for h in self.hosts if not h or "/" in h or h in (".", "..")]
        if bad:
            raise NetworkConfigError(f"host names {bad} cannot name a network namespace")

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def host_address(self) -> str:
        """This machine's address on the bridge: where its tools (the operator's) are seen from."""
        return str(self.network[1])

    def _index(self, host: str) -> int:
        try:
            return self.hosts.index(host)
        except ValueError:
            raise NetworkConfigError(f"{host} has no place in the host plan for {self.subnet} "
                                     f"(its hosts: {', '.join(self.hosts)})") from None

    def address(self, host: str) -> str:
        return str(self.network[2 + self._index(host)])

    def namespace(self, host: str) -> str:
        self._index(host)
        return f"{self.prefix}-{host}"

    def veth(self, host: str) -> tuple[str, str]:
        """The veth pair of ``host``: the end in its namespace, the end on the bridge."""
        n = self._index(host)
        return f"{self.prefix}{n}", f"{self.prefix}{n}b"

    def placement(self, host: str) -> Placement:
        return Placement(self.address(host), self.namespace(host))

    def to_json(self) -> dict[str, object]:
        return {"subnet": self.subnet, "hosts": list(self.hosts), "prefix": self.prefix}

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> HostPlan:
        hosts = raw["hosts"]
        assert isinstance(hosts, list)
        return cls(str(raw["subnet"]), tuple(str(h) for h in hosts), str(raw["prefix"]))


# ---------------------------------------------------------------- the machine's side


def require_privileges() -> None:
    """Refuse, naming the fix, what would stop ``separate_hosts``: not root, no ``ip``, no ``iptables``."""
    missing = [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]
    if missing:
        raise NetworkError(f"{' and '.join(missing)} not installed; separate hosts need them "
                           "(Debian: apt-get install iproute2 iptables)")
    if os.geteuid() != 0:
        raise NetworkError("separate hosts (network namespaces, a bridge, a firewall rule) need root; "
                           "run as root")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def _must(*argv: str) -> None:
    done = _run(*argv)
    if done.returncode != 0:
        raise NetworkError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")


def _forward_rule(plan: HostPlan) -> tuple[str, ...]:
    """The FORWARD rule that lets the bridge forward between its own ports, and nowhere else."""
    return ("FORWARD", "-i", plan.bridge, "-o", plan.bridge, "-j", "ACCEPT")


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def namespace_pids(namespace: str) -> list[int]:
    """The processes running in ``namespace``."""
    done = _run("ip", "netns", "pids", namespace)
    return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []


def hosts_up(plan: HostPlan) -> list[str]:
    """What of ``plan`` is missing on this machine (empty when its bridge and namespaces are all there)."""
    missing = [f"namespace {plan.namespace(h)}" for h in plan.hosts if not (NETNS_DIR / plan.namespace(h)).exists()]
    if not _link_exists(plan.bridge):
        missing.insert(0, f"bridge {plan.bridge}")
    return missing


@contextmanager
def separate_hosts(plan: HostPlan) -> Iterator[HostPlan]:
    """Make ``plan``'s bridge, namespaces, addresses and forwarding rule; remove all of it on exit.

    Refuses (before making anything) a bridge or namespace of the plan's names that exists already:
    it is someone else's. On exit, even after an error, whatever still runs in the namespaces is
    killed, then the rule, the namespaces (their veth pairs go with them) and the bridge are removed.
    Raises NetworkError if any of them is left.
    """
    require_privileges()
    taken = [name for name in (plan.bridge, *(plan.veth(h)[1] for h in plan.hosts)) if _link_exists(name)]
    taken += [plan.namespace(h) for h in plan.hosts if (NETNS_DIR / plan.namespace(h)).exists()]
    if taken:
        raise NetworkError(f"{', '.join(taken)} exist already; choose another prefix than {plan.prefix!r}, "
                           "or remove them if a previous run left them")
    try:
        _build(plan)
        yield plan
    finally:
        _tear_down(plan)


def _build(plan: HostPlan) -> None:
    bits = plan.network.prefixlen
    _must("ip", "link", "add", plan.bridge, "type", "bridge")
    _must("ip", "addr", "add", f"{plan.host_address}/{bits}", "dev", plan.bridge)
    _must("ip", "link", "set", plan.bridge, "up")
    for host in plan.hosts:
        namespace, (inner, outer) = plan.namespace(host), plan.veth(host)
        _must("ip", "netns", "add", namespace)
        _must("ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", namespace)
        _must("ip", "link", "set", outer, "master", plan.bridge, "up")
        # Only the subnet's link route: no default route, so nothing can be sent beyond the bridge.
        _must("ip", "-n", namespace, "addr", "add", f"{plan.address(host)}/{bits}", "dev", inner)
        _must("ip", "-n", namespace, "link", "set", inner, "up")
        _must("ip", "-n", namespace, "link", "set", "lo", "up")
    _must("iptables", "-w", "-I", *_forward_rule(plan))


def _tear_down(plan: HostPlan) -> None:
    left: list[str] = []
    namespaces = [plan.namespace(h) for h in plan.hosts if (NETNS_DIR / plan.namespace(h)).exists()]
    # Their owners stop the nodes and parties; what outlives them would keep a namespace alive unnamed.
    stragglers = [pid for namespace in namespaces for pid in namespace_pids(namespace)]
    for pid in stragglers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while stragglers and time.monotonic() < deadline:
        time.sleep(0.05)
        # A killed child of this process stays a zombie until reaped, but is in no namespace any more.
        stragglers = [pid for namespace in namespaces for pid in namespace_pids(namespace)]
    left += [f"process {pid}" for pid in stragglers]
    rule = _forward_rule(plan)
    while _run("iptables", "-w", "-C", *rule).returncode == 0:
        if _run("iptables", "-w", "-D", *rule).returncode != 0:
            left.append(f"iptables rule `{' '.join(rule)}`")
            break

    def remove(what: str, exists: Callable[[], bool], *argv: str) -> None:
        # Checked again after a failure: the kernel may have removed it meanwhile.
        if exists() and _run(*argv).returncode != 0 and exists():
            left.append(what)

    # Each veth pair first, while it is whole: the kernel removes a namespace's own devices only
    # some time after the namespace is deleted.
    for host in plan.hosts:
        outer = plan.veth(host)[1]
        remove(f"link {outer}", functools.partial(_link_exists, outer), "ip", "link", "del", outer)
    for namespace in namespaces:
        remove(f"namespace {namespace}", (NETNS_DIR / namespace).exists, "ip", "netns", "del", namespace)
    remove(f"bridge {plan.bridge}", functools.partial(_link_exists, plan.bridge), "ip", "link", "del", plan.bridge)
    if left:
        raise NetworkError(f"could not remove {', '.join(left)}; remove them by hand")
