"""``fedledger task create | show | run`` and ``fedledger round show``: tasks and rounds on the ledger."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from fedledger.errors import FedLedgerError
from fedledger.cli.options import add_common, party_of
from fedledger.fl.config import RunConfig
from fedledger.fl.party import PartyHome

# Task file keys (kebab-case TOML, or the same keys in JSON) and their TaskSpec fields.
_FIELDS = {"task-id": "task_id", "model": "model", "rounds": "rounds", "participants": "participants",
           "committee": "committee", "aggregator": "aggregator", "dealer": "dealer", "threshold": "threshold",
           "quorum": "quorum", "min-participants": "min_participants", "max-weight": "max_weight",
           "epsilon-budget": "epsilon_budget", "delta": "delta", "clip-norm": "clip_norm",
           "noise-multiplier": "noise_multiplier", "noise-mode": "noise_mode", "privacy-unit": "unit",
           "sample-rate": "sample_rate", "steps-per-round": "steps_per_round", "label-epsilon": "label_epsilon",
           "key-bits": "key_bits", "key-custody": "custody", "master": "master", "initial-tokens": "initial_tokens",
           "reward-per-round": "reward_per_round", "penalty": "penalty", "reputation-threshold": "reputation_threshold"}


def register(nouns: Any) -> None:
    task = nouns.add_parser("task", help="create and show training tasks")
    verbs = task.add_subparsers(dest="verb", required=True, metavar="<verb>")
    create = verbs.add_parser("create", help="publish a task from a TOML or JSON task file")
    add_common(create, identity=True)
    create.add_argument("file", type=Path)
    create.set_defaults(run=run_create)
    show = verbs.add_parser("show", help="a task's genesis and state")
    add_common(show, identity=True)
    show.add_argument("task_id")
    show.set_defaults(run=run_show)

    run = verbs.add_parser("run", help="as the coordinator: serve Flower's SuperLink and run a dealt task's rounds")
    add_common(run, identity=True)
    run.add_argument("task_id")
    run.add_argument("--listen", default="127.0.0.1:9092", metavar="HOST:PORT",
                     help="the SuperLink's address, which the companies' nodes dial (its TLS certificate names HOST)")
    for option, default in sorted(RunConfig().to_flower().items()):
        if option not in ("home", "task-id", "metrics-json"):
            run.add_argument(f"--{option}", dest=option.replace("-", "_"), type=type(default), default=default,
                             help=f"the run's {option} (default {default}; see fl/config.py)")
    run.set_defaults(run=run_task)

    round_ = nouns.add_parser("round", help="show a task's rounds")
    round_verbs = round_.add_subparsers(dest="verb", required=True, metavar="<verb>")
    round_show = round_verbs.add_parser("show", help="a round's record, updates and votes")
    add_common(round_show, identity=True)
    round_show.add_argument("task_id")
    round_show.add_argument("round", type=int)
    round_show.set_defaults(run=run_round_show)


def load_task_file(path: Path) -> dict[str, Any]:
    """Read a task file (TOML, or JSON by extension) into TaskSpec keyword arguments."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FedLedgerError(f"task file {path} does not exist") from None
    try:
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as err:
        raise FedLedgerError(f"task file {path} does not parse: {err}") from None
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise FedLedgerError(f"task file {path}: unknown keys {unknown}; known: {sorted(_FIELDS)}")
    missing = sorted(k for k in ("task-id", "model", "rounds", "participants", "committee", "aggregator", "dealer",
                                 "threshold", "quorum", "min-participants", "epsilon-budget", "delta", "clip-norm",
                                 "noise-multiplier") if k not in raw)
    if missing:
        raise FedLedgerError(f"task file {path}: missing keys {missing}")
    spec = {_FIELDS[k]: v for k, v in raw.items()}
    for key in ("participants", "committee"):
        spec[key] = tuple(spec[key])
    return spec


def run_create(args: argparse.Namespace) -> int:
    from fedledger.fl import task as tasks
    from fedledger.fl.company import CompanySession
    from fedledger.fl.publish import TaskSpec, publish_task

    spec_args = load_task_file(args.file)
    spec_args.setdefault("max_weight", 4096)
    try:
        spec = TaskSpec(dataset="bundled", **spec_args)
    except TypeError as err:
        raise FedLedgerError(f"task file {args.file}: {err}") from None
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
    for key in ("task_id", "status", "publisher", "aggregator", "rounds", "current_round", "participants",
                "committee", "quorum", "min_participants"):
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
    if not host or not port.isdigit():
        raise FedLedgerError(f"--listen {args.listen!r} is not HOST:PORT")
    home = party_of(args)
    run = RunConfig.from_flower({f.name.replace("_", "-"): getattr(args, f.name) for f in fields(RunConfig)
                                 if f.name not in ("home", "task_id", "metrics_json")} | {"task-id": args.task_id})
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
            print(f"round {r['round']}: accuracy {r['accuracy']:.4f} epsilon {r['epsilon']:.3f} "
                  f"model {r['model_sha256'][:16]}")
    return 0


def run_round_show(args: argparse.Namespace) -> int:
    from fedledger.fl.company import CompanySession

    with CompanySession.open(party_of(args)) as session:
        record = session.ledger.get_round(args.task_id, args.round)
        updates = session.ledger.list_updates(args.task_id, args.round)
        votes = session.ledger.list_votes(args.task_id, args.round)
    if args.json:
        print(json.dumps({"round": record, "updates": updates, "votes": votes}, sort_keys=True))
        return 0
    print(f"task {args.task_id} round {args.round}: {record['status']}, leader {record['leader']}, "
          f"epsilon after {record['epsilon_after_micro'] / 1e6:.6f}")
    for u in updates:
        print(f"  update  {u['company']:20} {u['artifact_sha256'][:16]}  {u['size_bytes']:>9} B  "
              f"n={u['samples']:<6} tx {u['tx_id'][:12]}")
    aggregate = record.get("aggregate")
    if aggregate:
        print(f"  aggregate {aggregate['sha256'][:16]} of {', '.join(aggregate['included'])}")
    for v in votes:
        print(f"  vote    {v['member']:20} {'valid' if v['valid'] else 'INVALID: ' + v.get('reason', '')}")
    if record.get("model_sha256"):
        print(f"  model   {record['model_sha256']}")
    return 0
