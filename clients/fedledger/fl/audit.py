"""Audit a task end to end: does what the ledger says match the artifacts and the task's rules?

For every round on the ledger it checks that each recorded update's ciphertext is in the store
and hashes to the recorded value (the store re-hashes on every read) with the recorded size; that
the aggregate recomputed from exactly the listed updates has the recorded hash; that a quorum of
the committee voted it valid; that the model recorded at close is in the store; that the epsilon
booked equals the RDP accountant's for that many rounds under the genesis's parameters; and that
the task's epsilon spent equals the last closed round's. Anyone holding a reader identity and the
artifacts can run it: it needs no key share and decrypts nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fedledger.errors import ArtifactError, FedLedgerError
from fedledger.fl.artifacts import ArtifactStore, digest_of
from fedledger.fl.rounds import LedgerPort, TaskPlan, aggregate_bytes


@dataclass(frozen=True)
class Finding:
    round: int
    check: str
    ok: bool
    detail: str = ""


@dataclass
class AuditReport:
    task_id: str
    rounds: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def add(self, round_number: int, check: str, ok: bool, detail: str = "") -> None:
        self.findings.append(Finding(round_number, check, ok, detail))


def audit_task(ledger: LedgerPort, store: ArtifactStore, task_id: str) -> AuditReport:
    """Check every round of ``task_id`` against the artifacts; never raises for a failed check."""
    plan = TaskPlan.load(ledger, task_id)
    report = AuditReport(task_id)
    initial = plan.task["model"]["initial_weights_sha256"]
    report.add(0, "initial model in the store", store.exists(initial), initial[:16])
    last_closed_epsilon = 0
    for n in range(1, plan.task["current_round"] + 1):
        report.rounds = n
        record = ledger.get_round(task_id, n)
        updates = ledger.list_updates(task_id, n)
        for update in updates:
            try:
                size = len(store.get(update["artifact_sha256"]))
                report.add(n, f"update of {update['company']} stored and intact", size == update["size_bytes"],
                           f"{size} bytes, ledger says {update['size_bytes']}")
            except (ArtifactError, FedLedgerError) as err:
                report.add(n, f"update of {update['company']} stored and intact", False, str(err))
        expected = math.ceil(plan.epsilon_after(n) * 1_000_000 - 1e-6)
        report.add(n, "epsilon booked matches the accountant", abs(record["epsilon_after_micro"] - expected) <= 1,
                   f"ledger {record['epsilon_after_micro']} micro, accountant {expected}")
        aggregate = record.get("aggregate")
        if aggregate is None:
            report.add(n, f"round {record['status']} without an aggregate", record["status"] in ("collecting", "failed"))
            continue
        by_company = {u["company"]: u for u in updates}
        missing = [c for c in aggregate["included"] if c not in by_company]
        if missing:
            report.add(n, "aggregate includes only recorded updates", False, f"unknown: {missing}")
        else:
            try:
                included = [by_company[c] for c in aggregate["included"]]
                ciphertexts = {u["company"]: store.get(u["artifact_sha256"]) for u in included}
                recomputed = digest_of(aggregate_bytes(plan, included, ciphertexts))
                report.add(n, "aggregate recomputed from the recorded updates", recomputed == aggregate["sha256"],
                           f"{recomputed[:16]} vs recorded {aggregate['sha256'][:16]}")
            except FedLedgerError as err:
                report.add(n, "aggregate recomputed from the recorded updates", False, str(err))
        if record["status"] in ("verified", "closed"):
            report.add(n, "a quorum voted the aggregate valid", record["valid_votes"] >= plan.task["quorum"],
                       f"{record['valid_votes']} of quorum {plan.task['quorum']}")
        if record["status"] == "closed":
            model = record.get("model_sha256", "")
            report.add(n, "closing model in the store", bool(model) and store.exists(model), model[:16])
            last_closed_epsilon = record["epsilon_after_micro"]
    report.add(report.rounds, "task epsilon spent equals the last closed round's",
               plan.task["epsilon_spent_micro"] == last_closed_epsilon,
               f"{plan.task['epsilon_spent_micro']} vs {last_closed_epsilon}")
    return report
