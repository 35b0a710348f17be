"""The run's configuration: one frozen, typed object, read from Flower's run config in one place.

``fedledger train`` writes every key of it into ``flwr run --run-config``; a user running
``flwr run`` by hand may give any subset, and the rest take the defaults below (the same values
as ``[tool.flwr.app.config]`` in pyproject.toml, which a unit test keeps in step).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum

from fedledger.errors import FedLedgerError


class Partitioner(StrEnum):
    """How the demo splits a bundled dataset among the companies."""

    IID = "iid"
    DIRICHLET = "dirichlet"


class Protocol(StrEnum):
    """What a run's rounds do. FEDLEDGER: the task's protocol (DP, Paillier, committee, ledger).
    PLAIN_FEDAVG: a yardstick only, through the same nodes and Flower deployment: each company sends
    its plain local update in the clear to the coordinator, which averages it; no noise, no
    encryption, nothing recorded after the genesis. A node takes part only if its own node config
    says ``plain-baseline = "true"``."""

    FEDLEDGER = "fedledger"
    PLAIN_FEDAVG = "plain-fedavg"


# A company's consent to the plain-FedAvg yardstick, in its own node config (off unless given).
PLAIN_BASELINE_CONSENT = {"plain-baseline": "true"}


def consents_to_plain_baseline(node_config: Mapping[str, object]) -> bool:
    """Whether a node's config gives its company's consent to send plain updates for the yardstick."""
    return all(str(node_config.get(k, "")).lower() == v for k, v in PLAIN_BASELINE_CONSENT.items())


class RunConfigError(FedLedgerError):
    """A run-config value is missing, of the wrong type, or out of range."""


def _whole(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError("not a whole number")
    return int(value)


def _real(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("not a number")
    return float(value)


_PARSERS: dict[str, Callable[[object], object]] = {"int": _whole, "float": _real, "str": str,
                                                  "Partitioner": lambda v: Partitioner(str(v)),
                                                  "Protocol": lambda v: Protocol(str(v))}


@dataclass(frozen=True)
class RunConfig:
    """What the coordinator needs to run a published task (keys in kebab-case on the command line).

    ``lr`` is the companies' local learning rate (plain SGD at company level, Opacus's DP-SGD in
    local mode); ``server-lr`` scales the decrypted average into the model: 1 is FedAvg, and for
    record-level distributed DP it is DP-SGD's step size on the noised mean gradient;
    ``server-momentum`` adds heavy-ball momentum to that step (0: none).
    ``data-path`` is where the coordinator finds the full dataset to score the model on (the
    companies name theirs in their node config); empty for a dataset bundled in a package.
    The privacy settings are not here: they are the task's, on the ledger. ``protocol`` is
    ``fedledger`` but for a measurement's plain-FedAvg yardstick (see :class:`Protocol`).
    """

    home: str = ""
    task_id: str = ""
    metrics_json: str = ""
    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 0.05
    seed: int = 0
    partitioner: Partitioner = Partitioner.IID
    alpha: float = 0.5
    round_timeout: float = 300.0
    connect_timeout: float = 60.0
    server_lr: float = 1.0
    server_momentum: float = 0.0
    data_path: str = ""
    protocol: Protocol = Protocol.FEDLEDGER

    def __post_init__(self) -> None:
        if self.local_epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.round_timeout <= 0 \
                or self.connect_timeout <= 0 or self.server_lr <= 0 or self.alpha <= 0:
            raise RunConfigError("local-epochs, batch-size, lr, server-lr, alpha, round-timeout and connect-timeout "
                                 "must be positive")
        if not 0 <= self.server_momentum < 1:
            raise RunConfigError(f"server-momentum must be in [0, 1), got {self.server_momentum}")

    @classmethod
    def from_flower(cls, values: Mapping[str, object]) -> RunConfig:
        """Parse Flower's run config (kebab-case keys); unknown keys are refused by name."""
        known = {f.name.replace("_", "-"): f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise RunConfigError(f"unknown run-config keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        parsed: dict[str, object] = {}
        for key, value in values.items():
            field = known[key]
            try:
                parsed[field.name] = _PARSERS[str(field.type)](value)
            except (TypeError, ValueError) as err:
                raise RunConfigError(f"run-config {key} = {value!r} is invalid: {err}") from None
        return cls(**parsed)  # type: ignore[arg-type]

    def to_flower(self) -> dict[str, int | float | str]:
        """Every key, kebab-case, as ``flwr run --run-config`` takes them."""
        out: dict[str, int | float | str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name.replace("_", "-")] = str(value) if isinstance(value, StrEnum) else value
        return out
