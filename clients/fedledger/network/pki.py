"""Each organization's crypto material, issued by its own Fabric CA (register + enroll, no cryptogen).

Every organization runs one fabric-ca-server. It signs the org's identities (admin, client, peer or
orderers) and, through its ``tls`` profile, the TLS certificates of the org's nodes, so one root
certificate per org is both the MSP's CA and its TLS CA. Roles come from NodeOUs: the CA writes the
identity type (admin, client, peer, orderer) into the certificate's OU, and the MSP's config.yaml
maps those OUs to Fabric roles, so no admincerts folders are needed.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from fedledger.errors import CAUnreachableError, NetworkStateError
from fedledger.fabric.ca import CAClient, Enrollment
from fedledger.fabric.identity import Identity, Signer
from fedledger.network.config import ConsortiumConfig, Node, Organization
from fedledger.network.layout import Layout
from fedledger.network.runtime import Address, loopback

# The roles a demo company's client identity may claim in the ledger (chaincode attribute).
CLIENT_ROLES = "committee,participant,publisher"
ROLE_ATTRIBUTE = "fedledger.role"


def write_private(path: Path, data: bytes) -> None:
    """Write secret bytes to a fresh file that only the owner can read (0600 from creation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def node_ous(ca_file: str) -> dict[str, object]:
    """The MSP config.yaml that maps fabric-ca identity types to Fabric roles."""
    def ou(name: str) -> dict[str, str]:
        return {"Certificate": ca_file, "OrganizationalUnitIdentifier": name}

    return {"NodeOUs": {"Enable": True, "ClientOUIdentifier": ou("client"), "PeerOUIdentifier": ou("peer"),
                        "AdminOUIdentifier": ou("admin"), "OrdererOUIdentifier": ou("orderer")}}


def write_org_msp(directory: Path, ca_pem: bytes) -> None:
    """An organization's verifying MSP: its CA root (also its TLS root) and the NodeOU rules."""
    write_public(directory / "cacerts" / "ca.pem", ca_pem)
    write_public(directory / "tlscacerts" / "ca.pem", ca_pem)
    write_public(directory / "config.yaml", yaml.safe_dump(node_ous("cacerts/ca.pem")).encode())


def write_local_msp(directory: Path, enrollment: Enrollment, ca_pem: bytes) -> None:
    """A signing MSP for a node or user: the org MSP plus its certificate and private key."""
    write_org_msp(directory, ca_pem)
    write_public(directory / "signcerts" / "cert.pem", enrollment.identity.certificate_pem)
    write_private(directory / "keystore" / "key.pem", enrollment.signer.private_pem())


def write_tls(directory: Path, enrollment: Enrollment, ca_pem: bytes) -> None:
    """A TLS key pair (server and client use) and the root that verifies it."""
    write_public(directory / "server.crt", enrollment.identity.certificate_pem)
    write_private(directory / "server.key", enrollment.signer.private_pem())
    write_public(directory / "ca.crt", ca_pem)


def tls_hosts(node: Node) -> tuple[str, ...]:
    """The names in a node's TLS certificate where it is reached at 127.0.0.1: its DNS name
    (docker compose's service name) and loopback (native processes, published ports)."""
    return (node.host, "localhost", "127.0.0.1")


@dataclass
class OrgIssuer:
    """Registers and enrolls an organization's identities at its CA, writing MSP and TLS folders."""

    org: Organization
    layout: Layout
    client: CAClient
    registrar: Enrollment
    ca_pem: bytes
    hosts: Callable[[Node], tuple[str, ...]] = tls_hosts

    def _enroll(self, enrollment_id: str, identity_type: str, *, tls_for: Node | None = None,
                attributes: dict[str, str] | None = None) -> tuple[Enrollment, Enrollment | None]:
        secret = secrets.token_urlsafe(18)
        self.client.register(self.registrar, enrollment_id, secret=secret, identity_type=identity_type,
                             attributes=attributes, max_enrollments=0 if tls_for is None else 2)
        ecert = self.client.enroll(enrollment_id, secret, attributes=tuple(sorted(attributes or {})))
        tls = None
        if tls_for is not None:
            tls = self.client.enroll(enrollment_id, secret, profile="tls", hosts=self.hosts(tls_for))
        return ecert, tls

    def issue_org(self) -> None:
        """The org MSP, and its admin (with a TLS client certificate for the orderer admin API)."""
        write_org_msp(self.layout.org_msp(self.org), self.ca_pem)
        secret = secrets.token_urlsafe(18)
        attributes = {ROLE_ATTRIBUTE: CLIENT_ROLES} if self.org.kind == "company" else None
        self.client.register(self.registrar, "admin", secret=secret, identity_type="admin",
                             attributes=attributes, max_enrollments=2)
        admin = self.client.enroll("admin", secret, attributes=tuple(sorted(attributes or {})))
        admin_tls = self.client.enroll("admin", secret, profile="tls")
        user = self.layout.user(self.org, "admin")
        write_local_msp(user / "msp", admin, self.ca_pem)
        write_tls(user / "tls", admin_tls, self.ca_pem)
        if self.org.kind == "company":
            client, _ = self._enroll("client", "client", attributes={ROLE_ATTRIBUTE: CLIENT_ROLES})
            write_local_msp(self.layout.user(self.org, "client") / "msp", client, self.ca_pem)

    def issue_node(self, node: Node) -> None:
        """A peer's or orderer's signing identity and TLS pair; a chaincode service's TLS pair."""
        if node.role == "chaincode":
            secret = secrets.token_urlsafe(18)
            self.client.register(self.registrar, node.short, secret=secret, identity_type="client")
            service_tls = self.client.enroll(node.short, secret, profile="tls", hosts=self.hosts(node))
            write_tls(self.layout.tls(node), service_tls, self.ca_pem)
            return
        ecert, tls = self._enroll(node.short, node.role, tls_for=node)
        assert tls is not None
        write_local_msp(self.layout.msp(node), ecert, self.ca_pem)
        write_tls(self.layout.tls(node), tls, self.ca_pem)


def ca_client(config: ConsortiumConfig, layout: Layout, org: Organization, *, address: Address = loopback) -> CAClient:
    """A client of ``org``'s CA (at ``address``), trusting the CA's own root."""
    return CAClient("https://%s:%d" % address(config.ca(org), "listen"), msp_id=org.msp_id,
                    tls_root_pem=layout.ca_root(org).read_bytes(), ca_name=org.ca_name)


def ca_answers(client: CAClient) -> bool:
    """Whether the CA answers ``cainfo`` over verified TLS."""
    try:
        client.info()
    except CAUnreachableError:
        return False
    return True


def save_registrar(layout: Layout, org: Organization, registrar: Enrollment) -> None:
    """Keep the CA's bootstrap registrar (key 0600) for later registrations (company enroll)."""
    directory = layout.user(org, "ca-admin")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.pem").write_bytes(registrar.identity.certificate_pem)
    write_private(directory / "key.pem", registrar.signer.private_pem())


def load_registrar(layout: Layout, org: Organization) -> Enrollment:
    """The registrar ``save_registrar`` kept for ``org``'s CA."""
    directory = layout.user(org, "ca-admin")
    try:
        return Enrollment(Identity(org.msp_id, (directory / "cert.pem").read_bytes()),
                          Signer.from_pem((directory / "key.pem").read_bytes()), b"")
    except FileNotFoundError:
        raise NetworkStateError(f"no CA registrar for {org.name} in {directory}; was the network brought "
                                "up by `fedledger network up`?") from None


def issue_consortium(config: ConsortiumConfig, layout: Layout, *, address: Address = loopback,
                     hosts: Callable[[Node], tuple[str, ...]] = tls_hosts) -> None:
    """Every org's identities and TLS pairs, from its own CA (at ``address``), each node's TLS pair
    naming ``hosts(node)``; the orgs in parallel."""
    def issue(org: Organization) -> None:
        issuer = OrgIssuer(org, layout, ca_client(config, layout, org, address=address), load_registrar(layout, org),
                           layout.ca_root(org).read_bytes(), hosts)
        issuer.issue_org()
        nodes = config.orderers() if org.kind == "orderer" else (config.peer(org), config.chaincode_service(org))
        for node in nodes:
            issuer.issue_node(node)

    with ThreadPoolExecutor(max_workers=len(config.organizations)) as pool:
        for future in [pool.submit(issue, org) for org in config.organizations]:
            future.result()
