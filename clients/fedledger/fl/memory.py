"""An in-memory ``LedgerPort``: the round records the protocol reads and writes, kept in dicts.

For the protocol's fast unit tests and for benchmarks that isolate HE's cost from Fabric's. It
keeps the chaincode's round rules that the protocol relies on (one update per company while the
round collects, only the leader records the aggregate, one vote per committee member, quorum ->
verified, only a verified round closes) and none of its identity checks: each ``view`` simply
acts as the company it names. The real rules live in ``chaincode/ledger`` and are tested there.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from fedledger.errors import FedLedgerError
from fedledger.fabric.ledger import RoundRecord, TaskRecord, UpdateRecord, VoteRecord


class MemoryLedgerError(FedLedgerError):
    """The in-memory ledger refused a write, as the chaincode would."""


@dataclass
class MemoryLedger:
    """Tasks, rounds, updates, votes and threshold keys, shared by every company's view."""

    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, bytes] = field(default_factory=dict)
    rounds: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    updates: dict[tuple[str, int], dict[str, dict[str, Any]]] = field(default_factory=dict)
    votes: dict[tuple[str, int], dict[str, dict[str, Any]]] = field(default_factory=dict)
    transactions: int = 0

    def view(self, company: str) -> MemoryLedgerView:
        return MemoryLedgerView(self, company)

    def create_task(self, genesis: Mapping[str, Any], *, publisher: str, public_key: bytes) -> None:
        """Record a task already dealt: its genesis and its key document (as ``DealKey`` would)."""
        from fedledger.fl.custody import Custody, load_task_key

        key = load_task_key(Custody(genesis["he"]["key_custody"]), public_key)
        he = {**genesis["he"], "paillier_n": format(int(key.public_key.n), "x"),
              "public_key_sha256": hashlib.sha256(public_key).hexdigest()}
        master = {"master": he["master"]} if "master" in he else {}
        self.tasks[genesis["task_id"]] = {**copy.deepcopy(dict(genesis)), "he": he, "publisher": publisher,
                                          "status": "active", "current_round": 0, **master}
        self.keys[genesis["task_id"]] = public_key


class MemoryLedgerView:
    """One company's view of a ``MemoryLedger``: a ``LedgerPort`` acting as ``company``."""

    def __init__(self, book: MemoryLedger, company: str) -> None:
        self._book, self.company = book, company

    def _tx(self) -> str:
        self._book.transactions += 1
        return f"memory-{self._book.transactions}"

    def _round(self, task_id: str, round_number: int) -> dict[str, Any]:
        try:
            return self._book.rounds[(task_id, round_number)]
        except KeyError:
            raise MemoryLedgerError(f"round {round_number} of task {task_id} has not been opened") from None

    def get_task(self, task_id: str) -> TaskRecord:
        return cast(TaskRecord, copy.deepcopy(self._book.tasks[task_id]))

    def get_threshold_key(self, task_id: str) -> bytes:
        return self._book.keys[task_id]

    def get_round(self, task_id: str, round_number: int) -> RoundRecord:
        return cast(RoundRecord, copy.deepcopy(self._round(task_id, round_number)))

    def list_updates(self, task_id: str, round_number: int) -> list[UpdateRecord]:
        updates = self._book.updates.get((task_id, round_number), {})
        return [cast(UpdateRecord, dict(updates[c])) for c in sorted(updates)]

    def list_votes(self, task_id: str, round_number: int) -> list[VoteRecord]:
        votes = self._book.votes.get((task_id, round_number), {})
        return [cast(VoteRecord, dict(votes[m])) for m in sorted(votes)]

    def open_round(self, task_id: str, round_number: int, *, epsilon_after: float) -> str:
        task = self._book.tasks[task_id]
        self._book.rounds[(task_id, round_number)] = {
            "task_id": task_id, "number": round_number, "status": "open", "leader": task["aggregator"],
            "epsilon_after_micro": int(epsilon_after * 1_000_000), "updates": 0, "valid_votes": 0,
            "invalid_votes": 0, "opened_at": 0}
        task["current_round"] = round_number
        return self._tx()

    def submit_update(self, task_id: str, round_number: int, *, artifact_sha256: str, size_bytes: int,
                      samples: int, compute_millis: int) -> str:
        record = self._round(task_id, round_number)
        if record["status"] not in ("open", "collecting"):
            raise MemoryLedgerError(f"round {round_number} is {record['status']}: updates only while it collects")
        updates = self._book.updates.setdefault((task_id, round_number), {})
        if self.company in updates:
            raise MemoryLedgerError(f"{self.company} already submitted its update for round {round_number}")
        tx = self._tx()
        updates[self.company] = {
            "task_id": task_id, "round": round_number, "company": self.company, "artifact_sha256": artifact_sha256,
            "size_bytes": size_bytes, "samples": samples, "compute_millis": compute_millis, "tx_id": tx,
            "submitted_at": 0}
        record["status"], record["updates"] = "collecting", len(updates)
        return tx

    def record_aggregate(self, task_id: str, round_number: int, *, included: Sequence[str],
                         aggregate_sha256: str) -> str:
        record = self._round(task_id, round_number)
        if self.company != record["leader"]:
            raise MemoryLedgerError(f"only the leader of round {round_number} ({record['leader']}) may record its "
                                    "aggregate")
        if record["status"] != "collecting":
            raise MemoryLedgerError(f"round {round_number} is {record['status']}")
        tx = self._tx()
        record["aggregate"] = {"sha256": aggregate_sha256, "included": list(included), "recorded_by": self.company,
                               "tx_id": tx}
        record["status"] = "aggregated"
        return tx

    def vote(self, task_id: str, round_number: int, *, valid: bool, reason: str = "") -> str:
        task, record = self._book.tasks[task_id], self._round(task_id, round_number)
        if self.company not in task["committee"]:
            raise MemoryLedgerError(f"{self.company} is not on the committee of task {task_id}")
        votes = self._book.votes.setdefault((task_id, round_number), {})
        if self.company in votes:
            raise MemoryLedgerError(f"{self.company} already voted on round {round_number}")
        if record["status"] not in ("aggregated", "verified"):
            raise MemoryLedgerError(f"round {round_number} is {record['status']}: no aggregate to vote on")
        tx = self._tx()
        votes[self.company] = {"task_id": task_id, "round": round_number, "member": self.company, "valid": valid,
                               "reason": reason, "tx_id": tx}
        record["valid_votes" if valid else "invalid_votes"] += 1
        if record["status"] == "aggregated" and record["valid_votes"] >= task["quorum"]:
            record["status"] = "verified"
        elif len(task["committee"]) - record["invalid_votes"] < task["quorum"]:
            record["status"] = "failed"
        return tx

    def close_round(self, task_id: str, round_number: int, *, model_sha256: str) -> str:
        record = self._round(task_id, round_number)
        if record["status"] != "verified":
            raise MemoryLedgerError(f"round {round_number} is {record['status']}: only a verified round closes")
        record["status"], record["model_sha256"] = "closed", model_sha256
        return self._tx()

    def fail_round(self, task_id: str, round_number: int, *, reason: str) -> str:
        record = self._round(task_id, round_number)
        record["status"], record["failure_reason"] = "failed", reason
        return self._tx()
