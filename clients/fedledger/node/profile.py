"""The public network profile a party takes home: addresses and TLS roots, never a key.

The network operator's ``connection.json`` points at files in its own home (TLS roots, admin and
client identities). A party gets a copy with the TLS root certificates embedded and every
identity left out, so its home is self-contained and holds nothing of anyone else's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fedledger.errors import NetworkStateError


def party_profile(network_home: Path) -> dict[str, Any]:
    """The profile a party of the network in ``network_home`` needs: channel, chaincode, peers, CAs."""
    try:
        profile = json.loads((network_home / "connection.json").read_text())
    except FileNotFoundError:
        raise NetworkStateError(f"no network profile in {network_home}; run `fedledger network up`") from None
    orgs = {}
    for name, org in profile["orgs"].items():
        orgs[name] = {"msp_id": org["msp_id"],
                      "peer": {"address": org["peer"]["address"], "server_name": org["peer"]["server_name"],
                               "tls_ca_pem": Path(org["peer"]["tls_ca"]).read_text()},
                      "ca": {"url": org["ca"]["url"], "name": org["ca"]["name"],
                             "tls_ca_pem": Path(org["ca"]["tls_ca"]).read_text()}}
    return {"channel": profile["channel"], "chaincode": profile["chaincode"], "orgs": orgs}
