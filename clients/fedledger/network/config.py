"""The consortium's description (network/consortium.toml) and the node plan derived from it."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from fedledger.errors import NetworkConfigError

_NAME = re.compile(r"^[A-Z][A-Za-z0-9]{0,30}$")
_CHANNEL = re.compile(r"^[a-z][a-z0-9.-]{0,48}$")
_DURATION = re.compile(r"^[1-9][0-9]{0,4}(ms|s)$")

DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "network" / "consortium.toml"


@dataclass(frozen=True)
class Organization:
    """A Fabric organization: its name, MSP id, DNS domain and the port block it owns."""

    name: str
    kind: str  # "orderer" or "company"
    base_port: int

    @property
    def msp_id(self) -> str:
        return f"{self.name}MSP"

    @property
    def domain(self) -> str:
        return f"{self.name.lower()}.fedledger"

    @property
    def ca_name(self) -> str:
        return f"ca-{self.name.lower()}"

    @property
    def ca_host(self) -> str:
        return f"ca.{self.domain}"


@dataclass(frozen=True)
class Node:
    """One process of the consortium and the ports it listens on (all on one host)."""

    name: str  # unique, e.g. "orderer1.orderer.fedledger", "peer0.warehouse.fedledger"
    role: str  # "ca", "orderer", "peer" or "chaincode"
    org: Organization
    port: int
    admin_port: int | None = None  # orderer: channel participation (osnadmin)
    operations_port: int | None = None  # /healthz and metrics (CAs, orderers, peers)
    chaincode_port: int | None = None  # peer: where chaincode connects (unused by CCaaS)

    @property
    def host(self) -> str:
        """The node's DNS name: a TLS SAN, and its service name under docker compose."""
        return self.name

    @property
    def short(self) -> str:
        """The node's name within its organization (``peer0``, ``orderer2``, ``ca``)."""
        return self.name.split(".")[0]

    def ports(self) -> dict[str, int]:
        named = {"listen": self.port, "admin": self.admin_port, "operations": self.operations_port,
                 "chaincode": self.chaincode_port}
        return {k: v for k, v in named.items() if v is not None}


@dataclass(frozen=True)
class ConsortiumConfig:
    """A validated consortium: channel, chaincode, block cutting, organizations and ports."""

    channel: str
    chaincode: str
    base_port: int
    batch_timeout: str
    max_message_count: int
    orderer_org: Organization
    orderer_count: int
    companies: tuple[Organization, ...]

    @classmethod
    def load(cls, path: Path | str = DEFAULT_CONFIG, *, base_port: int | None = None) -> ConsortiumConfig:
        """Read and validate a consortium file; ``base_port`` overrides the file's."""
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise NetworkConfigError(f"consortium file {path} does not exist") from None
        except tomllib.TOMLDecodeError as err:
            raise NetworkConfigError(f"consortium file {path} is not valid TOML: {err}") from None
        return cls.from_dict(raw, base_port=base_port, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, object], *, base_port: int | None = None,
                  source: str = "consortium") -> ConsortiumConfig:
        def fail(message: str) -> NetworkConfigError:
            return NetworkConfigError(f"{source}: {message}")

        known = {"channel", "chaincode", "base-port", "batch-timeout", "max-message-count", "orderer-org", "company"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise fail(f"unknown keys {unknown}; expected some of {sorted(known)}")
        channel = raw.get("channel", "fedledger")
        chaincode = raw.get("chaincode", "fedledger")
        for what, value in (("channel", channel), ("chaincode", chaincode)):
            if not isinstance(value, str) or not _CHANNEL.match(value):
                raise fail(f"{what} {value!r} must be lower-case letters, digits, '.' or '-', starting with a letter")
        base = raw.get("base-port", 17000) if base_port is None else base_port
        batch_timeout = raw.get("batch-timeout", "50ms")
        if not isinstance(batch_timeout, str) or not _DURATION.match(batch_timeout):
            raise fail(f"batch-timeout {batch_timeout!r} must look like '200ms' or '2s'")
        max_messages = raw.get("max-message-count", 50)
        if not isinstance(max_messages, int) or not 1 <= max_messages <= 10_000:
            raise fail(f"max-message-count {max_messages!r} must be an integer in 1..10000")

        orderer_raw = raw.get("orderer-org", {})
        if not isinstance(orderer_raw, dict):
            raise fail("[orderer-org] must be a table")
        orderer_count = orderer_raw.get("orderers", 3)
        if not isinstance(orderer_count, int) or orderer_count not in (1, 3, 5):
            # Raft tolerates f failures with 2f+1 nodes; even counts add cost and no tolerance.
            raise fail(f"orderer-org.orderers {orderer_count!r} must be 1, 3 or 5")
        companies_raw = raw.get("company", [])
        if not isinstance(companies_raw, list) or not 1 <= len(companies_raw) <= 9:
            raise fail("declare between 1 and 9 [[company]] tables")
        names = [orderer_raw.get("name", "Orderer")] + [c.get("name") if isinstance(c, dict) else None
                                                         for c in companies_raw]
        for name in names:
            if not isinstance(name, str) or not _NAME.match(name):
                raise fail(f"organization name {name!r} must be a capitalized word of letters and digits "
                           "(it becomes the MSP id <name>MSP)")
        lowered = [str(n).lower() for n in names]
        if len(set(lowered)) != len(lowered):
            raise fail(f"organization names must be distinct (ignoring case): {names}")
        if not isinstance(base, int) or not 1024 <= base <= 65535 - 100 * (len(companies_raw) + 1):
            raise fail(f"base-port {base!r} leaves no room for the consortium's ports "
                       f"(it needs base..base+{100 * (len(companies_raw) + 1)})")
        orderer_org = Organization(str(names[0]), "orderer", base)
        companies = tuple(Organization(str(n), "company", base + 100 * (j + 1)) for j, n in enumerate(names[1:]))
        return cls(str(channel), str(chaincode), base, batch_timeout, max_messages, orderer_org, orderer_count,
                   companies)

    def to_dict(self) -> dict[str, object]:
        """The consortium file's content for this configuration (``from_dict`` reads it back)."""
        return {"channel": self.channel, "chaincode": self.chaincode, "base-port": self.base_port,
                "batch-timeout": self.batch_timeout, "max-message-count": self.max_message_count,
                "orderer-org": {"name": self.orderer_org.name, "orderers": self.orderer_count},
                "company": [{"name": org.name} for org in self.companies]}

    @property
    def organizations(self) -> tuple[Organization, ...]:
        return (self.orderer_org, *self.companies)

    def company(self, name: str) -> Organization:
        """The company organization called ``name`` (case-insensitive)."""
        for org in self.companies:
            if org.name.lower() == name.lower():
                return org
        raise NetworkConfigError(f"no company {name!r} in the consortium; it has "
                                 f"{', '.join(o.name for o in self.companies)}")

    def ca(self, org: Organization) -> Node:
        return Node(f"ca.{org.domain}", "ca", org, org.base_port, operations_port=org.base_port + 1)

    def orderers(self) -> tuple[Node, ...]:
        org = self.orderer_org
        return tuple(
            Node(f"orderer{i}.{org.domain}", "orderer", org, org.base_port + 10 * (i + 1),
                 admin_port=org.base_port + 10 * (i + 1) + 1, operations_port=org.base_port + 10 * (i + 1) + 2)
            for i in range(self.orderer_count)
        )

    def peer(self, org: Organization) -> Node:
        b = org.base_port
        return Node(f"peer0.{org.domain}", "peer", org, b + 10, operations_port=b + 12, chaincode_port=b + 11)

    def chaincode_service(self, org: Organization) -> Node:
        return Node(f"{self.chaincode}-cc.{org.domain}", "chaincode", org, org.base_port + 20)

    def nodes(self) -> tuple[Node, ...]:
        """Every process, in start order: CAs, orderers, peers, chaincode services."""
        return (
            *(self.ca(o) for o in self.organizations),
            *self.orderers(),
            *(self.peer(o) for o in self.companies),
            *(self.chaincode_service(o) for o in self.companies),
        )


def role_order(role: str, name: str) -> tuple[int, str]:
    """Sort key of nodes in start order: CAs, orderers, peers, chaincode services."""
    return {"ca": 0, "orderer": 1, "peer": 2, "chaincode": 3}.get(role, 9), name
