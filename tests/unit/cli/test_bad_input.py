"""Bad input to the ``fedledger`` command: one line saying what is wrong, exit code 1, never a traceback.

Every case here fails before any network access: the command is run with a ``--home`` that holds no
network, so a case that got as far as connecting would fail differently (``not a party home``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from fedledger.cli.app import EXIT_BUG, EXIT_ERROR, EXIT_USAGE, main

# The task file the other CLI tests read, valid as it is.
from .test_task import TASK as GOOD_TASK



def toml(old: str, new: str) -> Callable[[Path], Path]:
    """A task file: the good one with ``old`` replaced by ``new``."""
    def write(directory: Path) -> Path:
        assert old in GOOD_TASK
        path = directory / "task.toml"
        path.write_text(GOOD_TASK.replace(old, new))
        return path
    return write


def as_json(**changes: object) -> Callable[[Path], Path]:
    """The good task file as JSON, with ``changes`` (keys with ``_`` for ``-``)."""
    def write(directory: Path) -> Path:
        document = tomllib.loads(GOOD_TASK) | {k.replace("_", "-"): v for k, v in changes.items()}
        path = directory / "task.json"
        path.write_text(json.dumps(document))  # NaN and Infinity as JSON's extensions write them
        return path
    return write


def raw(name: str, data: bytes) -> Callable[[Path], Path]:
    def write(directory: Path) -> Path:
        (directory / name).write_bytes(data)
        return directory / name
    return write


def directory(directory: Path) -> Path:
    (directory / "task.toml").mkdir()
    return directory / "task.toml"


def missing(directory: Path) -> Path:
    return directory / "nowhere.toml"


# (case, how to make the file, what the one line must say after "fedledger: task file <path>: ")
CASES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("missing file", missing, "does not exist"),
    ("a directory", directory, "is a directory, not a task file"),
    ("binary, not UTF-8", raw("task.toml", b"\xff\xfe\x00\x01binary"), "is not UTF-8 text (byte 0 is 0xff)"),
    ("empty", raw("task.toml", b""), "is empty; it needs at least the keys task-id, model, rounds"),
    ("only blanks", raw("task.toml", b"  \n\n"), "is empty"),
    ("TOML that does not parse", raw("task.toml", b"rounds = = 5\n"), "is not valid TOML: Invalid value"),
    ("JSON that does not parse", raw("task.json", b'{"rounds":'), "is not valid JSON: Expecting value"),
    ("a JSON array", raw("task.json", b"[1, 2]"), "must hold one JSON object of task keys, not a list"),
    ("a JSON string", raw("task.json", b'"rounds"'), "must hold one JSON object of task keys, not a string"),
    ("JSON nested past Python's stack", raw("task.json", b"[" * 100_000 + b"]" * 100_000), "is not valid JSON"),
    ("an unknown key", toml("rounds = 5", "rounds = 5\nround = 6"), "unknown keys ['round']"),
    ("a missing key", toml("rounds = 5\n", ""), "missing keys ['rounds']"),
    ("a string for a whole number", toml("rounds = 5", 'rounds = "five"'),
     'rounds must be a whole number, not a string ("five")'),
    ("a decimal for a whole number", toml("rounds = 5", "rounds = 1e3"),
     "rounds must be a whole number, not a decimal number (1000.0)"),
    ("a bool for a whole number", toml("rounds = 5", "rounds = true"),
     "rounds must be a whole number, not a boolean (true)"),
    ("null for a whole number", as_json(rounds=None), "rounds must be a whole number, not null"),
    ("a list for a string", toml('dealer = "kmc"', 'dealer = ["kmc"]'),
     'dealer must be a string, not a list (["kmc"])'),
    ("a string for a list", toml('participants = ["a-co", "b-co", "c-co"]', 'participants = "a-co"'),
     'participants must be a list of company names, not a string ("a-co")'),
    ("numbers in a list of names", as_json(participants=[1, 2]),
     "participants must be a list of company names, not a list holding a whole number ([1, 2])"),
    ("a table in a list of names", as_json(committee=[{"name": "a-co"}]),
     "committee must be a list of company names, not a list holding a table"),
    ("a table for a number", toml("clip-norm = 4.0", "clip-norm = {a = 1}"),
     'clip-norm must be a number, not a table ({"a": 1})'),
    ("a string for a number", as_json(delta="0.00001"), 'delta must be a number, not a string ("0.00001")'),
    ("a negative count", toml("rounds = 5", "rounds = -5"), "rounds must be a whole number from 1 to 100000, not -5"),
    ("a huge count", toml("rounds = 5", "rounds = 99999999999999999999"),
     "rounds must be a whole number from 1 to 100000, not 99999999999999999999"),
    ("a threshold past the committee", toml("threshold = 2", "threshold = 7"),
     "threshold must be a whole number from 1 to 3 (the committee's size), not 7"),
    ("a huge whole number", toml("rounds = 5", "rounds = 5\ninitial-tokens = 9223372036854775807"),
     "initial-tokens must be a whole number from 0 to 1099511627776, not 9223372036854775807"),
    ("a negative whole number", toml("rounds = 5", "rounds = 5\npenalty = -1"),
     "penalty must be a whole number from 0 to 1099511627776, not -1"),
    ("TOML nan", toml("clip-norm = 4.0", "clip-norm = nan"),
     "clip-norm must be a finite number no larger than 4294967295, not nan"),
    ("TOML inf", toml("epsilon-budget = 8.0", "epsilon-budget = inf"),
     "epsilon-budget must be a finite number no larger than 4294967295, not inf"),
    ("JSON NaN", as_json(clip_norm=float("nan")), "clip-norm must be a finite number"),
    ("JSON Infinity for a whole number", as_json(max_weight=float("inf")),
     "max-weight must be a whole number, not a decimal number (Infinity)"),
    ("a huge decimal", toml("delta = 0.00001", "delta = 1e20"),
     "delta must be a finite number no larger than 4294967295, not 1e+20"),
    ("a negative decimal", toml("delta = 0.00001", "delta = -1"), "delta must be above 0 and below 1, not -1"),
    ("a name the ledger refuses", toml('task-id = "q3"', 'task-id = "Bad Name!"'),
     "task-id holds the name 'Bad Name!': use 1-64 of a-z 0-9 . _ -"),
    ("a name with a trailing newline", as_json(dealer="kmc\n"), "dealer holds the name 'kmc\\n'"),
    ("a company listed twice", toml('committee = ["a-co", "b-co", "c-co"]', 'committee = ["a-co", "a-co", "c-co"]'),
     "committee lists a company twice: ['a-co']"),
    ("an unknown enum value", toml("rounds = 5", 'rounds = 5\nprivacy-unit = "patient"'),
     "privacy-unit must be one of record, company, not 'patient'"),
    ("an odd key size", toml("rounds = 5", "rounds = 5\nkey-bits = 2047"), "key-bits must be even"),
]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("make", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_task_file_gets_one_line_naming_what_is_wrong_and_exit_code_1(
        make: Callable[[Path], Path], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = make(tmp_path)

    code, out, err = run(["task", "create", str(path), "--home", str(tmp_path / "no-network")], capsys)

    assert code == EXIT_ERROR
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"fedledger: task file {path}: ")
    assert expected in err
    assert "Traceback" not in err


def test_an_unreadable_task_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, whom file modes do not stop: refuse the read where the CLI makes it.
    path = toml("rounds = 5", "rounds = 5")(tmp_path)

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    code, _, err = run(["task", "create", str(path)], capsys)

    assert code == EXIT_ERROR
    assert err == f"fedledger: task file {path}: cannot be read: permission denied\n"


def test_a_good_task_file_gets_past_every_check_to_the_party_home(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # The control for the cases above: the same command with a good file fails only for want of a network.
    path = toml("rounds = 5", "rounds = 5")(tmp_path)
    pytest.importorskip("torch")  # the initial model is built before the party's session opens

    code, _, err = run(["task", "create", str(path), "--home", str(tmp_path / "no-network")], capsys)

    assert code == EXIT_ERROR
    assert "is not a party home" in err and "task file" not in err


@pytest.mark.parametrize(("argv", "expected"), [
    (["round", "show", "t1", "one"], "argument round: 'one' is not a round number: rounds are numbered 1 to 100000"),
    (["round", "show", "t1", "-1"], "argument round: '-1' is not a round number"),
    (["round", "show", "t1", "0"], "argument round: '0' is not a round number"),
    (["round", "show", "t1", "9" * 30], "is not a round number"),
    (["round", "show", "t1"], "the following arguments are required: round"),
    (["round", "show", "../t1", "1"], "argument task_id: '../t1' is not a task id: use 1-64 of a-z 0-9 . _ -"),
    (["task", "show", "Task One"], "argument task_id: 'Task One' is not a task id"),
    (["task", "create"], "the following arguments are required: file"),
    (["nonsense"], "invalid choice: 'nonsense'"),
], ids=["a word for a round number", "a negative round", "round 0", "a huge round", "a missing round number",
        "a path for a task id", "a task id with a space", "no task file", "an unknown noun"])
def test_malformed_arguments_are_usage_errors_without_a_traceback(argv: list[str], expected: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--home", "/nonexistent/fedledger-home"])
    _, err = capsys.readouterr()

    assert exited.value.code == EXIT_USAGE
    assert expected in err and "Traceback" not in err


def test_a_listen_port_out_of_range_is_refused_before_anything_starts(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["task", "run", "t1", "--listen", "127.0.0.1:99999", "--home", str(tmp_path)], capsys)

    assert code == EXIT_ERROR
    assert err == "fedledger: --listen '127.0.0.1:99999' is not HOST:PORT with a port from 1 to 65535\n"


def test_a_file_where_a_home_directory_belongs_is_named_in_one_line(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    not_a_directory = tmp_path / "home"
    not_a_directory.write_text("a file")

    code, out, err = run(["round", "show", "t1", "1", "--party-home", str(not_a_directory)], capsys)

    assert code == EXIT_ERROR and out == ""
    assert err == f"fedledger: {not_a_directory}/profile.json: Not a directory\n"


def test_an_error_fedledger_did_not_expect_is_one_line_and_its_own_exit_code(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import fedledger.cli.task as task_cli

    def broken(path: Path) -> dict[str, object]:
        raise KeyError("a bug")

    monkeypatch.setattr(task_cli, "load_task_file", broken)
    monkeypatch.delenv("FEDLEDGER_TRACEBACK", raising=False)
    code, _, err = run(["task", "create", "task.toml"], capsys)
    monkeypatch.setenv("FEDLEDGER_TRACEBACK", "1")
    _, _, shown = run(["task", "create", "task.toml"], capsys)

    assert code == EXIT_BUG
    assert err == ("fedledger: unexpected KeyError: 'a bug'; this is a bug in FedLedger, please report it (set "
                   "FEDLEDGER_TRACEBACK=1 to see where it happened)\n")
    assert shown.startswith("Traceback") and shown.endswith(err)


def test_the_installed_command_prints_no_traceback_for_a_binary_task_file(tmp_path: Path) -> None:
    path = raw("task.toml", b"\xff\x00" * 64)(tmp_path)

    done = subprocess.run([sys.executable, "-m", "fedledger.cli.app", "task", "create", str(path), "--home",
                           str(tmp_path)], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(Path(__file__).parents[3] / "clients"), "PATH": "/usr/bin:/bin"})

    assert done.returncode == EXIT_ERROR
    assert done.stdout == ""
    assert done.stderr == f"fedledger: task file {path}: is not UTF-8 text (byte 0 is 0xff); write it as TOML or JSON\n"
