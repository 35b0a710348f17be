"""The README demo's privacy settings: one frozen place that `fedledger train` and its defaults read.

Chosen for record-level distributed DP on the bundled breast-cancer task (3 companies, 5 rounds):
each round is one DP-SGD step on the union of the companies' records, so a large sampling rate
and a large step keep the noise on the mean gradient small (``sigma * S / (q * N)``) in few steps.
The figures they give are in the README, with the command that measured them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PrivacyDefaults:
    """Defaults of a task's record-level DP when the user names none."""

    epsilon_budget: float = 3.0
    delta: float = 1e-5
    clip_norm: float = 4.0
    sample_rate: float = 0.25
    server_lr: float = 4.0


DEMO = PrivacyDefaults()
# DP-SGD steps a company takes each round in local mode, unless told otherwise.
LOCAL_STEPS = 10
