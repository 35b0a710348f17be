"""``fedledger audit verify TASK``: check the channel's ledger on every org's peer, and a task's record
against its artifacts and rules.

Exit code 4 when a check fails (the report says which), 0 when every check holds.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from fedledger.cli.options import add_common, party_of

EXIT_AUDIT_FAILED = 4


def register(nouns: Any) -> None:
    audit = nouns.add_parser("audit", help="verify a task end to end against the ledger and the artifacts")
    verbs = audit.add_subparsers(dest="verb", required=True, metavar="<verb>")
    verify = verbs.add_parser("verify", help="every round: artifacts, completeness, election, model derivation, "
                                             "epsilon")
    verify.add_argument("task_id")
    add_common(verify, identity=True)
    verify.set_defaults(run=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    from fedledger.fabric.blocks import audit_ledger
    from fedledger.fl.audit import audit_task, ledger_findings
    from fedledger.fl.company import CompanySession

    with CompanySession.open(party_of(args)) as session:
        report = audit_task(session.ledger, session.store, args.task_id)
        # The ledger itself, as every org's peer holds it: blocks, signatures, endorsements, agreement.
        gateways = session.peer_gateways()
        try:
            report.findings[:0] = ledger_findings(audit_ledger(gateways, session.home.profile["channel"]))
        finally:
            for gateway in gateways.values():
                gateway.close()
    if args.json:
        print(json.dumps({"task_id": report.task_id, "rounds": report.rounds, "ok": report.ok,
                          "findings": [f.__dict__ for f in report.findings]}, sort_keys=True))
    else:
        for f in report.findings:
            print(f"{'ok  ' if f.ok else 'FAIL'} round {f.round:>3}  {f.check}  {f.detail}")
        failed = sum(1 for f in report.findings if not f.ok)
        print(f"task {report.task_id}: {report.rounds} rounds audited, {len(report.findings)} checks, "
              + ("every check holds" if report.ok else f"{failed} FAILED"))
        first = report.first_failure
        if first is not None:
            print(f"first failure: round {first.round}: {first.check}: {first.detail}")
    return 0 if report.ok else EXIT_AUDIT_FAILED
