"""Company identities in a running consortium: enroll at the org's CA, revoke everywhere.

A company enrolls as a client identity of its organization, with the roles it may claim on the
ledger in the certificate's ``fedledger.role`` attribute, and is kept in the network's file wallet.
Revocation is done where Fabric enforces it: the CA revokes the certificate and issues a CRL, and
the CRL is written into the organization's MSP in the channel configuration (a config update
signed by the org's admin), so every peer and orderer refuses the certificate from then on.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fabric_protos.common import common_pb2, configtx_pb2
from fabric_protos.msp import msp_config_pb2

from fedledger.errors import NetworkError, WalletError
from fedledger.fabric.ca import CAClient, Enrollment
from fedledger.fabric.wallet import FileWallet
from fedledger.network.chaincode import admin_env, orderer_args
from fedledger.network.channel import run
from fedledger.network.config import Organization
from fedledger.network.orchestrator import Network
from fedledger.network.pki import ROLE_ATTRIBUTE, ca_client, load_registrar

ROLES = ("committee", "dealer", "participant", "publisher")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def parse_roles(roles: str) -> str:
    """Validate a comma-separated role list; return it sorted and de-duplicated."""
    wanted = sorted({r.strip() for r in roles.split(",") if r.strip()})
    unknown = [r for r in wanted if r not in ROLES]
    if not wanted or unknown:
        raise NetworkError(f"roles {roles!r} are invalid: use one or more of {', '.join(ROLES)}")
    return ",".join(wanted)


def check_name(name: str) -> str:
    """A company name as the ledger and the wallet accept it."""
    if not _NAME.match(name):
        raise NetworkError(f"company name {name!r} is invalid: use 1-64 of a-z 0-9 . _ -, "
                           "starting with a letter or digit")
    return name


@dataclass
class Consortium:
    """A running network seen by its operators: its wallet, CAs and org admins."""

    net: Network

    @property
    def wallet(self) -> FileWallet:
        return FileWallet(self.net.layout.home / "wallet")

    def _registrar(self, org: Organization) -> Enrollment:
        return load_registrar(self.net.layout, org)

    def ca_client(self, org: Organization) -> CAClient:
        return ca_client(self.net.config, self.net.layout, org, address=self.net.address)

    def register(self, name: str, *, org: str, roles: str) -> str:
        """As ``org``'s CA admin, register ``name`` with ``roles``; return its one-time enrollment secret.

        The party enrolls with the secret itself, from its own home (``fedledger node init``), so
        its private key is generated there and never passes through the operator.
        """
        check_name(name)
        organization = self.net.config.company(org)
        secret = secrets.token_urlsafe(18)
        self.ca_client(organization).register(self._registrar(organization), name, secret=secret,
                                              identity_type="client",
                                              attributes={ROLE_ATTRIBUTE: parse_roles(roles)}, max_enrollments=1)
        return secret

    def enroll(self, name: str, *, org: str, roles: str) -> Enrollment:
        """Register ``name`` at ``org``'s CA with ``roles``, enroll it and keep it in the operator's wallet."""
        if (self.wallet.root / check_name(name)).exists():
            raise WalletError(f"company {name} is already enrolled (wallet {self.wallet.root}); "
                              "revoke it first or choose another name")
        secret = self.register(name, org=org, roles=roles)
        enrollment = self.ca_client(self.net.config.company(org)).enroll(name, secret, attributes=(ROLE_ATTRIBUTE,))
        self.wallet.put(name, enrollment)
        return enrollment

    def revoke(self, name: str, *, org: Organization, reason: str = "") -> bytes:
        """Revoke ``name``'s certificates at ``org``'s CA and put the CRL into the org's channel MSP.

        The enrollment id is the name the party was registered under (``register``), so the
        operator needs none of the party's files to revoke it.
        """
        revocation = self.ca_client(org).revoke(self._registrar(org), enrollment_id=check_name(name), reason=reason)
        self.publish_crl(org, revocation.crl_pem)
        return revocation.crl_pem

    def publish_crl(self, org: Organization, crl_pem: bytes) -> None:
        """Replace ``org``'s revocation list in the channel configuration with ``crl_pem``."""
        net, channel = self.net, self.net.config.channel
        env = admin_env(net.config, net.layout, org, address=net.address)
        orderer = net.config.orderers()[0]
        peer = str(net.bin_dir / "peer")
        with tempfile.TemporaryDirectory(prefix="fedledger-config-") as tmp:
            block_file, update_file = Path(tmp) / "config.block", Path(tmp) / "update.pb"
            run([peer, "channel", "fetch", "config", str(block_file), "-c", channel,
                 *orderer_args(net.config, net.layout, orderer, address=net.address)], env=env, what="fetching the channel configuration")
            update_file.write_bytes(crl_update(block_file.read_bytes(), channel, org.msp_id, crl_pem))
            # The peer CLI signs the update as the org's admin (the MSP value's mod_policy is the
            # org's Admins) and sends it to the ordering service.
            run([peer, "channel", "update", "-f", str(update_file), "-c", channel,
                 *orderer_args(net.config, net.layout, orderer, address=net.address)], env=env, what=f"updating {org.name}'s CRL")
        _wait_for_config(net, org, crl_pem)


def crl_update(config_block: bytes, channel: str, msp_id: str, crl_pem: bytes) -> bytes:
    """An unsigned CONFIG_UPDATE envelope setting ``msp_id``'s revocation list to ``crl_pem``.

    Only the org's MSP value changes: the write set carries it with its version + 1, and the read
    set pins the versions of the groups on its path, as Fabric's update rules require.
    """
    block = common_pb2.Block.FromString(config_block)
    envelope = common_pb2.Envelope.FromString(block.data.data[0])
    payload = common_pb2.Payload.FromString(envelope.payload)
    config = configtx_pb2.ConfigEnvelope.FromString(payload.data).config
    application = config.channel_group.groups["Application"]
    if msp_id not in application.groups:
        raise NetworkError(f"{msp_id} is not an application organization of channel {channel}")
    org_group = application.groups[msp_id]
    current = org_group.values["MSP"]
    msp = msp_config_pb2.MSPConfig.FromString(current.value)
    fabric_msp = msp_config_pb2.FabricMSPConfig.FromString(msp.config)
    del fabric_msp.revocation_list[:]
    fabric_msp.revocation_list.append(crl_pem)
    msp.config = fabric_msp.SerializeToString()

    def path(with_value: bool) -> configtx_pb2.ConfigGroup:
        top = configtx_pb2.ConfigGroup(version=config.channel_group.version)
        app = top.groups["Application"]
        app.version = application.version
        org = app.groups[msp_id]
        org.version = org_group.version
        if with_value:
            value = org.values["MSP"]
            value.version = current.version + 1
            value.mod_policy = current.mod_policy
            value.value = msp.SerializeToString()
        return top

    update = configtx_pb2.ConfigUpdate(channel_id=channel)
    update.read_set.CopyFrom(path(False))
    update.write_set.CopyFrom(path(True))
    update_envelope = configtx_pb2.ConfigUpdateEnvelope(config_update=update.SerializeToString())
    channel_header = common_pb2.ChannelHeader(type=common_pb2.CONFIG_UPDATE, channel_id=channel)
    out = common_pb2.Payload(header=common_pb2.Header(channel_header=channel_header.SerializeToString()),
                             data=update_envelope.SerializeToString())
    return bytes(common_pb2.Envelope(payload=out.SerializeToString()).SerializeToString())


def _wait_for_config(net: Network, org: Organization, crl_pem: bytes, timeout: float = 30) -> None:
    """Wait until the org's peer has committed the config block that carries ``crl_pem``."""
    import time

    env = admin_env(net.config, net.layout, org, address=net.address)
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="fedledger-config-") as tmp:
        block_file = Path(tmp) / "config.block"
        while time.monotonic() < deadline:
            # Fetched from the peer's own ledger (no -o): it shows what the peer has committed.
            done = subprocess.run([str(net.bin_dir / "peer"), "channel", "fetch", "config", str(block_file),
                                   "-c", net.config.channel], env={**os.environ, **env}, capture_output=True)
            if done.returncode == 0 and crl_pem.strip() in block_file.read_bytes():
                return
            time.sleep(0.3)
    raise NetworkError(f"the CRL update for {org.name} was not committed within {timeout:.0f} s")


def describe(entry: dict[str, str], enrollment: Enrollment) -> dict[str, object]:
    """A wallet identity as `company list/show` print it (never its key)."""
    cert = enrollment.identity.certificate
    return {**entry, "roles": enrollment.attributes().get(ROLE_ATTRIBUTE, ""),
            "not_after": cert.not_valid_after_utc.isoformat(), "serial": format(cert.serial_number, "x")}


def dumps(document: object) -> str:
    return json.dumps(document, sort_keys=True)
