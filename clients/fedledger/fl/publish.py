"""Publishing a training task: its genesis on the ledger (the key is then dealt: ``fl.custody``).

The **publisher** (the coordinator) fixes the task: model, rounds, DP parameters and budget,
committee, quorum, leader, participants, key custody, and names the **dealer**, paper 003's key
management centre, which holds no other role in the task (the chaincode refuses a genesis where
it does). It stores the initial model in its own artifact store and records its hash. It never
sees any key share: the task awaits its key until the dealer deals it (``fl.custody.deal_key``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from fedledger.errors import PrivacyError
from fedledger.fabric.ledger import Genesis, HESpec, Ledger
from fedledger.fl.artifacts import ArtifactStore
from fedledger.fl.custody import Custody
from fedledger.fl.rounds import Description, NoiseMode, model_bytes


def _fixed(value: float) -> str:
    """A decimal for the ledger: a fixed-point string with at most 6 decimals, never a float."""
    text = format(Decimal(repr(float(value))).quantize(Decimal("0.000001")).normalize(), "f")
    return text


@dataclass(frozen=True)
class TaskSpec:
    """What a publisher decides about a task (see the chaincode's genesis for each field's rule)."""

    task_id: str
    model: str
    dataset: str
    rounds: int
    participants: tuple[str, ...]
    committee: tuple[str, ...]
    aggregator: str
    dealer: str
    threshold: int
    quorum: int
    min_participants: int
    max_weight: int
    epsilon_budget: float
    delta: float
    clip_norm: float
    noise_multiplier: float
    noise_mode: NoiseMode = NoiseMode.DISTRIBUTED
    key_bits: int = 2048
    custody: Custody = Custody.THRESHOLD
    master: str = ""
    initial_tokens: int = 1000
    reward_per_round: int = 100
    penalty: int = 50
    reputation_threshold: int = 500

    def __post_init__(self) -> None:
        # Task files give plain strings: hold the enums, and refuse an unknown value by name.
        for name, kind in (("noise_mode", NoiseMode), ("custody", Custody)):
            value = getattr(self, name)
            if value not in {str(v) for v in kind}:
                raise PrivacyError(f"{name.replace('_', '-')} must be one of {', '.join(kind)}, not {value!r}")
            object.__setattr__(self, name, kind(value))
        if self.clip_norm <= 0 or self.noise_multiplier < 0 or not 0 < self.delta < 1 or self.epsilon_budget <= 0:
            raise PrivacyError("clip norm and epsilon budget must be positive, noise multiplier not negative, "
                               "and delta in (0, 1)")

    def genesis(self, *, initial_model_sha256: str) -> Genesis:
        """The task's genesis document, as ``CreateTask`` takes it."""
        description = Description(self.model, self.dataset, self.max_weight, self.key_bits)
        he: HESpec = {"key_custody": str(self.custody), "threshold": self.threshold,
                      "committee_size": len(self.committee), "dealer": self.dealer}
        if self.custody is Custody.ESCROW:
            he["master"] = self.master
        return {
            "task_id": self.task_id,
            "model": {"description": description.to_json(), "initial_weights_sha256": initial_model_sha256},
            "rounds": self.rounds,
            "dp": {"epsilon_budget": _fixed(self.epsilon_budget), "delta": _fixed(self.delta),
                   "clip_norm": _fixed(self.clip_norm), "noise_multiplier": _fixed(self.noise_multiplier),
                   "noise_mode": str(self.noise_mode)},
            "he": he,
            "committee": list(self.committee),
            "quorum": self.quorum,
            "aggregator": self.aggregator,
            "participants": list(self.participants),
            "min_participants": self.min_participants,
            "seed0": secrets.token_hex(32),
            "initial_tokens": self.initial_tokens,
            "reward_per_round": self.reward_per_round,
            "penalty": self.penalty,
            "reputation_threshold": self.reputation_threshold,
        }


def publish_task(spec: TaskSpec, ledger: Ledger, store: ArtifactStore, *, initial_model: npt.ArrayLike) -> Genesis:
    """The publisher's step: keep the initial model, record the genesis (the task then awaits its key)."""
    initial_digest = store.put(model_bytes(np.asarray(initial_model, dtype=np.float32)))
    genesis = spec.genesis(initial_model_sha256=initial_digest)
    ledger.create_task(genesis)
    return genesis
