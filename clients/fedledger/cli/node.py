"""``fedledger node init | start | deal``: what a party runs on its own machine, from its own home.

- ``node init``: enroll with the one-time secret the org's CA admin gave (read from standard
  input, never from the command line), record the party on the ledger and, for a company, the
  public halves of its sealing and Flower node keys (kept 0600 in its home);
- ``node start``: a company runs its Flower SuperNode from its own home, signing with its node key
  and trusting the coordinator's SuperLink CA; its ClientApp then does everything the company does
  in a task (train, aggregate as leader, verify, vote, decrypt);
- ``node deal TASK``: the dealer (key management party) deals a task's threshold key, each share
  sealed to its committee member; it keeps nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fedledger.cli.options import add_common, party_of
from fedledger.errors import FedLedgerError


def register(nouns: Any) -> None:
    node = nouns.add_parser("node", help="a party's own node: initialise its home, deal a task's key")
    verbs = node.add_subparsers(dest="verb", required=True, metavar="<verb>")

    init = verbs.add_parser("init", help="create a party's home, enroll it and record it on the ledger")
    init.add_argument("--home", type=Path, required=True, help="the party's own home directory")
    init.add_argument("--name", required=True, help="the party's name, as registered at its org's CA")
    init.add_argument("--org", required=True, help="its organization (e.g. Manufacturer)")
    init.add_argument("--kind", choices=("company", "coordinator", "dealer"), default="company")
    source = init.add_mutually_exclusive_group(required=True)
    source.add_argument("--profile", type=Path, help="the network's public profile (a party profile JSON)")
    source.add_argument("--network-home", type=Path, help="the network operator's home, on the same machine")
    init.add_argument("--secret-stdin", action="store_true", required=True,
                      help="read the one-time enrollment secret from standard input")
    init.add_argument("--json", action="store_true", help="print one JSON document")
    init.set_defaults(run=run_init)

    start = verbs.add_parser("start", help="as a company: run its Flower SuperNode from its own home (foreground)")
    add_common(start, identity=True, json=False)
    start.add_argument("--superlink", required=True, metavar="HOST:PORT", help="the coordinator's SuperLink")
    start.add_argument("--superlink-ca", type=Path, required=True,
                       help="the coordinator's SuperLink CA certificate (public; `fedledger task run` prints it)")
    start.add_argument("--port", type=int, default=9094, help="this node's own runtime API port, on its loopback")
    start.add_argument("--data-path", default="", help="where this company's data is (models that load from a path)")
    start.add_argument("--partition-id", type=int, default=0, help="the demo's split of a bundled dataset: this part")
    start.add_argument("--num-partitions", type=int, default=1, help="the demo's split: how many parts")
    start.add_argument("--plain-baseline", action="store_true",
                       help="also answer a coordinator's plain-FedAvg yardstick (train --protocol plain-fedavg), "
                            "which sends this company's update in the clear; off by default")
    start.set_defaults(run=run_start)

    deal = verbs.add_parser("deal", help="as the task's dealer: deal its threshold key to the committee")
    add_common(deal, identity=True)
    deal.add_argument("task_id")
    deal.set_defaults(run=run_deal)


def run_init(args: argparse.Namespace) -> int:
    from fedledger.fl.party import PartyHome, PartyKind
    from fedledger.node.enrolment import init_party
    from fedledger.node.profile import party_profile

    if args.profile:
        try:
            profile = json.loads(args.profile.read_text())
        except (OSError, ValueError) as err:
            raise FedLedgerError(f"the network profile {args.profile} cannot be read: {err}") from None
    else:
        profile = party_profile(args.network_home)
    secret = sys.stdin.readline().strip()
    if not secret:
        raise FedLedgerError("no enrollment secret on standard input")
    record = init_party(PartyHome(args.home), name=args.name, kind=PartyKind(args.kind), org=args.org,
                        profile=profile, secret=secret)
    if args.json:
        print(json.dumps(record, sort_keys=True))
    else:
        print(f"{args.name}: enrolled in {record['msp_id']} from {args.home}, roles {','.join(record['roles'])}")
    return 0


def run_start(args: argparse.Namespace) -> int:
    import os

    from fedledger.fl.config import PLAIN_BASELINE_CONSENT
    from fedledger.fl.party import PartyKind
    from fedledger.node.deployment import flower_env, supernode_argv

    home = party_of(args)
    if home.kind is not PartyKind.COMPANY:
        raise FedLedgerError(f"{home.root} is the home of {home.name}, a {home.kind}: only a company runs a node")
    if not args.superlink_ca.is_file():
        raise FedLedgerError(f"no SuperLink CA certificate at {args.superlink_ca}")
    node_config: dict[str, object] = {"home": str(home.root), "partition-id": args.partition_id,
                                      "num-partitions": args.num_partitions}
    if args.data_path:
        node_config["data-path"] = args.data_path
    if args.plain_baseline:
        node_config.update(PLAIN_BASELINE_CONSENT)
    argv = supernode_argv(superlink=args.superlink, ca_file=args.superlink_ca.resolve(), node_key=home.node_key_path,
                          port=args.port, node_config=node_config)
    flower = home.root / "flower"
    flower.mkdir(mode=0o700, exist_ok=True)
    print(f"{home.name}: SuperNode for {args.superlink} from {home.root}", file=sys.stderr, flush=True)
    os.chdir(flower)
    # The CLI becomes the SuperNode: its exit code, signals and logs are the node's.
    os.execve(argv[0], argv, {**os.environ, **flower_env(flower)})


def run_deal(args: argparse.Namespace) -> int:
    from fedledger.fl.company import CompanySession
    from fedledger.fl.custody import deal_key

    with CompanySession.open(party_of(args)) as session:
        tx_id = deal_key(session.ledger, args.task_id)
    if args.json:
        print(json.dumps({"task_id": args.task_id, "tx_id": tx_id}))
    else:
        print(f"task {args.task_id}: key dealt (tx {tx_id}); each share sealed to its member, nothing kept")
    return 0
