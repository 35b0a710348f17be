"""The connection profile (connection.json): what a client needs to use the network."""

from __future__ import annotations

import json

from fedledger.network.config import ConsortiumConfig
from fedledger.network.layout import Layout


def write_profile(config: ConsortiumConfig, layout: Layout) -> None:
    """Each company's peer and CA at their ports on this host, its TLS root, and its admin and
    client identities; the orderers. Native and docker networks write the same document."""
    orgs: dict[str, object] = {}
    for org in config.companies:
        peer = config.peer(org)
        users = {}
        for user in ("admin", "client"):
            msp = layout.user(org, user) / "msp"
            users[user] = {"cert": str(msp / "signcerts" / "cert.pem"), "key": str(msp / "keystore" / "key.pem")}
        orgs[org.name] = {"msp_id": org.msp_id,
                          "peer": {"address": f"127.0.0.1:{peer.port}", "tls_ca": str(layout.ca_root(org)),
                                   "server_name": peer.host},
                          "ca": {"url": f"https://127.0.0.1:{config.ca(org).port}",
                                 "name": org.ca_name, "tls_ca": str(layout.ca_root(org))},
                          "users": users}
    profile = {"channel": config.channel, "chaincode": config.chaincode, "orgs": orgs,
               "orderers": [{"address": f"127.0.0.1:{n.port}", "tls_ca": str(layout.ca_root(config.orderer_org))}
                            for n in config.orderers()]}
    layout.profile.write_text(json.dumps(profile, indent=2, sort_keys=True))
