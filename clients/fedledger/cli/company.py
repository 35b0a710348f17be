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

    enlist = verbs.add_parser("register", help="as the org's CA admin: register a party, print its one-time secret")
    add_common(enlist)
    enlist.add_argument("name", help="the party's name (a-z 0-9 . _ -)")
    enlist.add_argument("--org", required=True, help="the organization it belongs to (e.g. Manufacturer)")
    enlist.add_argument("--role", required=True,
                        help="participant, committee, publisher, dealer, or a comma-separated mix")
    enlist.set_defaults(run=run_register)

    listing = verbs.add_parser("list", help="the companies on the ledger (and which are in the operator's wallet)")
    add_common(listing)
    listing.set_defaults(run=run_list)

    show = verbs.add_parser("show", help="a company's ledger record (and its identity, if in the operator's wallet)")
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


def run_register(args: argparse.Namespace) -> int:
    consortium = _consortium(args)
    check_name(args.name)
    org = consortium.net.config.company(args.org)
    roles = parse_roles(args.role)
    secret = consortium.register(args.name, org=org.name, roles=roles)
    if args.json:
        print(json.dumps({"name": args.name, "org": org.name, "msp_id": org.msp_id, "roles": roles,
                          "secret": secret}, sort_keys=True))
    else:
        # Like fabric-ca-client register: the one-time secret is the result. The party enrolls with
        # it once, from its own home: fedledger node init ... --secret-stdin.
        print(secret)
        _progress(f"{args.name} registered at {org.ca_name} with roles {roles}; hand it this one-time secret and "
                  "the network profile (`fedledger network profile`), and it runs `fedledger node init` itself")
    return 0


def _ledger_companies(consortium: Consortium) -> list[dict[str, Any]]:
    """Every company the ledger records, read as the first org's admin."""
    org = consortium.net.config.companies[0]
    with _gateway(consortium, org, *_org_admin(consortium, org)) as gateway:
        companies: list[dict[str, Any]] = json.loads(_contract(consortium, gateway).evaluate("ListCompanies", []))
    return companies


def _company(consortium: Consortium, name: str) -> dict[str, Any]:
    found = next((c for c in _ledger_companies(consortium) if c["name"] == name), None)
    if found is None:
        raise WalletError(f"company {name} is not registered on the ledger")
    return found


def _summary(record: dict[str, Any], consortium: Consortium) -> dict[str, Any]:
    return {"name": record["name"], "msp_id": record["msp_id"], "roles": ",".join(record["roles"]),
            "status": record["status"], "reputation": record["reputation"],
            "keys_recorded": bool(record.get("encryption_key") and record.get("node_key")),
            "in_operator_wallet": consortium.wallet.has(record["name"])}


def run_list(args: argparse.Namespace) -> int:
    consortium = _consortium(args)
    entries = [_summary(c, consortium) for c in _ledger_companies(consortium)]
    if args.json:
        print(json.dumps({"companies": entries}, sort_keys=True))
    else:
        print(f"{'NAME':20} {'MSP':16} {'ROLES':32} {'STATUS':9} {'REPUTATION':>10}  KEYS")
        for e in entries:
            print(f"{e['name']:20} {e['msp_id']:16} {e['roles']:32} {e['status']:9} {e['reputation']:>10}  "
                  f"{'recorded' if e['keys_recorded'] else '-'}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    consortium = _consortium(args)
    record = _company(consortium, args.name)
    document: dict[str, Any] = {**_summary(record, consortium), "ledger": record}
    if consortium.wallet.has(args.name):
        enrollment = consortium.wallet.get(args.name)
        document.update(describe({"label": args.name, "msp_id": enrollment.identity.msp_id,
                                  "enrollment_id": enrollment.enrollment_id,
                                  "fingerprint": enrollment.identity.fingerprint}, enrollment))
    if args.json:
        print(json.dumps(document, sort_keys=True))
    else:
        for key, value in sorted(document.items()):
            print(f"{key:18} {json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    consortium = _consortium(args)
    record = _company(consortium, args.name)
    org = next(o for o in consortium.net.config.companies if o.msp_id == record["msp_id"])
    admin = _org_admin(consortium, org)
    on_ledger = True
    if record.get("status") != "revoked":
        _progress(f"recording the revocation of {args.name} on the ledger (by {org.name}'s admin)")
        with _gateway(consortium, org, *admin) as gateway:
            _contract(consortium, gateway).submit("SetCompanyStatus", [args.name, "revoked"])
    _progress(f"revoking {args.name}'s certificates at {org.ca_name} and publishing the CRL in the channel")
    consortium.revoke(args.name, org=org, reason=args.reason)
    if args.json:
        print(json.dumps({"name": args.name, "revoked": True, "ledger_record": on_ledger}, sort_keys=True))
    else:
        print(f"{args.name}: revoked at {org.ca_name}; {org.msp_id}'s CRL on channel "
              f"'{consortium.net.config.channel}' now refuses its certificate"
              + ("; ledger status revoked" if on_ledger else ""))
    return 0
