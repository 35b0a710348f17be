"""Publishing a task: the privacy fields a TaskSpec accepts, and the genesis ``dp`` it writes."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from fedledger.errors import PrivacyError, TaskSpecError
from fedledger.fl.custody import Custody
from fedledger.fl.publish import TaskSpec
from fedledger.fl.rounds import Description, NoiseMode, PrivacyUnit

COMPANIES = ("a-co", "b-co", "c-co")


def spec(**privacy: Any) -> TaskSpec:
    """A task for three companies with ``privacy`` overriding the defaults."""
    return TaskSpec(task_id="t1", model="breast-cancer-logreg", dataset="bundled", rounds=3, participants=COMPANIES,
                    committee=COMPANIES, dealer="kmc", threshold=2, quorum=2, min_participants=2,
                    max_weight=100, epsilon_budget=8.0, delta=1e-5, clip_norm=4.0, noise_multiplier=1.1, **privacy)


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("an unknown unit", {"unit": "patient"}, "privacy-unit must be one of record, company, not 'patient'"),
    ("company unit, local noise", {"unit": "company", "noise_mode": "local"},
     "noise-mode must be central or distributed for privacy-unit company, not 'local'"),
    ("record unit, central noise", {"unit": "record", "noise_mode": "central"},
     "noise-mode must be distributed or local for privacy-unit record, not 'central'"),
    ("company unit, sampled", {"unit": "company", "noise_mode": "central", "sample_rate": 0.5},
     ("sample-rate must be 1 for privacy-unit company: every company takes part in every round, so there is no "
      "sampling to amplify privacy; not 0.5")),
    ("record unit, rate 0", {"sample_rate": 0.0}, "sample-rate must be above 0 and at most 1 for privacy-unit record"),
    ("record unit, a rate the ledger sees as 0", {"sample_rate": 4e-7},
     ("sample-rate must be above 0 and at most 1 for privacy-unit record (rates below 0.000001 count as 0), "
      "not 4e-07")),
    ("record unit, rate above 1", {"sample_rate": 1.5}, "sample-rate must be above 0 and at most 1"),
    ("distributed noise, two steps", {"steps_per_round": 2},
     "steps-per-round must be 1 for noise-mode distributed, not 2"),
    ("central noise, no step", {"unit": "company", "noise_mode": "central", "steps_per_round": 0},
     "steps-per-round must be 1 for noise-mode central, not 0"),
    ("local noise, no step", {"noise_mode": "local", "steps_per_round": 0},
     "steps-per-round must be a whole number from 1 to 10000 for noise-mode local, not 0"),
    ("local noise, too many steps", {"noise_mode": "local", "steps_per_round": 10_001},
     "steps-per-round must be a whole number from 1 to 10000 for noise-mode local, not 10001"),
    ("local noise, a fraction of a step", {"noise_mode": "local", "steps_per_round": 2.5},
     "steps-per-round must be a whole number from 1 to 10000"),
    ("negative label epsilon", {"label_epsilon": -0.5},
     "label-epsilon must be 0 (no label noise) or positive, not -0.5"),
]


@pytest.mark.parametrize(("privacy", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_a_combination_the_chaincode_refuses_is_refused_before_any_transaction(privacy: dict[str, Any],
                                                                               message: str) -> None:
    with pytest.raises(PrivacyError, match=re.escape(message)):
        spec(**privacy)


def test_the_defaults_write_record_unit_full_participation_one_step_and_no_label_noise() -> None:
    dp = spec().genesis(initial_model_sha256="0" * 64)["dp"]

    assert dp == {"epsilon_budget": "8", "delta": "0.00001", "clip_norm": "4", "noise_multiplier": "1.1",
                  "noise_mode": "distributed", "unit": "record", "sample_rate": "1", "steps_per_round": 1,
                  "label_epsilon": "0"}


def test_task_file_strings_become_enums_and_decimals_become_fixed_point_strings() -> None:
    task = spec(unit="record", noise_mode="local", sample_rate=0.05, steps_per_round=20, label_epsilon=1.5)

    dp = task.genesis(initial_model_sha256="0" * 64)["dp"]

    assert task.unit is PrivacyUnit.RECORD and task.noise_mode is NoiseMode.LOCAL
    assert (dp["unit"], dp["noise_mode"], dp["sample_rate"], dp["steps_per_round"], dp["label_epsilon"]) == (
        "record", "local", "0.05", 20, "1.5")


@pytest.mark.parametrize("mode", ["central", "distributed"])
def test_the_company_unit_takes_every_company_in_every_round(mode: str) -> None:
    dp = spec(unit="company", noise_mode=mode, sample_rate=1).genesis(initial_model_sha256="0" * 64)["dp"]

    assert (dp["unit"], dp["noise_mode"], dp["sample_rate"], dp["steps_per_round"]) == ("company", mode, "1", 1)


def test_the_edges_the_chaincode_accepts_are_accepted() -> None:
    dp = spec(noise_mode="local", sample_rate=1e-6, steps_per_round=10_000).genesis(initial_model_sha256="0" * 64)["dp"]

    assert (dp["sample_rate"], dp["steps_per_round"]) == ("0.000001", 10_000)


def test_a_label_epsilon_too_small_for_the_ledger_is_written_as_0_not_minus_0() -> None:
    dp = spec(label_epsilon=-1e-9).genesis(initial_model_sha256="0" * 64)["dp"]

    assert dp["label_epsilon"] == "0"


def test_the_genesis_elects_its_leaders_and_bounds_claims_instead_of_naming_an_aggregator() -> None:
    task = spec(leader_window_seconds=45, millis_per_sample=20, reputation_gain=10)

    genesis = task.genesis(initial_model_sha256="0" * 64)

    assert "aggregator" not in genesis
    # An update claims at most max-weight samples (the weight cap of the sum), each at most millis-per-sample.
    assert (genesis["leader_window_seconds"], genesis["max_samples"], genesis["millis_per_sample"],
            genesis["reputation_gain"]) == (45, 100, 20, 10)


def test_the_server_step_is_part_of_the_tasks_description_on_the_ledger() -> None:
    description = Description.from_json(spec(server_lr=2.5, server_momentum=0.9).genesis(
        initial_model_sha256="0" * 64)["model"]["description"])

    assert (description.server_lr, description.server_momentum) == (2.5, 0.9)
    step = description.server_step()
    assert (step.lr, step.momentum, step.previous) == (2.5, 0.9, None)
    defaults = Description.from_json(spec().genesis(initial_model_sha256="0" * 64)["model"]["description"])
    assert (defaults.server_lr, defaults.server_momentum) == (1.0, 0.0)  # FedAvg


def test_a_quorum_above_the_threshold_is_refused_under_threshold_custody_only() -> None:
    with pytest.raises(TaskSpecError, match=re.escape("must not exceed the threshold (2) under threshold custody")):
        dataclasses.replace(spec(), quorum=3)

    escrow = dataclasses.replace(spec(), quorum=3, custody=Custody.ESCROW, master="acme")
    assert escrow.quorum == 3
