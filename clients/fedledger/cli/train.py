"""``fedledger train``: a federated training task across the consortium's companies."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fedledger.errors import FedLedgerError
from fedledger.cli.options import add_common, home_of
from fedledger.fl.config import Partitioner, RunConfig


def register(nouns: Any) -> None:
    parser = nouns.add_parser("train", help="publish a task and train it, every round recorded on the ledger")
    add_common(parser)
    parser.add_argument("--company", action="append", default=[], metavar="NAME@ORG",
                        help="a participating company and its organization (repeat; default: one per org)")
    parser.add_argument("--coordinator", default="coordinator@Manufacturer", metavar="NAME@ORG",
                        help="the task's publisher: orchestrates, never aggregates, holds no key share")
    parser.add_argument("--dealer", default="kmc@Carrier", metavar="NAME@ORG",
                        help="the key management party: deals the threshold key, holds no other role")
    parser.add_argument("--model", default="breast-cancer-logreg", help="mnist-cnn, breast-cancer-logreg, digits-logreg")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--task-id", default="")
    parser.add_argument("--epsilon", type=float, default=3.0, help="the task's privacy budget")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--clip-norm", type=float, default=4.0)
    parser.add_argument("--noise-multiplier", type=float, default=0.0,
                        help="sigma of the Gaussian noise (x clip norm); 0 (default) picks the smallest that fits "
                             "--rounds in --epsilon")
    parser.add_argument("--noise-mode", choices=("distributed", "central"), default="distributed")
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--custody", choices=("threshold", "escrow"), default="threshold",
                        help="threshold: t of the committee decrypt together; escrow: a master decrypts and t "
                             "members can rebuild its key if it fails (paper 000)")
    parser.add_argument("--threshold", type=int, default=2, help="committee shares needed to decrypt")
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--partitioner", choices=("iid", "dirichlet"), default="iid")
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration")
    parser.add_argument("--label-epsilon", type=float, default=0.0,
                        help="randomized response on each company's labels with this epsilon (paper 000); 0: off")
    parser.add_argument("--dp-sgd-noise", type=float, default=0.0,
                        help="local DP-SGD (Opacus) noise multiplier inside each company's training; 0: off")
    parser.add_argument("--dp-sgd-clip", type=float, default=1.0, help="local DP-SGD per-sample gradient clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--round-timeout", type=float, default=RunConfig.round_timeout,
                        help="seconds a round waits for companies' answers before going on without them")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG of accuracy and epsilon per round")
    parser.set_defaults(run=run_train)


def _party(text: str) -> Any:
    from fedledger.node.demo import Party

    name, _, org = text.partition("@")
    if not name or not org:
        raise FedLedgerError(f"{text!r} is not NAME@ORG (e.g. northwind@Manufacturer)")
    return Party(name, org)


def run_train(args: argparse.Namespace) -> int:
    from fedledger.fl.custody import Custody
    from fedledger.fl.rounds import NoiseMode
    from fedledger.network import open_network
    from fedledger.node.demo import DemoConfig, plot, train

    home = home_of(args)
    companies = tuple(_party(c) for c in args.company)
    if not companies:
        net = open_network(home)
        companies = tuple(_party(f"{o.name.lower()}-co@{o.name}") for o in net.config.companies)
    run = RunConfig(local_epochs=args.local_epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                    partitioner=Partitioner(args.partitioner), alpha=args.alpha, round_timeout=args.round_timeout,
                    label_epsilon=args.label_epsilon, dp_sgd_noise=args.dp_sgd_noise, dp_sgd_clip=args.dp_sgd_clip)
    config = DemoConfig(companies=companies, coordinator=_party(args.coordinator), dealer=_party(args.dealer),
                        model=args.model, rounds=args.rounds, task_id=args.task_id, threshold=args.threshold,
                        quorum=min(args.threshold, len(companies)), min_participants=max(1, len(companies) - 1),
                        epsilon_budget=args.epsilon, delta=args.delta, clip_norm=args.clip_norm,
                        noise_multiplier=args.noise_multiplier, noise_mode=NoiseMode(args.noise_mode),
                        key_bits=args.key_bits, custody=Custody(args.custody), run=run)
    result = train(home, config, progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    if args.plot:
        plot(result.metrics, args.plot)
    if args.json:
        print(json.dumps({"task_id": result.task_id, "model_sha256": result.model_sha256,
                          "model_path": str(result.model_path), "seconds": round(result.seconds, 2),
                          "rounds": result.metrics["rounds"]}, sort_keys=True))
        return 0
    print(f"task {result.task_id}: {len(result.metrics['rounds']) - 1} rounds in {result.seconds:.1f} s")
    print(f"{'ROUND':>5} {'ACCURACY':>9} {'LOSS':>8} {'EPSILON':>8} {'UPDATES':>8}  MODEL")
    for r in result.metrics["rounds"]:
        print(f"{r['round']:>5} {r['accuracy']:>9.4f} {r['loss']:>8.4f} {r['epsilon']:>8.3f} "
              f"{len(r.get('included', [])):>8}  {r['model_sha256'][:16]}")
    print(f"final model: {result.model_path} (sha256 {result.model_sha256}, as recorded on the ledger)")
    return 0
