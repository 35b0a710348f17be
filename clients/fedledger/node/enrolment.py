"""A party joins the consortium from its own home: enroll at its org's CA, record itself and its keys.

The org's CA admin registers the party (``Consortium.register``: a one-time enrollment secret);
the party then, on its own machine, enrolls with that secret (its Fabric key is generated in its
home and never leaves it), creates a company's sealing and node keys, and records itself on the
ledger, signed by its own identity: its roles, and the public halves of its keys.
"""

from __future__ import annotations

from typing import Any

from fedledger.errors import FedLedgerError
from fedledger.fabric.ca import CAClient
from fedledger.fl.company import CompanySession
from fedledger.fl.party import PartyHome, PartyKind
from fedledger.network.pki import ROLE_ATTRIBUTE


def init_party(home: PartyHome, *, name: str, kind: PartyKind, org: str, profile: dict[str, Any],
               secret: str) -> dict[str, Any]:
    """Create ``home`` for party ``name`` of ``org`` and enroll it with its one-time ``secret``.

    Returns the party's ledger record. Safe to call again on a home whose enrollment finished but
    whose ledger record is missing (the ledger steps are skipped when already done).
    """
    if org not in profile["orgs"]:
        raise FedLedgerError(f"organization {org} is not in the network profile (known: {sorted(profile['orgs'])})")
    entry = profile["orgs"][org]
    if not (home.root / "party.json").exists():
        home.create(name=name, kind=kind, org=org, msp_id=entry["msp_id"], profile=profile)
    if not (home.root / "wallet" / name).exists():
        client = CAClient(entry["ca"]["url"], msp_id=entry["msp_id"], tls_root_pem=entry["ca"]["tls_ca_pem"].encode(),
                          ca_name=entry["ca"]["name"])
        home.wallet.put(name, client.enroll(name, secret, attributes=(ROLE_ATTRIBUTE,)))
    if kind is PartyKind.COMPANY and not home.sealing_key_path.exists():
        home.generate_company_keys()
    with CompanySession.open(home) as session:
        roles = sorted(r for r in session.enrollment.attributes().get(ROLE_ATTRIBUTE, "").split(",") if r)
        if all(c["name"] != name for c in session.ledger.list_companies()):
            session.ledger.register_company(name, roles=roles)
        if kind is PartyKind.COMPANY:
            record = session.ledger.get_company(name)
            sealing, node, vrf = home.sealing_key(), home.node_key(), home.vrf_key()
            keys = (sealing.public_hex, node.public_text, vrf.public_key.hex())
            if (record.get("encryption_key"), record.get("node_key"), record.get("vrf_key")) != keys:
                session.ledger.record_company_keys(encryption_key=keys[0], node_key=keys[1], vrf_key=keys[2])
        return dict(session.ledger.get_company(name))
