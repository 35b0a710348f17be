"""``fedledger company enroll | list | show | revoke``: company identities and their ledger records."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fedledger.errors import WalletError
from fedledger.fabric.contract import Contract
from fedledger.fabric.gateway import Gateway, connect
from fedledger.fabric.identity import Identity, Signer
from fedledger.cli.options import add_common, home_of
from fedledger.network import open_network
from fedledger.network.companies import Consortium, check_name, describe, parse_roles
from fedledger.network.config import Organization


def register(nouns: Any) -> None:
    parser = nouns.add_parser("company", help="enroll, list, show and revoke company identities")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="<verb>")

    enroll = verbs.add_parser("enroll", help="register and enroll a company at its org's CA and record it on the ledger")
    add_common(enroll)
    enroll.add_argument("name", help="the company's name (a-z 0-9 . _ -)")
    enroll.add_argument("--org", required=True, help="the organization it belongs to (e.g. Manufacturer)")
    enroll.add_argument("--role", required=True, help="participant, committee, publisher, or a comma-separated mix")
    enroll.set_defaults(run=run_enroll)

    listing = verbs.add_parser("list", help="the companies in the wallet")
    add_common(listing)
    listing.set_defaults(run=run_list)

    show = verbs.add_parser("show", help="a company's identity and its ledger record")
    add_common(show)
    show.add_argument("name")
    show.set_defaults(run=run_show)

    revoke = verbs.add_parser("revoke", help="revoke a company: on the ledger, at its CA and in the channel's CRL")
    add_common(revoke)
    revoke.add_argument("name")
    revoke.add_argument("--reason", default="", help="a CRL reason (e.g. keycompromise)")
    revoke.set_defaults(run=run_revoke)


def _consortium(args: argparse.Namespace) -> Consortium:
    return Consortium(open_network(home_of(args)))


def _gateway(consortium: Consortium, org: Organization, identity: Identity, signer: Signer) -> Gateway:
    profile = json.loads(consortium.net.layout.profile.read_text())
    peer = profile["orgs"][org.name]["peer"]
    return connect(peer["address"], identity=identity, signer=signer,
                   tls_root_certificates=Path(peer["tls_ca"]).read_bytes())


def _contract(consortium: Consortium, gateway: Gateway) -> Contract:
    config = consortium.net.config
    return gateway.network(config.channel).contract(config.chaincode)


def _org_admin(consortium: Consortium, org: Organization) -> tuple[Identity, Signer]:
    msp = consortium.net.layout.user(org, "admin") / "msp"
    return (Identity(org.msp_id, (msp / "signcerts" / "cert.pem").read_bytes()),
            Signer.from_pem((msp / "keystore" / "key.pem").read_bytes()))


def _ledger_record(consortium: Consortium, org: Organization, identity: Identity, signer: Signer,
                   name: str) -> dict[str, Any] | None:
    """The company's record on the ledger, read as ``identity``; None if it is not registered."""
    with _gateway(consortium, org, identity, signer) as gateway:
        companies: list[dict[str, Any]] = json.loads(_contract(consortium, gateway).evaluate("ListCompanies", []))
    return next((c for c in companies if c["name"] == name), None)


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def run_enroll(args: argparse.Namespace) -> int:
    consortium = _consortium(args)
    check_name(args.name)
    org = consortium.net.config.company(args.org)
    roles = parse_roles(args.role)
    if consortium.wallet.has(args.name):
        enrollment = consortium.wallet.get(args.name)
        if enrollment.identity.msp_id != org.msp_id:
            raise WalletError(f"company {args.name} is already enrolled in {enrollment.identity.msp_id}")
        _progress(f"{args.name} is already in the wallet; checking its ledger record")
    else:
        _progress(f"registering and enrolling {args.name} at {org.ca_name}")
        enrollment = consortium.enroll(args.name, org=org.name, roles=roles)
    record = _ledger_record(consortium, org, enrollment.identity, enrollment.signer, args.name)
    if record is None:
        _progress(f"recording {args.name} on the ledger (RegisterCompany, signed by {args.name} itself)")
        with _gateway(consortium, org, enrollment.identity, enrollment.signer) as gateway:
            _contract(consortium, gateway).submit("RegisterCompany", [args.name, roles, enrollment.identity.fingerprint])
        record = _ledger_record(consortium, org, enrollment.identity, enrollment.signer, args.name)
    document = {**describe({"label": args.name, "msp_id": org.msp_id, "enrollment_id": enrollment.enrollment_id,
                            "fingerprint": enrollment.identity.fingerprint}, enrollment), "ledger": record}
    if args.json:
        print(json.dumps(document, sort_keys=True))
    else:
        print(f"{args.name}: enrolled in {org.msp_id} with roles {roles}; recorded on the ledger "
              f"(status {record['status'] if record else '?'})")
        print(f"  certificate fingerprint {enrollment.identity.fingerprint}")
        print(f"  wallet: {consortium.wallet.root / args.name}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    consortium = _consortium(args)
    entries = [describe(e, consortium.wallet.get(e["label"])) for e in consortium.wallet.list()]
    if args.json:
        print(json.dumps({"companies": entries}, sort_keys=True))
    else:
        print(f"{'NAME':20} {'MSP':16} {'ROLES':32} {'EXPIRES':25} FINGERPRINT")
        for e in entries:
            print(f"{e['label']:20} {e['msp_id']:16} {e['roles']!s:32} {e['not_after']!s:25} {str(e['fingerprint'])[:16]}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    consortium = _consortium(args)
    enrollment = consortium.wallet.get(args.name)
    org = next(o for o in consortium.net.config.companies if o.msp_id == enrollment.identity.msp_id)
    record = _ledger_record(consortium, org, *_org_admin(consortium, org), args.name)
    entry = {"label": args.name, "msp_id": enrollment.identity.msp_id, "enrollment_id": enrollment.enrollment_id,
             "fingerprint": enrollment.identity.fingerprint}
    document = {**describe(entry, enrollment), "ledger": record}
    if args.json:
        print(json.dumps(document, sort_keys=True))
    else:
        for key, value in sorted(document.items()):
            print(f"{key:14} {json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    consortium = _consortium(args)
    enrollment = consortium.wallet.get(args.name)
    org = next(o for o in consortium.net.config.companies if o.msp_id == enrollment.identity.msp_id)
    admin = _org_admin(consortium, org)
    record = _ledger_record(consortium, org, *admin, args.name)
    on_ledger = record is not None
    if record is not None and record.get("status") != "revoked":
        _progress(f"recording the revocation of {args.name} on the ledger (by {org.name}'s admin)")
        with _gateway(consortium, org, *admin) as gateway:
            _contract(consortium, gateway).submit("SetCompanyStatus", [args.name, "revoked"])
    _progress(f"revoking {args.name}'s certificates at {org.ca_name} and publishing the CRL in the channel")
    consortium.revoke(args.name, reason=args.reason)
    if args.json:
        print(json.dumps({"name": args.name, "revoked": True, "ledger_record": on_ledger}, sort_keys=True))
    else:
        print(f"{args.name}: revoked at {org.ca_name}; {org.msp_id}'s CRL on channel "
              f"'{consortium.net.config.channel}' now refuses its certificate"
              + ("; ledger status revoked" if on_ledger else ""))
    return 0
