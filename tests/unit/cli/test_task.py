"""``fedledger task create``'s task file: its keys reach the TaskSpec, and a bad one fails before any transaction."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fedledger.cli.task import load_task_file
from fedledger.errors import PrivacyError, TaskFileError
from fedledger.fl.publish import TaskSpec
from fedledger.fl.rounds import NoiseMode, PrivacyUnit

TASK = '''
task-id = "q3"
model = "breast-cancer-logreg"
rounds = 5
participants = ["a-co", "b-co", "c-co"]
committee = ["a-co", "b-co", "c-co"]
dealer = "kmc"
threshold = 2
quorum = 2
min-participants = 2
epsilon-budget = 8.0
delta = 0.00001
clip-norm = 4.0
noise-multiplier = 2.0
'''


def task_spec(path: Path, privacy: str) -> TaskSpec:
    """The TaskSpec ``task create`` builds from a task file with the ``privacy`` lines added."""
    path.write_text(TASK + privacy)
    return TaskSpec(dataset="bundled", max_weight=4096, **load_task_file(path))


def test_the_privacy_keys_reach_the_task_spec(tmp_path: Path) -> None:
    spec = task_spec(tmp_path / "task.toml", 'privacy-unit = "record"\nnoise-mode = "local"\nsample-rate = 0.05\n'
                                             'steps-per-round = 20\nlabel-epsilon = 1.0\n')

    assert (spec.unit, spec.noise_mode, spec.sample_rate, spec.steps_per_round, spec.label_epsilon) == (
        PrivacyUnit.RECORD, NoiseMode.LOCAL, 0.05, 20, 1.0)


def test_a_sampled_company_unit_is_refused_when_the_file_is_read(tmp_path: Path) -> None:
    with pytest.raises(PrivacyError, match=re.escape("sample-rate must be 1 for privacy-unit company")):
        task_spec(tmp_path / "task.toml", 'privacy-unit = "company"\nnoise-mode = "central"\nsample-rate = 0.05\n')


def test_the_election_and_server_step_keys_reach_the_task_spec(tmp_path: Path) -> None:
    spec = task_spec(tmp_path / "task.toml", 'server-lr = 2.0\nserver-momentum = 0.5\nleader-window-seconds = 45\n'
                                             'millis-per-sample = 20\nreputation-gain = 10\n')

    assert (spec.server_lr, spec.server_momentum, spec.leader_window_seconds, spec.millis_per_sample,
            spec.reputation_gain) == (2.0, 0.5, 45, 20, 10)


def test_a_task_file_naming_an_aggregator_is_refused_as_an_unknown_key(tmp_path: Path) -> None:
    # Leaders are elected each round among the committee: a task file no longer names one.
    with pytest.raises(TaskFileError, match="unknown keys \\['aggregator'\\]"):
        task_spec(tmp_path / "task.toml", 'aggregator = "a-co"\n')
