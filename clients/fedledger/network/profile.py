"""The connection profile (connection.json): what a client needs to use the network."""

from __future__ import annotations

import json

from fedledger.network.config import ConsortiumConfig, Node
from fedledger.network.layout import Layout
from fedledger.network.runtime import Address, loopback


def write_profile(config: ConsortiumConfig, layout: Layout, *, address: Address = loopback) -> None:
    """Each company's peer and CA at the addresses this machine reaches them at, its TLS root, and
    its admin and client identities; the orderers. Native and docker networks write the same document."""
    def joined(node: Node) -> str:
        return "%s:%d" % address(node, "listen")

    orgs: dict[str, object] = {}
    for org in config.companies:
        peer = config.peer(org)
        users = {}
        for user in ("admin", "client"):
            msp = layout.user(org, user) / "msp"
            users[user] = {"cert": str(msp / "signcerts" / "cert.pem"), "key": str(msp / "keystore" / "key.pem")}
        orgs[org.name] = {"msp_id": org.msp_id,
                          "peer": {"address": joined(peer), "tls_ca": str(layout.ca_root(org)),
                                   "server_name": peer.host},
                          "ca": {"url": f"https://{joined(config.ca(org))}",
                                 "name": org.ca_name, "tls_ca": str(layout.ca_root(org))},
                          "users": users}
    profile = {"channel": config.channel, "chaincode": config.chaincode, "orgs": orgs,
               "orderers": [{"address": joined(n), "tls_ca": str(layout.ca_root(config.orderer_org))}
                            for n in config.orderers()]}
    layout.profile.write_text(json.dumps(profile, indent=2, sort_keys=True))
