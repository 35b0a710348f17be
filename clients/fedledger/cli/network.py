"""``fedledger network up | status | profile | down``: the consortium on this machine."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from fedledger.errors import NetworkStateError
from fedledger.cli.options import add_common, home_of
from fedledger.network import RUNTIMES, ConsortiumConfig, ContainerStatus, Network, open_network
from fedledger.network.config import DEFAULT_CONFIG
from fedledger.network.docker import check_demo

EXIT_NODE_DOWN = 3


def register(nouns: Any) -> None:
    parser = nouns.add_parser("network", help="bring the consortium up, inspect it, tear it down")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="<verb>")

    up = verbs.add_parser("up", help="bring the consortium up (or resume a stopped one)")
    add_common(up)
    up.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="consortium file (network/consortium.toml)")
    up.add_argument("--base-port", type=int, default=None, help="first port of the consortium's port plan")
    up.add_argument("--runtime", choices=tuple(RUNTIMES), default=None,
                    help="native: local processes (the default); docker: containers of docker-compose.yaml "
                         "(the demo consortium only). A home keeps the runtime it was brought up with")
    up.set_defaults(run=run_up)

    status = verbs.add_parser("status", help="list every node and whether it answers")
    add_common(status)
    status.set_defaults(run=run_status)

    profile = verbs.add_parser("profile", help="the public profile a party needs to join (addresses, TLS roots)")
    add_common(profile, json=False)
    profile.add_argument("--out", type=Path, default=None, help="write it to this file instead of stdout")
    profile.set_defaults(run=run_profile)

    down = verbs.add_parser("down", help="stop every node this network started")
    add_common(down)
    down.add_argument("--purge", action="store_true", help="also delete ledgers, keys and logs")
    down.add_argument("--yes", action="store_true", help="do not ask before --purge deletes")
    down.set_defaults(run=run_down)


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def run_up(args: argparse.Namespace) -> int:
    home = home_of(args)
    if (home / "network.json").exists():
        net = open_network(home)
        if args.runtime is not None and args.runtime != net.runtime.name:
            raise NetworkStateError(f"the network in {home} was brought up with --runtime {net.runtime.name}; bring "
                                    "it up with that runtime, or remove it first (`fedledger network down --purge`)")
    else:
        config = ConsortiumConfig.load(args.config, base_port=args.base_port)
        if args.runtime == "docker":
            check_demo(config, source=str(args.config))
        net = Network(config, home, runtime=args.runtime or "native")
    print(f"fedledger: network up in {home}", file=sys.stderr)
    report = net.up(progress=_progress)
    nodes = net.status()
    if args.json:
        print(json.dumps({"home": str(home), "already_up": report.already_up, "resumed": report.resumed,
                          "seconds": round(report.seconds, 3), "restarted": report.restarted,
                          "steps": [{"step": s, "seconds": round(t, 3)} for s, t in report.steps],
                          "profile": str(net.layout.profile), "logs": str(net.layout.logs),
                          "nodes": [n.to_json() for n in nodes]}, sort_keys=True))
        return 0
    if report.already_up:
        print(f"the network in {home} is already up; nothing changed")
        return 0
    if report.resumed and len(report.restarted) < len(nodes):
        print(f"restarted {len(report.restarted)} node(s) that were not running: {', '.join(report.restarted)}")
    verb = "resumed" if report.resumed else "up"
    print(f"network {verb} in {report.seconds:.1f} s: {len(nodes)} nodes, channel "
          f"'{net.config.channel}', chaincode '{net.config.chaincode}'")
    print(f"  state and ledgers: {home}")
    print(f"  logs:              {net.layout.logs}")
    print(f"  client profile:    {net.layout.profile}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    net = open_network(home_of(args))
    nodes = net.status()
    healthy = all(n.running and n.answers for n in nodes)
    if args.json:
        print(json.dumps({"home": str(net.layout.home), "healthy": healthy, "nodes": [n.to_json() for n in nodes]},
                         sort_keys=True))
    elif net.runtime.kind == "containers":
        # Containers have names, not pids: the last column names each node's container.
        print(f"{'NODE':40} {'ROLE':9} {'ORG':13} {'ADDRESS':16} {'STATE':23} CONTAINER")
        for n in nodes:
            state = "answers" if n.answers else ("running, not answering" if n.running else "NOT RUNNING")
            container = n.container if isinstance(n, ContainerStatus) else None
            print(f"{n.name:40} {n.role:9} {n.org:13} {n.address:16} {state:23} {container or '-'}")
    else:
        print(f"{'NODE':40} {'ROLE':9} {'ORG':13} {'ADDRESS':16} {'PID':>7}  STATE")
        for n in nodes:
            state = "answers" if n.answers else ("running, not answering" if n.running else "NOT RUNNING")
            print(f"{n.name:40} {n.role:9} {n.org:13} {n.address:16} {n.pid or '-':>7}  {state}")
    return 0 if healthy else EXIT_NODE_DOWN


def run_down(args: argparse.Namespace) -> int:
    home = home_of(args)
    if args.purge and not args.yes:
        if not sys.stdin.isatty():
            print(f"fedledger: --purge deletes {home} (ledgers, keys, logs); add --yes to confirm", file=sys.stderr)
            return 2
        answer = input(f"delete {home} with its ledgers, keys and logs? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted", file=sys.stderr)
            return 0
    if not (home / "network.json").exists():
        if args.purge and home.exists():
            shutil.rmtree(home)
            print(f"no network was recorded in {home}; removed the directory")
        else:
            print(f"no network in {home}; nothing to stop")
        return 0
    net = open_network(home)
    kept = f"; removed {home}" if args.purge else f"; ledgers and keys kept in {home}"
    if net.runtime.kind == "containers":
        removed = net.down(purge=args.purge)
        if args.json:
            print(json.dumps({"home": str(home), "removed_containers": removed, "purged": args.purge}, sort_keys=True))
        else:
            print(f"removed {len(removed)} containers" + kept)
        return 0
    stopped = net.down(purge=args.purge)
    if args.json:
        print(json.dumps({"home": str(home), "stopped_pids": stopped, "purged": args.purge}, sort_keys=True))
    else:
        print(f"stopped {len(stopped)} processes" + kept)
    return 0


def run_profile(args: argparse.Namespace) -> int:
    from fedledger.node.profile import party_profile

    document = json.dumps(party_profile(home_of(args)), indent=2, sort_keys=True) + "\n"
    if args.out:
        args.out.write_text(document)
        print(f"wrote the network's public profile to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(document)
    return 0
