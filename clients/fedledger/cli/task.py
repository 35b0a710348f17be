"""``fedledger task create | show | run`` and ``fedledger round show``: tasks and rounds on the ledger."""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

from fedledger.errors import FedLedgerError, PrivacyError, TaskFileError, TaskSpecError
from fedledger.cli.options import add_common, party_of
from fedledger.fl.config import RunConfig
from fedledger.fl.party import PartyHome

# What each task-file key holds; a value of another type is refused naming the key and the type.
_TEXT, _WHOLE, _NUMBER, _NAMES = "a string", "a whole number", "a number", "a list of company names"
# Task file keys (kebab-case TOML, or the same keys in JSON), their TaskSpec fields, and their types.
_FIELDS = {"task-id": ("task_id", _TEXT), "model": ("model", _TEXT), "rounds": ("rounds", _WHOLE),
           "participants": ("participants", _NAMES), "committee": ("committee", _NAMES),
           "dealer": ("dealer", _TEXT), "threshold": ("threshold", _WHOLE),
           "quorum": ("quorum", _WHOLE), "min-participants": ("min_participants", _WHOLE),
           "max-weight": ("max_weight", _WHOLE), "epsilon-budget": ("epsilon_budget", _NUMBER),
           "delta": ("delta", _NUMBER), "clip-norm": ("clip_norm", _NUMBER),
           "noise-multiplier": ("noise_multiplier", _NUMBER), "noise-mode": ("noise_mode", _TEXT),
           "privacy-unit": ("unit", _TEXT), "sample-rate": ("sample_rate", _NUMBER),
           "steps-per-round": ("steps_per_round", _WHOLE), "label-epsilon": ("label_epsilon", _NUMBER),
           "key-bits": ("key_bits", _WHOLE), "key-custody": ("custody", _TEXT), "master": ("master", _TEXT),
           "initial-tokens": ("initial_tokens", _WHOLE), "reward-per-round": ("reward_per_round", _WHOLE),
           "penalty": ("penalty", _WHOLE), "reputation-threshold": ("reputation_threshold", _WHOLE),
           "reputation-gain": ("reputation_gain", _WHOLE), "leader-window-seconds": ("leader_window_seconds", _WHOLE),
           "millis-per-sample": ("millis_per_sample", _WHOLE), "server-lr": ("server_lr", _NUMBER),
           "server-momentum": ("server_momentum", _NUMBER)}
_REQUIRED = ("task-id", "model", "rounds", "participants", "committee", "dealer", "threshold", "quorum",
             "min-participants", "epsilon-budget", "delta", "clip-norm", "noise-multiplier")
# Task ids and round numbers as the ledger has them (chaincode/ledger: checkName, Genesis.validate).
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_MAX_ROUNDS = 100_000
# A task file is a few hundred bytes; refusing a huge one keeps a wrong path (a dataset, a device) from being
# read whole.
_MAX_TASK_FILE_BYTES = 1 << 20


def register(nouns: Any) -> None:
    task = nouns.add_parser("task", help="create and show training tasks")
    verbs = task.add_subparsers(dest="verb", required=True, metavar="<verb>")
    create = verbs.add_parser("create", help="publish a task from a TOML or JSON task file")
    add_common(create, identity=True)
    create.add_argument("file", type=Path)
    create.set_defaults(run=run_create)
    show = verbs.add_parser("show", help="a task's genesis and state")
    add_common(show, identity=True)
    show.add_argument("task_id", type=task_id)
    show.set_defaults(run=run_show)

    run = verbs.add_parser("run", help="as the coordinator: serve Flower's SuperLink and run a dealt task's rounds")
    add_common(run, identity=True)
    run.add_argument("task_id", type=task_id)
    run.add_argument("--listen", default="127.0.0.1:9092", metavar="HOST:PORT",
                     help="the SuperLink's address, which the companies' nodes dial (its TLS certificate names HOST)")
    for option, default in sorted(RunConfig().to_flower().items()):
        # The server step is the task's, fixed in its description when it was published.
        if option not in ("home", "task-id", "metrics-json", "server-lr", "server-momentum"):
            run.add_argument(f"--{option}", dest=option.replace("-", "_"), type=type(default), default=default,
                             help=f"the run's {option} (default {default}; see fl/config.py)")
    run.set_defaults(run=run_task)

    round_ = nouns.add_parser("round", help="show a task's rounds")
    round_verbs = round_.add_subparsers(dest="verb", required=True, metavar="<verb>")
    round_show = round_verbs.add_parser("show", help="a round's record, updates and votes")
    add_common(round_show, identity=True)
    round_show.add_argument("task_id", type=task_id)
    round_show.add_argument("round", type=round_number)
    round_show.set_defaults(run=run_round_show)


def task_id(text: str) -> str:
    """A task id argument, checked as the ledger names tasks (argparse reports a refusal as bad usage)."""
    if not _NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a task id: use 1-64 of a-z 0-9 . _ -, starting with a "
                                         f"letter or digit")
    return text


def round_number(text: str) -> int:
    """A round number argument: a whole number from 1 to the most rounds a task may have."""
    if not text.isdigit() or not 1 <= int(text) <= _MAX_ROUNDS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a round number: rounds are numbered 1 to {_MAX_ROUNDS}")
    return int(text)


def _kind_of(value: object) -> str:
    """A TOML/JSON value's type in the words of a task file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (dict, list)):
        return "a table" if isinstance(value, dict) else "a list"
    return {str: _TEXT, int: _WHOLE, float: "a decimal number"}.get(type(value), type(value).__name__)


def _shown(value: object) -> str:
    """A value as the task file wrote it (JSON notation), cut short."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _typed(key: str, value: object, path: Path) -> object:
    """``value`` if it has the type task-file key ``key`` holds (a list of names as a tuple)."""
    kind = _FIELDS[key][1]
    if kind == _NAMES and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    fits = {_TEXT: isinstance(value, str),
            # bool is an int in Python; TOML and JSON keep them apart, and so does a task file.
            _WHOLE: isinstance(value, int) and not isinstance(value, bool),
            _NUMBER: isinstance(value, (int, float)) and not isinstance(value, bool)}.get(kind, False)
    if fits:
        return value
    found = f"a list holding {_kind_of(next(v for v in value if not isinstance(v, str)))}" \
        if kind == _NAMES and isinstance(value, list) else _kind_of(value)
    shown = "" if value is None else f" ({_shown(value)})"
    raise TaskFileError(path, f"must be {kind}, not {found}{shown}", key=key)


def load_task_file(path: Path) -> dict[str, Any]:
    """Read a task file (TOML, or JSON by extension) into TaskSpec keyword arguments.

    Every key is checked against the type it holds; the values themselves are TaskSpec's to judge.

    Raises
    ------
    TaskFileError
        The file is missing, unreadable, not a file, not UTF-8, does not parse, is not a table of
        known keys, lacks a required key, or holds a value of the wrong type (named by its key).
    """
    try:
        with path.open("rb") as file:
            data = file.read(_MAX_TASK_FILE_BYTES + 1)
    except FileNotFoundError:
        raise TaskFileError(path, "does not exist") from None
    except IsADirectoryError:
        raise TaskFileError(path, "is a directory, not a task file") from None
    except PermissionError:
        raise TaskFileError(path, "cannot be read: permission denied") from None
    except OSError as err:
        raise TaskFileError(path, f"cannot be read: {err.strerror or err}") from None
    if len(data) > _MAX_TASK_FILE_BYTES:
        raise TaskFileError(path, f"is larger than {_MAX_TASK_FILE_BYTES} bytes; a task file is a few lines of "
                                  f"TOML or JSON")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TaskFileError(path, f"is not UTF-8 text (byte {err.start} is 0x{data[err.start]:02x}); "
                                  f"write it as TOML or JSON") from None
    if not text.strip():
        raise TaskFileError(path, f"is empty; it needs at least the keys {', '.join(_REQUIRED)}")
    as_json = path.suffix == ".json"
    try:
        raw = json.loads(text) if as_json else tomllib.loads(text)
    except (ValueError, RecursionError) as err:  # tomllib.TOMLDecodeError is a ValueError
        raise TaskFileError(path, f"is not valid {'JSON' if as_json else 'TOML'}: {err}") from None
    if not isinstance(raw, dict):
        raise TaskFileError(path, f"must hold one JSON object of task keys, not {_kind_of(raw)}")
    unknown = sorted(str(k) for k in set(raw) - set(_FIELDS))
    if unknown:
        raise TaskFileError(path, f"unknown keys {unknown}; known: {sorted(_FIELDS)}")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise TaskFileError(path, f"missing keys {missing}")
    return {_FIELDS[k][0]: _typed(k, v, path) for k, v in raw.items()}


def run_create(args: argparse.Namespace) -> int:
    from fedledger.fl import task as tasks
    from fedledger.fl.company import CompanySession
    from fedledger.fl.publish import TaskSpec, publish_task

    spec_args = load_task_file(args.file)
    spec_args.setdefault("max_weight", 4096)
    try:
        spec = TaskSpec(dataset="bundled", **spec_args)
    except TaskSpecError as err:
        # TaskSpec judges the values (as the chaincode would); name the file they came from.
        raise TaskFileError(args.file, err.reason, key=err.key) from err
    except PrivacyError as err:
        raise TaskFileError(args.file, str(err)) from err
    initial = tasks.get_flat(tasks.build_model(spec.model))
    home = party_of(args)
    with CompanySession.open(home) as session:
        publish_task(spec, session.ledger, session.store, initial_model=initial)
    print(f"  task {spec.task_id} published; it awaits its key from the dealer {spec.dealer}", file=sys.stderr)
    return _show_task(home, spec.task_id, as_json=args.json)


def _show_task(home: PartyHome, task_id: str, *, as_json: bool) -> int:
    from fedledger.fl.company import CompanySession

    with CompanySession.open(home) as session:
        task = session.ledger.get_task(task_id)
    if as_json:
        print(json.dumps(task, sort_keys=True))
        return 0
    for key in ("task_id", "status", "publisher", "rounds", "current_round", "closed_rounds", "participants",
                "committee", "quorum", "min_participants", "leader_window_seconds"):
        print(f"{key:22} {task[key]}")  # type: ignore[literal-required,unused-ignore]
    print(f"{'epsilon spent/budget':22} {task['epsilon_spent_micro'] / 1e6:.6f} / {task['epsilon_budget_micro'] / 1e6:.6f}")
    print(f"{'dp':22} {json.dumps(task['dp'], sort_keys=True)}")
    he = task["he"]
    modulus = he.get("paillier_n", "")
    key = f"n = {modulus[:24]}... ({len(modulus) * 4} bits)" if modulus else "key not dealt yet"
    print(f"{'he':22} threshold {he['threshold']} of {he['committee_size']}, dealer {he['dealer']}, {key}")
    print(f"{'model':22} {task['model']['description']}")
    print(f"{'initial weights':22} {task['model']['initial_weights_sha256']}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    return _show_task(party_of(args), args.task_id, as_json=args.json)


def run_task(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from fedledger.fl.company import CompanySession
    from fedledger.network.hosts import Placement
    from fedledger.node.demo import coordinate
    from fedledger.node.deployment import FlowerDeployment

    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise FedLedgerError(f"--listen {args.listen!r} is not HOST:PORT with a port from 1 to 65535")
    home = party_of(args)
    run = RunConfig.from_flower({f.name.replace("_", "-"): getattr(args, f.name) for f in fields(RunConfig)
                                 if f.name not in ("home", "task_id", "metrics_json", "server_lr", "server_momentum")}
                                | {"task-id": args.task_id})
    with CompanySession.open(home) as session:
        task = session.ledger.get_task(args.task_id)
        companies = sorted(set(task["participants"]) | set(task["committee"]))
        deployment = FlowerDeployment(home.root / "runs" / args.task_id, int(port), superlink=Placement(address=host))
        try:
            deployment.start_superlink()
            deployment.admit(session.ledger, companies)
            print(f"  SuperLink at {deployment.address} admits {', '.join(companies)}; each starts its node with "
                  f"`fedledger node start --party-home HOME --superlink {deployment.address} --superlink-ca "
                  f"{deployment.ca_file}` (the CA certificate is public)", file=sys.stderr, flush=True)
            metrics = coordinate(deployment, home, run, rounds=task["rounds"],
                                 progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
        finally:
            deployment.stop()
    if args.json:
        print(json.dumps(metrics, sort_keys=True))
    else:
        for r in metrics["rounds"]:
            if "failed" in r or "stopped" in r:
                print(r.get("failed") or f"stopped: {r['stopped']}")
                continue
            print(f"round {r['round']}: accuracy {r['accuracy']:.4f} epsilon {r['epsilon']:.3f} "
                  f"model {r['model_sha256'][:16]}")
    return 0


def run_round_show(args: argparse.Namespace) -> int:
    from fedledger.fl.company import CompanySession

    with CompanySession.open(party_of(args)) as session:
        record = session.ledger.get_round(args.task_id, args.round)
        updates = session.ledger.list_updates(args.task_id, args.round)
        votes = session.ledger.list_votes(args.task_id, args.round)
        proofs = session.ledger.list_election_proofs(args.task_id, args.round)
    if args.json:
        print(json.dumps({"round": record, "updates": updates, "votes": votes, "election_proofs": proofs},
                         sort_keys=True))
        return 0
    print(f"task {args.task_id} round {args.round}: {record['status']}, leader {record.get('leader') or '(not elected)'}, "
          f"epsilon after {record['epsilon_after_micro'] / 1e6:.6f} (booked by the chaincode)")
    print(f"  seed    {record['seed']}")
    for p in proofs:
        print(f"  proof   {p['member']:20} VRF output {p['output'][:16]}… (verified by the chaincode) tx {p['tx_id'][:12]}")
    election = record.get("election")
    if election:
        ranked = " > ".join(f"{m} (stake {election['stakes'][m]})" for m in election["ranking"])
        print(f"  ranking {ranked}, {election['window_seconds']} s each")
        for f in election.get("failovers", []):
            print(f"  failover rank {f['rank']} {f['failed']} missed its slot; {f['successor']} led (tx {f['tx_id'][:12]})")
    if record.get("collected"):
        print(f"  fixed   {', '.join(record['collected'])}")
    for u in updates:
        print(f"  update  {u['company']:20} {u['artifact_sha256'][:16]}  {u['size_bytes']:>9} B  "
              f"n={u['samples']:<6} tx {u['tx_id'][:12]}")
    aggregate = record.get("aggregate")
    if aggregate:
        print(f"  aggregate {aggregate['sha256'][:16]} of {', '.join(aggregate['included'])}")
    for v in votes:
        verdict = 'valid' if v['valid'] else 'INVALID: ' + v.get('reason', '')
        print(f"  vote    {v['member']:20} {verdict}{'' if v.get('counted', True) else ' (not counted: demoted)'}"
              + (f" partial {v['partial_sha256'][:16]}" if v.get("partial_sha256") else ""))
    if record.get("model_sha256"):
        print(f"  model   {record['model_sha256']} decrypted by {', '.join(record.get('decrypted_by', []))}")
    standing = record.get("standing", {})
    for penalty in standing.get("penalties", []):
        print(f"  penalty {penalty['company']:20} -{penalty['amount']} for a missed {penalty['duty']}")
    for kind in ("demoted", "reinstated"):
        if standing.get(kind):
            print(f"  {kind:7} {', '.join(standing[kind])}")
    if record.get("failure_reason"):
        print(f"  failed  {record['failure_reason']}")
    return 0
