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
from fedledger.fl.rounds import Description, NoiseMode, PrivacyUnit, model_bytes

# The noise modes each privacy unit admits (the chaincode's Genesis.validate, in its words).
_MODES = {PrivacyUnit.COMPANY: (NoiseMode.CENTRAL, NoiseMode.DISTRIBUTED),
          PrivacyUnit.RECORD: (NoiseMode.DISTRIBUTED, NoiseMode.LOCAL)}
_MAX_STEPS_PER_ROUND = 10_000


def _fixed(value: float) -> str:
    """A decimal for the ledger: a fixed-point string with at most 6 decimals, never a float."""
    # Adding 0 turns a -0 (a tiny negative rounded away) into the 0 the chaincode parses.
    text = format((Decimal(repr(float(value))).quantize(Decimal("0.000001")) + 0).normalize(), "f")
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
    unit: PrivacyUnit = PrivacyUnit.RECORD
    sample_rate: float = 1.0
    steps_per_round: int = 1
    label_epsilon: float = 0.0
    key_bits: int = 2048
    custody: Custody = Custody.THRESHOLD
    master: str = ""
    initial_tokens: int = 1000
    reward_per_round: int = 100
    penalty: int = 50
    reputation_threshold: int = 500

    def __post_init__(self) -> None:
        # Task files give plain strings: hold the enums, and refuse an unknown value by its task-file key.
        for name, key, kind in (("noise_mode", "noise-mode", NoiseMode), ("unit", "privacy-unit", PrivacyUnit),
                                ("custody", "key-custody", Custody)):
            value = getattr(self, name)
            if value not in {str(v) for v in kind}:
                raise PrivacyError(f"{key} must be one of {', '.join(kind)}, not {value!r}")
            object.__setattr__(self, name, kind(value))
        if self.clip_norm <= 0 or self.noise_multiplier < 0 or not 0 < self.delta < 1 or self.epsilon_budget <= 0:
            raise PrivacyError("clip norm and epsilon budget must be positive, noise multiplier not negative, "
                               "and delta in (0, 1)")
        self._check_accounting()

    def _check_accounting(self) -> None:
        """Refuse what the chaincode would, in its order, so a bad task file fails before any transaction."""
        if Decimal(_fixed(self.label_epsilon)) < 0:
            raise PrivacyError(f"label-epsilon must be 0 (no label noise) or positive, not {self.label_epsilon}")
        modes = _MODES[self.unit]
        if self.noise_mode not in modes:
            raise PrivacyError(f"noise-mode must be {' or '.join(modes)} for privacy-unit {self.unit}, "
                               f"not {str(self.noise_mode)!r}")
        # Judge the rate the ledger will see: _fixed keeps 6 decimals, so a rate below 0.000001 is 0.
        rate = Decimal(_fixed(self.sample_rate))
        if self.unit is PrivacyUnit.COMPANY and rate != 1:
            raise PrivacyError(f"sample-rate must be 1 for privacy-unit company: every company takes part in every "
                               f"round, so there is no sampling to amplify privacy; not {self.sample_rate}")
        if not 0 < rate <= 1:
            raise PrivacyError(f"sample-rate must be above 0 and at most 1 for privacy-unit record "
                               f"(rates below 0.000001 count as 0), not {self.sample_rate}")
        steps = self.steps_per_round
        whole = isinstance(steps, int) and not isinstance(steps, bool)
        if self.noise_mode is NoiseMode.LOCAL:
            if not (whole and 1 <= steps <= _MAX_STEPS_PER_ROUND):
                raise PrivacyError(f"steps-per-round must be a whole number from 1 to {_MAX_STEPS_PER_ROUND} "
                                   f"for noise-mode local, not {steps!r}")
        elif not (whole and steps == 1):
            # One noised sum per round: there are no further steps to compose.
            raise PrivacyError(f"steps-per-round must be 1 for noise-mode {self.noise_mode}, not {steps!r}")

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
                   "noise_mode": str(self.noise_mode), "unit": str(self.unit),
                   "sample_rate": _fixed(self.sample_rate), "steps_per_round": int(self.steps_per_round),
                   "label_epsilon": _fixed(self.label_epsilon)},
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
