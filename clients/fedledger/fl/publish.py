"""Publishing a training task: its genesis on the ledger, its threshold key dealt to the committee.

The publisher acts as the trusted dealer of paper 000's threshold custody: it generates the
threshold Paillier key, stores the public part as an artifact (its hash goes into the task's
description, its modulus into ``he.paillier_n``), hands each committee member its share, and
keeps nothing. Each member then stores its own share in its organization's private data on the
ledger (``StoreKeyShare``), where only that member can read it back.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from fedledger.crypto import KeyShare, deal_threshold_key, dump_key_share, dump_threshold_key
from fedledger.errors import PrivacyError
from fedledger.fabric.ledger import Genesis, Ledger
from fedledger.fl.artifacts import ArtifactStore
from fedledger.fl.rounds import Description, model_bytes


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
    threshold: int
    quorum: int
    min_participants: int
    max_weight: int
    epsilon_budget: float
    delta: float
    clip_norm: float
    noise_multiplier: float
    noise_mode: str = "distributed"
    key_bits: int = 2048
    initial_tokens: int = 1000
    reward_per_round: int = 100
    penalty: int = 50
    reputation_threshold: int = 500

    def __post_init__(self) -> None:
        if self.noise_mode not in ("central", "distributed"):
            raise PrivacyError(f"noise mode must be central or distributed, not {self.noise_mode!r}")
        if self.clip_norm <= 0 or self.noise_multiplier < 0 or not 0 < self.delta < 1 or self.epsilon_budget <= 0:
            raise PrivacyError("clip norm and epsilon budget must be positive, noise multiplier not negative, "
                               "and delta in (0, 1)")


@dataclass(frozen=True)
class PublishedTask:
    """The genesis as recorded, and the committee's shares (to hand over, then forget)."""

    genesis: Genesis
    shares: dict[str, KeyShare]

    def share_bytes(self, member: str) -> bytes:
        return dump_key_share(self.shares[member])


def publish_task(spec: TaskSpec, ledger: Ledger, store: ArtifactStore, *,
                 initial_model: npt.ArrayLike) -> PublishedTask:
    """Deal the key, store the key and initial model as artifacts, and create the task on the ledger."""
    key, shares = deal_threshold_key(threshold=spec.threshold, parties=len(spec.committee), key_bits=spec.key_bits)
    key_digest = store.put(dump_threshold_key(key))
    initial_digest = store.put(model_bytes(np.asarray(initial_model, dtype=np.float32)))
    description = Description(spec.model, spec.dataset, spec.max_weight, key_digest)
    genesis: Genesis = {
        "task_id": spec.task_id,
        "model": {"description": description.to_json(), "initial_weights_sha256": initial_digest},
        "rounds": spec.rounds,
        "dp": {"epsilon_budget": _fixed(spec.epsilon_budget), "delta": _fixed(spec.delta),
               "clip_norm": _fixed(spec.clip_norm), "noise_multiplier": _fixed(spec.noise_multiplier),
               "noise_mode": spec.noise_mode},
        "he": {"paillier_n": format(int(key.public_key.n), "x"), "key_custody": "threshold",
               "threshold": spec.threshold, "committee_size": len(spec.committee)},
        "committee": list(spec.committee),
        "quorum": spec.quorum,
        "aggregator": spec.aggregator,
        "participants": list(spec.participants),
        "min_participants": spec.min_participants,
        "seed0": secrets.token_hex(32),
        "initial_tokens": spec.initial_tokens,
        "reward_per_round": spec.reward_per_round,
        "penalty": spec.penalty,
        "reputation_threshold": spec.reputation_threshold,
    }
    ledger.create_task(genesis)
    # Share i belongs to the i-th committee member, as TaskPlan.member_index expects.
    return PublishedTask(genesis, {member: shares[i] for i, member in enumerate(spec.committee)})


def store_own_share(ledger: Ledger, task_id: str, share: bytes, *, own_msp: str,
                    other_msps: Sequence[str]) -> str:
    """A committee member stores its share: endorsed by its own org (which keeps it) and one more."""
    others = [m for m in other_msps if m != own_msp]
    return ledger.store_key_share(task_id, share, endorsing_organizations=[own_msp, *others[:1]])
