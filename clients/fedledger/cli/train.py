"""``fedledger train``: a federated training task across the consortium's companies."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fedledger.errors import FedLedgerError
from fedledger.cli.options import add_common, home_of
from fedledger.fl.config import Partitioner, Protocol, RunConfig
from fedledger.fl.rounds import NoiseMode, PrivacyUnit
from fedledger.node.settings import DEMO, LOCAL_STEPS


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
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--task-id", default="")
    parser.add_argument("--data", type=Path, default=None, metavar="PATH",
                        help="the full dataset's directory, for a task that reads one (mnist-cnn: the four MNIST "
                             "IDX files; cifar10-cnn: cifar-10-batches-py); default: the bundled dataset")
    parser.add_argument("--privacy-unit", choices=[str(u) for u in PrivacyUnit], default=str(PrivacyUnit.RECORD),
                        help="record (default): DP for each record in every company's data; company: DP for a "
                             "company's whole dataset")
    parser.add_argument("--noise-mode", choices=[str(m) for m in NoiseMode], default=str(NoiseMode.DISTRIBUTED),
                        help="distributed (default): each company adds a share of the noise to what it encrypts; "
                             "local (record unit): each company runs DP-SGD itself; central (company unit): the "
                             "leader adds it after decryption")
    parser.add_argument("--epsilon", type=float, default=DEMO.epsilon_budget, help="the task's privacy budget")
    parser.add_argument("--delta", type=float, default=DEMO.delta)
    parser.add_argument("--clip-norm", type=float, default=DEMO.clip_norm,
                        help="S: each example's gradient (record unit) or each update (company unit) is clipped to it")
    parser.add_argument("--sample-rate", type=float, default=DEMO.sample_rate,
                        help="q, record unit: each record's chance to be in a step's batch (company unit: 1)")
    parser.add_argument("--steps-per-round", type=int, default=None,
                        help=f"DP-SGD steps a company takes each round in local mode (default {LOCAL_STEPS}); 1 "
                             "otherwise")
    parser.add_argument("--label-epsilon", type=float, default=0.0,
                        help="randomized response on each company's labels, once per task, with this epsilon "
                             "(paper 000); booked into the task's epsilon; 0: off")
    parser.add_argument("--noise-multiplier", type=float, default=0.0,
                        help="sigma of the Gaussian noise (x clip norm); 0 (default) picks the smallest that fits "
                             "--rounds in --epsilon")
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--custody", choices=("threshold", "escrow"), default="threshold",
                        help="threshold: t of the committee decrypt together; escrow: a master decrypts and t "
                             "members can rebuild its key if it fails (paper 000)")
    parser.add_argument("--threshold", type=int, default=2, help="committee shares needed to decrypt")
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=RunConfig.lr,
                        help="the companies' local learning rate (company unit, and local DP-SGD)")
    parser.add_argument("--server-lr", type=float, default=None,
                        help=f"the step the model takes along the decrypted average: default {DEMO.server_lr} for "
                             "record-level distributed DP (DP-SGD's step on the noised mean gradient), 1 (FedAvg) "
                             "otherwise")
    parser.add_argument("--server-momentum", type=float, default=RunConfig.server_momentum,
                        help="heavy-ball momentum of the model's step, in [0, 1) (0: none)")
    parser.add_argument("--min-participants", type=int, default=None,
                        help="the fewest updates a round may aggregate; the noise is split into this many shares "
                             "(default: one fewer than the companies)")
    parser.add_argument("--partitioner", choices=("iid", "dirichlet"), default="iid")
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--round-timeout", type=float, default=RunConfig.round_timeout,
                        help="seconds a round waits for companies' answers before going on without them")
    parser.add_argument("--protocol", choices=[str(p) for p in Protocol], default=str(Protocol.FEDLEDGER),
                        help="fedledger (default): the task's private protocol; plain-fedavg: a yardstick for "
                             "measuring it, through the same nodes and Flower deployment, with every update sent "
                             "in the clear and nothing recorded after the genesis (the demo's nodes opt in)")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG of accuracy and epsilon per round")
    parser.add_argument("--reference", action="store_true",
                        help="also train plain FedAvg (no privacy, no encryption) on the same data, partition and "
                             "rounds, in this process, and show its accuracy beside FedLedger's")
    parser.set_defaults(run=run_train)


def _party(text: str) -> Any:
    from fedledger.node.demo import Party

    name, _, org = text.partition("@")
    if not name or not org:
        raise FedLedgerError(f"{text!r} is not NAME@ORG (e.g. northwind@Manufacturer)")
    return Party(name, org)


def run_train(args: argparse.Namespace) -> int:
    from fedledger.fl.custody import Custody
    from fedledger.network import open_network
    from fedledger.node.demo import DemoConfig, plot, train

    home = home_of(args)
    companies = tuple(_party(c) for c in args.company)
    if not companies:
        net = open_network(home)
        companies = tuple(_party(f"{o.name.lower()}-co@{o.name}") for o in net.config.companies)
    unit, mode = PrivacyUnit(args.privacy_unit), NoiseMode(args.noise_mode)
    gradient_sum = unit is PrivacyUnit.RECORD and mode is NoiseMode.DISTRIBUTED
    server_lr = args.server_lr if args.server_lr is not None else DEMO.server_lr if gradient_sum else 1.0
    steps = args.steps_per_round if args.steps_per_round is not None else \
        LOCAL_STEPS if mode is NoiseMode.LOCAL else 1
    run = RunConfig(local_epochs=args.local_epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                    partitioner=Partitioner(args.partitioner), alpha=args.alpha, round_timeout=args.round_timeout,
                    server_lr=server_lr, server_momentum=args.server_momentum, protocol=Protocol(args.protocol))
    config = DemoConfig(companies=companies, coordinator=_party(args.coordinator), dealer=_party(args.dealer),
                        model=args.model, rounds=args.rounds, task_id=args.task_id, threshold=args.threshold,
                        quorum=min(args.threshold, len(companies)),
                        min_participants=args.min_participants or max(1, len(companies) - 1),
                        epsilon_budget=args.epsilon, delta=args.delta, clip_norm=args.clip_norm,
                        noise_multiplier=args.noise_multiplier, unit=unit, noise_mode=mode,
                        sample_rate=args.sample_rate if unit is PrivacyUnit.RECORD else 1.0, steps_per_round=steps,
                        label_epsilon=args.label_epsilon, data_path=args.data,
                        key_bits=args.key_bits, custody=Custody(args.custody), run=run)
    result = train(home, config, progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    reference = None
    if args.reference:
        from fedledger.fl.reference import plain_fedavg

        reference = plain_fedavg(config.model, companies=len(companies), rounds=config.rounds, run=run,
                                 data_path=args.data).accuracy
    if args.plot:
        plot(result.metrics, args.plot, reference)
    if args.json:
        print(json.dumps({"task_id": result.task_id, "model_sha256": result.model_sha256,
                          "model_path": str(result.model_path), "seconds": round(result.seconds, 2),
                          "rounds": result.metrics["rounds"],
                          "failed_rounds": result.metrics.get("failed_rounds", []),
                          **({"reference_accuracy": list(reference)} if reference else {})}, sort_keys=True))
        return 0
    print(f"task {result.task_id}: {len(result.metrics['rounds']) - 1} rounds in {result.seconds:.1f} s")
    print(f"{'ROUND':>5} {'ACCURACY':>9} {'LOSS':>8} {'EPSILON':>8} {'UPDATES':>8}"
          + (f" {'NO-PRIVACY':>10}" if reference else "") + "  MODEL")
    for r in result.metrics["rounds"]:
        print(f"{r['round']:>5} {r['accuracy']:>9.4f} {r['loss']:>8.4f} {r['epsilon']:>8.3f} "
              f"{len(r.get('included', [])):>8}" + (f" {reference[r['round']]:>10.4f}" if reference else "")
              + f"  {r['model_sha256'][:16]}")
    for failed in result.metrics.get("failed_rounds", []):
        print(f"failed: {failed['failed']}")
    if run.protocol is Protocol.PLAIN_FEDAVG:
        print("plain FedAvg, a yardstick: no privacy, every update sent in the clear, no round on the ledger")
        print(f"final model: {result.model_path} (sha256 {result.model_sha256}, not on the ledger)")
        return 0
    print(f"epsilon is {config.unit}-level: " + ("each record in every company's data" if config.unit == "record"
                                                 else "each company's whole dataset"))
    print(f"final model: {result.model_path} (sha256 {result.model_sha256}, as recorded on the ledger)")
    return 0
