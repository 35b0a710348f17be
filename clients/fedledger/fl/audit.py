"""Audit a task end to end: does what the ledger says match the artifacts, and the task's rules?

Anyone holding a reader identity and the artifacts can run it: it needs no key share and decrypts
nothing on its own. For every round on the ledger it checks:

- **artifacts**: each recorded update's ciphertext, the aggregate, each combined partial decryption
  (or the escrow master's opening) and the closing model are in the store and hash to what the
  ledger records (the store re-hashes on every read), with the recorded sizes;
- **completeness**: the aggregate includes exactly the updates fixed when collection closed, and
  recomputed from exactly those ciphertexts it has the recorded hash;
- **election**: the ranking on the ledger is the stake-weighted sortition of the recorded VRF
  proofs (each re-verified under its company's recorded key), and the aggregate was recorded by a
  ranked member;
- **derivation**: each combined partial verifies with its proof against the threshold key, the
  partials combine to the round's weighted sum, and the previous model moved by the task's server
  step along its average is, byte for byte, the closing model (not re-derivable under central
  noise, where the leader adds fresh noise: that round is reported as trusted, never as checked);
- **budget**: the epsilon booked equals the accountant's for the closed rounds so far plus that one,
  and the task's epsilon spent equals the last closed round's.

The ledger itself (blocks, signatures, endorsements, peers' agreement) is checked by
``fedledger.fabric.blocks``; ``ledger_findings`` turns its report into findings (round 0), and the
CLI's ``audit verify`` runs both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from fedledger.crypto.sortition import Candidate, select
from fedledger.errors import ArtifactError, FedLedgerError
from fedledger.fabric.blocks import LedgerAudit
from fedledger.fabric.ledger import RoundRecord, UpdateRecord, VoteRecord
from fedledger.fl.artifacts import ArtifactStore, digest_of
from fedledger.fl.rounds import (
    LedgerPort,
    NoiseMode,
    RoundStatus,
    TaskPlan,
    aggregate_bytes,
    derive_closing_model,
    election_input,
)
from fedledger.privacy import epsilon_micro

T = TypeVar("T")


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

    @property
    def first_failure(self) -> Finding | None:
        return next((f for f in self.findings if not f.ok), None)

    def add(self, round_number: int, check: str, ok: bool, detail: str = "") -> None:
        self.findings.append(Finding(round_number, check, ok, detail))


class _Failed(Exception):
    """One check failed; the audit records it and goes on with the next."""


def _artifact(store: ArtifactStore, digest: str, what: str) -> bytes:
    try:
        return store.get(digest)
    except (ArtifactError, FedLedgerError) as err:
        raise _Failed(f"{what} {digest[:16]}…: {err}") from None


class _RoundAudit:
    """The checks of one round, in order; each records a finding and never raises."""

    def __init__(self, plan: TaskPlan, ledger: LedgerPort, store: ArtifactStore, report: AuditReport,
                 record: RoundRecord) -> None:
        self.plan, self.ledger, self.store, self.report, self.record = plan, ledger, store, report, record
        self.n = int(record["number"])
        self.updates: list[UpdateRecord] = ledger.list_updates(plan.task_id, self.n)
        self.votes: list[VoteRecord] = ledger.list_votes(plan.task_id, self.n)
        self._ciphertexts: dict[str, bytes] = {}

    def ciphertext(self, update: UpdateRecord) -> bytes:
        """An update's ciphertext from the store (read and re-hashed once per round)."""
        if update["company"] not in self._ciphertexts:
            self._ciphertexts[update["company"]] = _artifact(self.store, update["artifact_sha256"],
                                                             f"update of {update['company']}")
        return self._ciphertexts[update["company"]]

    def check(self, name: str, run: Callable[[], T]) -> T | None:
        """Record check ``name`` as ``run`` found it (it raises to fail); return what ``run`` returned."""
        try:
            value = run()
        except _Failed as err:
            self.report.add(self.n, name, False, str(err))
            return None
        except FedLedgerError as err:
            self.report.add(self.n, name, False, f"{type(err).__name__}: {err}")
            return None
        self.report.add(self.n, name, True, f"{len(value)} bytes" if isinstance(value, bytes) else str(value or ""))
        return value

    def updates_intact(self) -> None:
        for update in self.updates:
            def one(u: UpdateRecord = update) -> str:
                size = len(self.ciphertext(u))
                if size != u["size_bytes"]:
                    raise _Failed(f"{size} bytes, the ledger says {u['size_bytes']}")
                return f"{size} bytes"
            self.check(f"update of {update['company']} stored and intact", one)

    def election(self) -> None:
        election = self.record.get("election")
        if election is None:
            return

        def ranking() -> str:
            proofs = self.ledger.list_election_proofs(self.plan.task_id, self.n)
            candidates = [Candidate(p["member"], bytes.fromhex(self.ledger.get_company(p["member"]).get("vrf_key", "")),
                                    bytes.fromhex(p["proof"]), int(election["stakes"][p["member"]]))
                          for p in proofs if p["member"] in election["stakes"]]
            drawn = select(candidates, alpha=election_input(self.plan, self.record),
                           committee_size=len(candidates) - 1)
            ranked = [drawn.leader, *drawn.committee]
            if ranked != list(election["ranking"]):
                raise _Failed(f"the sortition of the recorded proofs ranks {ranked}, the ledger {election['ranking']}")
            recorder = self.record.get("aggregate", {}).get("recorded_by")
            if recorder and recorder not in ranked:
                raise _Failed(f"the aggregate was recorded by {recorder}, who is not ranked")
            return " > ".join(ranked)
        self.check("leader ranking is the sortition of the recorded VRF proofs", ranking)

    def aggregate(self) -> bytes | None:
        aggregate = self.record.get("aggregate")
        if aggregate is None:
            self.report.add(self.n, f"round {self.record['status']} without an aggregate",
                            self.record["status"] in ("open", "collecting", "collected", "failed"))
            return None

        def exact() -> str:
            fixed = sorted(self.record.get("collected", []))
            if sorted(aggregate["included"]) != fixed:
                raise _Failed(f"the aggregate includes {sorted(aggregate['included'])}, the ledger fixed {fixed}")
            return ", ".join(fixed)
        self.check("aggregate includes exactly the fixed updates", exact)

        def recomputed() -> bytes:
            by_company = {u["company"]: u for u in self.updates}
            included = [by_company[c] for c in aggregate["included"] if c in by_company]
            ciphertexts = {u["company"]: self.ciphertext(u) for u in included}
            mine = aggregate_bytes(self.plan, included, ciphertexts)
            if digest_of(mine) != aggregate["sha256"]:
                raise _Failed(f"recomputed {digest_of(mine)[:16]}…, recorded {aggregate['sha256'][:16]}…")
            return _artifact(self.store, aggregate["sha256"], "aggregate")
        return self.check("aggregate recomputed from the recorded updates", recomputed)

    def votes_and_quorum(self) -> None:
        if self.record["status"] in ("verified", "closed"):
            counted = sum(1 for v in self.votes if v["valid"] and v.get("counted", True))
            self.report.add(self.n, "a quorum voted the aggregate valid", counted >= self.plan.task["quorum"],
                            f"{counted} counted valid votes, quorum {self.plan.task['quorum']}")

    def model(self, aggregate_data: bytes | None, start: bytes, previous: bytes | None) -> bytes | None:
        if self.record["status"] != RoundStatus.CLOSED:
            return None
        digest = self.record.get("model_sha256", "")
        stored = self.check("closing model stored and intact", lambda: _artifact(self.store, digest, "closing model"))
        if stored is None or aggregate_data is None:
            return stored
        if self.plan.noise_mode is NoiseMode.CENTRAL and self.plan.noise_multiplier > 0:
            self.report.add(self.n, "closing model derived from the partial decryptions", True,
                            "not re-derivable: under central noise the leader adds the noise (trusted)")
            return stored

        def derived() -> str:
            derive_closing_model(self.plan, self.ledger, self.store, round_number=self.n, start=start,
                                 previous=previous)
            return f"from {', '.join(self.record.get('decrypted_by', []))}"
        self.check("closing model derived from the partial decryptions", derived)
        return stored

    def budget(self, closed_before: int) -> None:
        def booked() -> str:
            expected = epsilon_micro(self.plan.epsilon_after(closed_before + 1))
            got = int(self.record["epsilon_after_micro"])
            if abs(got - expected) > 1:
                raise _Failed(f"ledger {got} micro, accountant {expected} after {closed_before + 1} rounds")
            return f"{got} micro after {closed_before + 1} closed rounds"
        self.check("epsilon booked matches the accountant", booked)


def audit_task(ledger: LedgerPort, store: ArtifactStore, task_id: str) -> AuditReport:
    """Check every round of ``task_id`` against the artifacts and the rules; never raises for a failed check."""
    plan = TaskPlan.load(ledger, task_id)
    report = AuditReport(task_id)
    initial = plan.task["model"]["initial_weights_sha256"]
    start: bytes | None = None
    try:
        start = store.get(initial)
        report.add(0, "initial model stored and intact", True, initial[:16])
    except (ArtifactError, FedLedgerError) as err:
        report.add(0, "initial model stored and intact", False, str(err))
    previous: bytes | None = None
    closed, last_closed_epsilon = 0, 0
    for n in range(1, plan.task["current_round"] + 1):
        report.rounds = n
        audit = _RoundAudit(plan, ledger, store, report, ledger.get_round(task_id, n))
        audit.updates_intact()
        audit.budget(closed)
        audit.election()
        aggregate = audit.aggregate()
        audit.votes_and_quorum()
        if start is not None:
            model = audit.model(aggregate, start, previous)
            if model is not None:
                previous, start = start, model
        if audit.record["status"] == RoundStatus.CLOSED:
            closed += 1
            last_closed_epsilon = int(audit.record["epsilon_after_micro"])
    report.add(report.rounds, "task epsilon spent equals the last closed round's",
               plan.task["epsilon_spent_micro"] == last_closed_epsilon,
               f"{plan.task['epsilon_spent_micro']} vs {last_closed_epsilon}")
    return report


def ledger_findings(audit: LedgerAudit) -> list[Finding]:
    """The ledger checks (each org's copy of the chain, then the peers' agreement) as findings of round 0."""
    findings = [Finding(0, f"ledger at {report.source or 'a peer'}: {check.name}", check.passed,
                        check.reason or f"{check.checked} checked")
                for report in audit.chains for check in report.checks]
    findings += [Finding(0, f"ledger: every org's peer agrees: {check.name}", check.passed,
                         check.reason or f"{check.checked} checked up to height {audit.agreement.common_height}")
                 for check in audit.agreement.checks]
    return findings
