"""Publishing a training task: its genesis on the ledger (the key is then dealt: ``fl.custody``).

The **publisher** (the coordinator) fixes the task: model, rounds, DP parameters and budget,
committee, quorum, participants, key custody, the leaders' election window, and names the **dealer**, paper 003's key
management centre, which holds no other role in the task (the chaincode refuses a genesis where
it does). It stores the initial model in its own artifact store and records its hash. It never
sees any key share: the task awaits its key until the dealer deals it (``fl.custody.deal_key``).
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass, fields
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from fedledger.crypto.paillier import MIN_TEST_KEY_BITS
from fedledger.errors import PrivacyError, TaskSpecError
from fedledger.fabric.ledger import Genesis, HESpec, Ledger
from fedledger.fl.artifacts import ArtifactStore
from fedledger.fl.custody import Custody
from fedledger.fl.rounds import Description, NoiseMode, PrivacyUnit, model_bytes

# The noise modes each privacy unit admits (the chaincode's Genesis.validate, in its words).
_MODES = {PrivacyUnit.COMPANY: (NoiseMode.CENTRAL, NoiseMode.DISTRIBUTED),
          PrivacyUnit.RECORD: (NoiseMode.DISTRIBUTED, NoiseMode.LOCAL)}
_MAX_STEPS_PER_ROUND = 10_000
# The chaincode's genesis bounds (chaincode/ledger/tasks.go): names, rounds, counts (its maxCount), and
# decimals whose whole part it parses as a uint32.
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_MAX_ROUNDS = 100_000
_MAX_COUNT = 1 << 40
_MAX_DECIMAL = 2**32 - 1
# Paillier keys past this take the dealer hours to generate: a larger value is a typo, not a choice.
_MAX_KEY_BITS = 16_384


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
    server_lr: float = 1.0
    server_momentum: float = 0.0
    leader_window_seconds: int = 30
    millis_per_sample: int = 1000
    initial_tokens: int = 1000
    reward_per_round: int = 100
    penalty: int = 50
    reputation_threshold: int = 500
    reputation_gain: int = 25

    def __post_init__(self) -> None:
        # Task files give plain strings: hold the enums, and refuse an unknown value by its task-file key.
        for name, key, kind in (("noise_mode", "noise-mode", NoiseMode), ("unit", "privacy-unit", PrivacyUnit),
                                ("custody", "key-custody", Custody)):
            value = getattr(self, name)
            if value not in {str(v) for v in kind}:
                raise PrivacyError(f"{key} must be one of {', '.join(kind)}, not {value!r}")
            object.__setattr__(self, name, kind(value))
        self._check_genesis()
        for key, value, fits, rule in (("clip-norm", self.clip_norm, self.clip_norm > 0, "positive"),
                                       ("epsilon-budget", self.epsilon_budget, self.epsilon_budget > 0, "positive"),
                                       ("noise-multiplier", self.noise_multiplier, self.noise_multiplier >= 0,
                                        "0 or positive"),
                                       ("delta", self.delta, 0 < self.delta < 1, "above 0 and below 1")):
            if not fits:
                raise PrivacyError(f"{key} must be {rule}, not {value!r}")
        self._check_accounting()

    def _check_genesis(self) -> None:
        """Refuse names, counts and numbers the chaincode's genesis would, each named by its task-file key.

        The chaincode has the last word on every bound; this refuses before any transaction what is
        wrong whatever its bounds are today: a malformed name, a count that does not fit the committee,
        a negative or huge whole number, a number that is NaN or infinite.
        """
        for key, names in (("task-id", [self.task_id]), ("dealer", [self.dealer]), ("participants", self.participants),
                           ("committee", self.committee), ("master", [self.master] if self.master else [])):
            for name in names:
                if not _NAME.fullmatch(name):
                    raise TaskSpecError(key, f"holds the name {name!r}: use 1-64 of a-z 0-9 . _ -, starting with a "
                                             f"letter or digit")
        for key, names in (("participants", self.participants), ("committee", self.committee)):
            if not names:
                raise TaskSpecError(key, "must name at least one company")
            if len(set(names)) != len(names):
                twice = sorted(n for n in set(names) if names.count(n) > 1)
                raise TaskSpecError(key, f"lists a company twice: {twice}")
        committee, participants = len(self.committee), len(self.participants)
        for key, value, low, high, bound in (
                ("rounds", self.rounds, 1, _MAX_ROUNDS, ""),
                ("threshold", self.threshold, 1, committee, " (the committee's size)"),
                ("quorum", self.quorum, 1, committee, " (the committee's size)"),
                ("min-participants", self.min_participants, 1, participants, " (the number of participants)"),
                ("key-bits", self.key_bits, MIN_TEST_KEY_BITS, _MAX_KEY_BITS, "")):
            if not low <= value <= high:
                raise TaskSpecError(key, f"must be a whole number from {low} to {high}{bound}, not {value}")
        if self.custody is Custody.THRESHOLD and self.quorum > self.threshold:
            raise TaskSpecError("quorum", f"must not exceed the threshold ({self.threshold}) under threshold custody: "
                                          f"every valid vote carries a partial decryption, not {self.quorum}")
        if self.key_bits % 2:
            raise TaskSpecError("key-bits", f"must be even (two primes of equal size), not {self.key_bits}")
        for spec_field in fields(self):
            key, value = spec_field.name.replace("_", "-"), getattr(self, spec_field.name)
            if spec_field.type == "int" and not 0 <= value <= _MAX_COUNT:
                raise TaskSpecError(key, f"must be a whole number from 0 to {_MAX_COUNT}, not {value}")
            # The ledger records decimals as fixed-point strings: no NaN, no infinity, a uint32 whole part.
            if spec_field.type == "float" and not (math.isfinite(value) and abs(value) <= _MAX_DECIMAL):
                raise PrivacyError(f"{key} must be a finite number no larger than {_MAX_DECIMAL}, not {value!r}")

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
        description = Description(self.model, self.dataset, self.max_weight, self.key_bits, self.server_lr,
                                  self.server_momentum)
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
            "participants": list(self.participants),
            "min_participants": self.min_participants,
            "seed0": secrets.token_hex(32),
            "leader_window_seconds": self.leader_window_seconds,
            "max_samples": self.max_weight,
            "millis_per_sample": self.millis_per_sample,
            "initial_tokens": self.initial_tokens,
            "reward_per_round": self.reward_per_round,
            "penalty": self.penalty,
            "reputation_threshold": self.reputation_threshold,
            "reputation_gain": self.reputation_gain,
        }


def publish_task(spec: TaskSpec, ledger: Ledger, store: ArtifactStore, *, initial_model: npt.ArrayLike) -> Genesis:
    """The publisher's step: keep the initial model, record the genesis (the task then awaits its key)."""
    initial_digest = store.put(model_bytes(np.asarray(initial_model, dtype=np.float32)))
    genesis = spec.genesis(initial_model_sha256=initial_digest)
    ledger.create_task(genesis)
    return genesis
