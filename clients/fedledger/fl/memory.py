"""An in-memory ``LedgerPort``: the round records the protocol reads and writes, kept in dicts.

For the protocol's fast unit tests and for benchmarks that isolate HE's cost from Fabric's. It
keeps the chaincode's round rules that the protocol relies on (the budget booked by the accountant,
the seed chain and verified VRF proofs, one update per company while the round collects, the fixed
set of updates and the stake-weighted ranking at collection close, leader slots, the exact
aggregate, counted votes with partial hashes, quorum -> verified, a close naming exactly t
decrypting members) and none of its identity checks or standing: each ``view`` simply acts as the
company it names. The real rules live in ``chaincode/ledger`` and are tested there.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from fedledger.crypto.sortition import Candidate, select, sortition_input
from fedledger.crypto.vrf import verify as vrf_verify
from fedledger.errors import CryptoError, FedLedgerError
from fedledger.fabric.ledger import (
    CompanyRecord,
    ElectionProofRecord,
    RoundRecord,
    TaskRecord,
    UpdateRecord,
    VoteRecord,
)
from fedledger.fl.rounds import dp_accountant
from fedledger.privacy import epsilon_micro


class MemoryLedgerError(FedLedgerError):
    """The in-memory ledger refused a write, as the chaincode would."""


_SEED_TAG = b"fedledger/round-seed/v1"


def next_seed(previous: bytes, round_number: int) -> bytes:
    """seed_n = SHA-256("fedledger/round-seed/v1" || seed_{n-1} || u64be(n)): the chaincode's chain."""
    return hashlib.sha256(_SEED_TAG + previous + round_number.to_bytes(8, "big")).digest()


@dataclass
class MemoryLedger:
    """Tasks, rounds, updates, votes, proofs and threshold keys, shared by every company's view.

    ``clock`` gives ledger time (seconds) to leader slots; tests pass their own.
    """

    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, bytes] = field(default_factory=dict)
    companies: dict[str, dict[str, Any]] = field(default_factory=dict)
    rounds: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    updates: dict[tuple[str, int], dict[str, dict[str, Any]]] = field(default_factory=dict)
    votes: dict[tuple[str, int], dict[str, dict[str, Any]]] = field(default_factory=dict)
    proofs: dict[tuple[str, int], dict[str, dict[str, Any]]] = field(default_factory=dict)
    transactions: int = 0
    clock: Callable[[], float] = time.time

    def view(self, company: str) -> MemoryLedgerView:
        return MemoryLedgerView(self, company)

    def register(self, company: str, *, vrf_key: bytes = b"") -> None:
        """Record a company (active) and the public half of its VRF key."""
        self.companies[company] = {"name": company, "status": "active", "stake": 0, "tokens": 0,
                                   "reputation": 1000, "vrf_key": vrf_key.hex()}

    def create_task(self, genesis: Mapping[str, Any], *, publisher: str, public_key: bytes) -> None:
        """Record a task already dealt: its genesis and its key document (as ``DealKey`` would)."""
        from fedledger.fl.custody import Custody, load_task_key

        key = load_task_key(Custody(genesis["he"]["key_custody"]), public_key)
        he = {**genesis["he"], "paillier_n": format(int(key.public_key.n), "x"),
              "public_key_sha256": hashlib.sha256(public_key).hexdigest()}
        master = {"master": he["master"]} if "master" in he else {}
        for name in (*genesis["committee"], *genesis["participants"]):
            self.companies.setdefault(name, {"name": name, "status": "active", "stake": 0, "tokens": 0,
                                             "reputation": 1000, "vrf_key": ""})
        self.tasks[genesis["task_id"]] = {**copy.deepcopy(dict(genesis)), "he": he, "publisher": publisher,
                                          "status": "active", "current_round": 0, "closed_rounds": 0,
                                          "epsilon_spent_micro": 0, **master,
                                          # Each member's stake in this task: its initial tokens (no rewards here).
                                          "stakes": {n: int(genesis["initial_tokens"])
                                                     for n in {*genesis["committee"], *genesis["participants"]}}}
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

    def get_company(self, name: str) -> CompanyRecord:
        try:
            return cast(CompanyRecord, copy.deepcopy(self._book.companies[name]))
        except KeyError:
            raise MemoryLedgerError(f"company {name} is not registered") from None

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

    def list_election_proofs(self, task_id: str, round_number: int) -> list[ElectionProofRecord]:
        proofs = self._book.proofs.get((task_id, round_number), {})
        return [cast(ElectionProofRecord, dict(proofs[m])) for m in sorted(proofs)]

    def open_round(self, task_id: str, round_number: int) -> str:
        task = self._book.tasks[task_id]
        if round_number != task["current_round"] + 1 or round_number > task["rounds"]:
            raise MemoryLedgerError(f"the next round of task {task_id} is {task['current_round'] + 1}")
        dp = task["dp"]
        booked = epsilon_micro(dp_accountant(dp).epsilon_after(task["closed_rounds"] + 1, delta=float(dp["delta"])))
        if booked > round(float(dp["epsilon_budget"]) * 1_000_000):
            raise MemoryLedgerError(f"round {round_number} would bring task {task_id} past its budget")
        previous = bytes.fromhex(task["seed0"]) if round_number == 1 else \
            bytes.fromhex(self._round(task_id, round_number - 1)["seed"])
        self._book.rounds[(task_id, round_number)] = {
            "task_id": task_id, "number": round_number, "status": "open",
            "seed": next_seed(previous, round_number).hex(), "epsilon_after_micro": booked, "updates": 0,
            "valid_votes": 0, "invalid_votes": 0, "standing": {}, "opened_at": int(self._book.clock())}
        task["current_round"] = round_number
        return self._tx()

    def submit_election_proof(self, task_id: str, round_number: int, *, proof: bytes) -> str:
        record = self._round(task_id, round_number)
        if record["status"] not in ("open", "collecting"):
            raise MemoryLedgerError(f"round {round_number} is {record['status']}: proofs only before collection closes")
        if self.company not in self._book.tasks[task_id]["committee"]:
            raise MemoryLedgerError(f"{self.company} is not on the committee of task {task_id}")
        alpha = sortition_input(task_id, round_number, bytes.fromhex(record["seed"]))
        try:
            output = vrf_verify(bytes.fromhex(self._book.companies[self.company]["vrf_key"]), alpha, proof)
        except CryptoError as err:
            raise MemoryLedgerError(f"the election proof of {self.company} does not verify: {err}") from None
        tx = self._tx()
        self._book.proofs.setdefault((task_id, round_number), {})[self.company] = {
            "task_id": task_id, "round": round_number, "member": self.company, "proof": proof.hex(),
            "output": output.hex(), "tx_id": tx}
        return tx

    def submit_update(self, task_id: str, round_number: int, *, artifact_sha256: str, size_bytes: int,
                      samples: int, compute_millis: int) -> str:
        task, record = self._book.tasks[task_id], self._round(task_id, round_number)
        if record["status"] not in ("open", "collecting"):
            raise MemoryLedgerError(f"round {round_number} is {record['status']}: updates only while it collects")
        if not 1 <= samples <= task["max_samples"] or not 0 <= compute_millis <= samples * task["millis_per_sample"]:
            raise MemoryLedgerError(f"{self.company} claims {samples} samples and {compute_millis} ms, past the task's "
                                    "max_samples or millis_per_sample")
        updates = self._book.updates.setdefault((task_id, round_number), {})
        if self.company in updates:
            raise MemoryLedgerError(f"{self.company} already submitted its update for round {round_number}")
        tx = self._tx()
        updates[self.company] = {
            "task_id": task_id, "round": round_number, "company": self.company, "artifact_sha256": artifact_sha256,
            "size_bytes": size_bytes, "samples": samples, "compute_millis": compute_millis, "tx_id": tx,
            "submitted_at": int(self._book.clock())}
        return tx

    def close_collection(self, task_id: str, round_number: int) -> str:
        task, record = self._book.tasks[task_id], self._round(task_id, round_number)
        updates = self._book.updates.get((task_id, round_number), {})
        if record["status"] not in ("open", "collecting") or len(updates) < task["min_participants"]:
            raise MemoryLedgerError(f"round {round_number} is {record['status']} with {len(updates)} update(s): "
                                    "collection cannot close")
        alpha = sortition_input(task_id, round_number, bytes.fromhex(record["seed"]))
        stakes = task["stakes"]
        candidates = [Candidate(m, bytes.fromhex(self._book.companies[m]["vrf_key"]), bytes.fromhex(p["proof"]),
                                stakes.get(m, 0))
                      for m, p in sorted(self._book.proofs.get((task_id, round_number), {}).items())
                      if self._book.companies[m]["status"] == "active" and stakes.get(m, 0) > 0]
        if not candidates:
            raise MemoryLedgerError(f"no committee member has proved for round {round_number}: none can lead it")
        selection = select(candidates, alpha=alpha, committee_size=len(candidates) - 1)
        ranking = [selection.leader, *selection.committee]
        record.update(status="collected", collected=sorted(updates), updates=len(updates), leader=ranking[0], election={
            "combined_seed": selection.seed.hex(), "ranking": ranking,
            "stakes": {c.company: c.stake for c in candidates}, "window_seconds": task["leader_window_seconds"],
            "closed_at": int(self._book.clock())})
        return self._tx()

    def record_aggregate(self, task_id: str, round_number: int, *, included: Sequence[str],
                         aggregate_sha256: str) -> str:
        record = self._round(task_id, round_number)
        if record["status"] != "collected":
            raise MemoryLedgerError(f"round {round_number} is {record['status']}")
        election = record["election"]
        if self.company not in election["ranking"]:
            raise MemoryLedgerError(f"{self.company} is not ranked in round {round_number}'s election")
        rank = election["ranking"].index(self.company)
        if int(self._book.clock()) < election["closed_at"] + rank * election["window_seconds"]:
            raise MemoryLedgerError(f"{self.company} is ranked {rank + 1}: its slot has not come")
        if sorted(included) != record["collected"] or len(set(included)) != len(included):
            raise MemoryLedgerError(f"the aggregate must include exactly {record['collected']}, not {list(included)}")
        tx = self._tx()
        election["failovers"] = [{"failed": f, "rank": i + 1, "successor": self.company, "at": int(self._book.clock()),
                                  "tx_id": tx} for i, f in enumerate(election["ranking"][:rank])]
        record["aggregate"] = {"sha256": aggregate_sha256, "included": list(record["collected"]),
                               "recorded_by": self.company, "tx_id": tx}
        record["status"], record["leader"] = "aggregated", self.company
        return tx

    def vote(self, task_id: str, round_number: int, *, valid: bool, reason: str = "",
             partial_sha256: str = "") -> str:
        task, record = self._book.tasks[task_id], self._round(task_id, round_number)
        if self.company not in task["committee"]:
            raise MemoryLedgerError(f"{self.company} is not on the committee of task {task_id}")
        votes = self._book.votes.setdefault((task_id, round_number), {})
        if self.company in votes:
            raise MemoryLedgerError(f"{self.company} already voted on round {round_number}")
        if record["status"] not in ("aggregated", "verified"):
            raise MemoryLedgerError(f"round {round_number} is {record['status']}: no aggregate to vote on")
        counted = self._book.companies[self.company]["status"] == "active"
        if partial_sha256 and not (valid and counted):
            raise MemoryLedgerError("only a counted valid vote may carry a partial decryption")
        tx = self._tx()
        votes[self.company] = {"task_id": task_id, "round": round_number, "member": self.company, "valid": valid,
                               "counted": counted, "reason": reason, "partial_sha256": partial_sha256, "tx_id": tx}
        # The chaincode writes only the vote and tallies the votes when the round is read; kept
        # tallied here, the record reads the same: verified at the quorum, and a rejected aggregate
        # stays aggregated until the publisher fails the round.
        if counted:
            record["valid_votes" if valid else "invalid_votes"] += 1
        if record["status"] == "aggregated" and record["valid_votes"] >= task["quorum"]:
            record["status"] = "verified"
        return tx

    def record_partial(self, task_id: str, round_number: int, *, partial_sha256: str) -> str:
        vote = self._book.votes.get((task_id, round_number), {}).get(self.company)
        if vote is None or not vote["valid"] or not vote["counted"] or vote["partial_sha256"]:
            raise MemoryLedgerError(f"{self.company} has no counted valid vote without a partial on round {round_number}")
        vote["partial_sha256"] = partial_sha256
        return self._tx()

    def close_round(self, task_id: str, round_number: int, *, model_sha256: str,
                    decrypted_by: Sequence[str]) -> str:
        task, record = self._book.tasks[task_id], self._round(task_id, round_number)
        if record["status"] != "verified":
            raise MemoryLedgerError(f"round {round_number} is {record['status']}: only a verified round closes")
        votes = self._book.votes.get((task_id, round_number), {})
        if task["he"]["key_custody"] == "escrow" and list(decrypted_by) != [task["master"]]:
            raise MemoryLedgerError(f"a round of escrow task {task_id} is decrypted by its master {task['master']} "
                                    f"alone, not {list(decrypted_by)}")
        needed = 1 if task["he"]["key_custody"] == "escrow" else task["he"]["threshold"]
        if len(set(decrypted_by)) != len(decrypted_by) or len(decrypted_by) != needed or \
                any(not votes.get(m, {}).get("partial_sha256") for m in decrypted_by):
            raise MemoryLedgerError(f"a close names {needed} members with recorded partials, not {list(decrypted_by)}")
        record.update(status="closed", model_sha256=model_sha256, decrypted_by=sorted(decrypted_by))
        task["closed_rounds"] += 1
        task["epsilon_spent_micro"] = record["epsilon_after_micro"]
        return self._tx()

    def fail_round(self, task_id: str, round_number: int, *, reason: str) -> str:
        record = self._round(task_id, round_number)
        if record["status"] in ("closed", "failed"):
            raise MemoryLedgerError(f"round {round_number} is {record['status']} and cannot be failed")
        record["status"], record["failure_reason"] = "failed", reason
        return self._tx()
