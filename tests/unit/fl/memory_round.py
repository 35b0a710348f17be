"""A published, dealt task on the in-memory ledger, and a round's protocol steps party by party (for the fl tests).

Each step acts as its party: its own ledger view and artifact store, the bytes handed over as
arguments where a deployment's messages would carry them. Ledger time is a ``LedgerTime`` the tests
move by hand, so leader slots never sleep for real.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy.typing as npt

from fedledger.crypto import KeyShare
from fedledger.crypto.vrf import VrfKeyPair
from fedledger.fabric.ledger import RoundRecord
from fedledger.fl.artifacts import DirectoryStore
from fedledger.fl.memory import MemoryLedger, MemoryLedgerView
from fedledger.fl.publish import TaskSpec
from fedledger.fl.rounds import (
    AggregateReceipt,
    RoundResult,
    ServerStep,
    TaskPlan,
    Verdict,
    close_collection,
    contribute,
    finish,
    lead,
    open_round,
    stand_for_leader,
    verify,
)

COMPANIES = ("a-co", "b-co", "c-co")
PUBLISHER = "coord"
DEALER = "kmc"


def task_spec(**changes: Any) -> TaskSpec:
    """The tests' task: the three companies are its participants and committee, a 2-of-3 key of 512 bits."""
    fields: dict[str, Any] = {
        "task_id": "t1", "model": "breast-cancer-logreg", "dataset": "bundled", "rounds": 3,
        "participants": COMPANIES, "committee": COMPANIES, "dealer": DEALER, "threshold": 2, "quorum": 2,
        "min_participants": 2, "max_weight": 100, "epsilon_budget": 50.0, "delta": 1e-5, "clip_norm": 1.0,
        "noise_multiplier": 1.0, "key_bits": 512, **changes}
    return TaskSpec(**fields)


@dataclass
class LedgerTime:
    """A clock for the ledger and the leaders alike; ``sleep`` records how long it was asked to wait, and waits."""

    now: float = 1_000.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class MemoryTask:
    """Everyone's handle on one task: the shared ledger, the plan, each party's store, VRF key and key share."""

    book: MemoryLedger
    plan: TaskPlan
    stores: dict[str, DirectoryStore]
    vrf_keys: dict[str, VrfKeyPair]
    shares: dict[str, KeyShare]
    time: LedgerTime

    @classmethod
    def publish(cls, spec: TaskSpec, key_document: bytes, root: Path, *, shares: Sequence[KeyShare] = (),
                initial_model_sha256: str = "0" * 64) -> MemoryTask:
        """Record every company with a VRF key, then the task with its dealt key (``shares`` in committee order)."""
        time = LedgerTime()
        book = MemoryLedger(clock=time)
        vrf_keys = {c: VrfKeyPair.from_secret_key(bytes([i + 1]) * 32) for i, c in enumerate(spec.committee)}
        for company in sorted({*spec.participants, *spec.committee}):
            book.register(company, vrf_key=vrf_keys[company].public_key if company in vrf_keys else b"")
        book.create_task(spec.genesis(initial_model_sha256=initial_model_sha256), publisher=PUBLISHER,
                         public_key=key_document)
        plan = TaskPlan.load(book.view(PUBLISHER), spec.task_id)
        stores = {p: DirectoryStore(root / p) for p in (*spec.participants, *spec.committee, PUBLISHER)}
        return cls(book, plan, stores, vrf_keys, dict(zip(spec.committee, shares)), time)

    def ledger(self, party: str) -> MemoryLedgerView:
        return self.book.view(party)

    def round(self, n: int) -> dict[str, Any]:
        """Round ``n`` as the ledger holds it (the live record, for assertions)."""
        return self.book.rounds[(self.plan.task_id, n)]

    # --- the protocol's steps, in their order ---------------------------------------------------
    def open(self, n: int = 1, *, candidates: Sequence[str] | None = None) -> None:
        """The publisher opens round ``n``; each of ``candidates`` (the committee) stands for leader."""
        open_round(self.plan, self.ledger(PUBLISHER), n)
        for member in self.plan.committee if candidates is None else candidates:
            stand_for_leader(self.plan, self.ledger(member), self.vrf_keys[member], round_number=n)

    def contribute(self, n: int, vectors: Mapping[str, npt.ArrayLike], *, samples: int = 10) -> dict[str, bytes]:
        """Each company's encrypted update, recorded; returns the ciphertexts as relayed."""
        return {c: contribute(self.plan, self.ledger(c), self.stores[c], company=c, round_number=n, update=v,
                              samples=samples, compute_millis=1).data for c, v in vectors.items()}

    def close_collection(self, n: int = 1) -> RoundRecord:
        return close_collection(self.plan, self.ledger(PUBLISHER), n)

    def ranking(self, n: int = 1) -> list[str]:
        return list(self.round(n)["election"]["ranking"])

    def lead(self, n: int, updates: Mapping[str, bytes], *, company: str | None = None) -> AggregateReceipt:
        """``company`` (the first ranked by default) records the aggregate, waiting on ledger time for its slot."""
        leader = company or self.ranking(n)[0]
        return lead(self.plan, self.ledger(leader), self.stores[leader], company=leader, round_number=n,
                    updates=updates, clock=self.time, sleep=self.time.sleep)

    def verify(self, member: str, n: int, updates: Mapping[str, bytes], aggregate: bytes, *,
               decrypt: bool = True) -> Verdict:
        """``member``'s vote on the aggregate, with its partial decryption when ``decrypt`` (threshold custody)."""
        return verify(self.plan, self.ledger(member), self.stores[member], member=member, round_number=n,
                      updates=updates, aggregate_data=aggregate, share=self.shares.get(member) if decrypt else None)

    def verify_all(self, n: int, updates: Mapping[str, bytes], aggregate: bytes, *,
                   voters: Sequence[str] | None = None, decrypt: bool = True) -> dict[str, Verdict]:
        """Every voter's verdict (the whole committee by default)."""
        return {m: self.verify(m, n, updates, aggregate, decrypt=decrypt)
                for m in (self.plan.committee if voters is None else voters)}

    def finish(self, n: int, aggregate: bytes, partials: Mapping[str, bytes], *,
               global_model: npt.ArrayLike, leader: str | None = None, step: ServerStep | None = None) -> RoundResult:
        """The leader (the one that recorded the aggregate) combines the partials and closes the round."""
        leader = leader or str(self.round(n)["leader"])
        return finish(self.plan, self.ledger(leader), self.stores[leader], round_number=n, global_model=global_model,
                      aggregate_data=aggregate, partials=partials, step=step)

    def run_round(self, n: int, vectors: Mapping[str, npt.ArrayLike], *, global_model: npt.ArrayLike,
                  samples: int = 10) -> RoundResult:
        """A whole round, every member voting valid with its partial: open to close."""
        self.open(n)
        updates = self.contribute(n, vectors, samples=samples)
        self.close_collection(n)
        aggregate = self.lead(n, updates).data
        verdicts = self.verify_all(n, updates, aggregate)
        assert all(v.valid for v in verdicts.values()), {m: v.reason for m, v in verdicts.items()}
        partials = {m: v.partial for m, v in verdicts.items() if v.partial}
        return self.finish(n, aggregate, partials, global_model=global_model)
