"""Ledger latency and throughput on a real Fabric consortium: submit->commit, its stages, evaluate.

One run brings the consortium of network/consortium.toml up natively in a temporary home on free
ports (or uses the running network in ``--home``), then measures through FedLedger's Fabric Gateway
client, with 1 client and with ``--clients`` concurrent clients (threads, each with its own Gateway
connection, spread over the companies' peers):

* submit->commit latency of ``RegisterCompany`` (from building the proposal to the commit status
  VALID), split into endorse, submit (to ordering) and commit wait;
* evaluate latency and throughput of ``GetCompany``.

Every submit registers a company with a fresh name and a fresh random certificate fingerprint, by an
org admin, so no two transactions touch the same key (no MVCC conflicts). Prints a table, writes JSON.

    python benchmarks/ledger_bench.py                     # full run (about 2 minutes)
    python benchmarks/ledger_bench.py --quick             # a small smoke run
    python benchmarks/ledger_bench.py --home ~/.fedledger # against a running network, left running
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients"))

from fedledger.errors import FedLedgerError, NetworkStateError  # noqa: E402
from fedledger.fabric.contract import Contract  # noqa: E402
from fedledger.fabric.gateway import Gateway, connect  # noqa: E402
from fedledger.fabric.identity import Identity, Signer  # noqa: E402
from fedledger.network import ConsortiumConfig, Layout, Network, open_network  # noqa: E402
from fedledger.network.ports import free_base_port  # noqa: E402

# The numbers the brief quotes for a Fabric Gateway client on loopback at BatchTimeout 200 ms.
REFERENCE = {"endorse_s": 0.005, "submit_s": 0.002, "submit_commit_p50_s": 0.215}
# Goals at --clients concurrent clients.
GOAL_P50_S = 0.25
GOAL_P99_S = 0.8


@dataclass(frozen=True)
class Profile:
    """What a client needs from the network's connection profile (connection.json)."""

    channel: str
    chaincode: str
    orgs: dict[str, Any]

    def gateway(self, org: str, user: str) -> Gateway:
        """A Gateway connection to ``org``'s peer as its ``user`` (admin or client)."""
        entry = self.orgs[org]
        peer, credentials = entry["peer"], entry["users"][user]
        identity = Identity(entry["msp_id"], Path(credentials["cert"]).read_bytes())
        signer = Signer.from_pem(Path(credentials["key"]).read_bytes())
        return connect(peer["address"], identity=identity, signer=signer,
                       tls_root_certificates=Path(peer["tls_ca"]).read_bytes(),
                       server_name=peer.get("server_name"))

    def contract(self, gateway: Gateway) -> Contract:
        return gateway.network(self.channel).contract(self.chaincode)


def summarize(samples: list[float]) -> dict[str, float | int | None]:
    """Count, mean and percentiles (linear interpolation) of ``samples`` in seconds."""
    if not samples:
        return {"n": 0, "mean_s": None, "p50_s": None, "p95_s": None, "p99_s": None, "max_s": None}
    a = np.asarray(samples)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"n": len(samples), "mean_s": float(a.mean()), "p50_s": float(p50), "p95_s": float(p95),
            "p99_s": float(p99), "max_s": float(a.max())}


def run_clients(count: int, work: Callable[[int, threading.Barrier], None]) -> float:
    """Run ``work(i, barrier)`` in ``count`` threads; return the wall time from the barrier to the last finish.

    Each worker connects first, then waits at the barrier, so connection set-up is not timed.
    """
    started: list[float] = []
    barrier = threading.Barrier(count + 1, action=lambda: started.append(time.perf_counter()))
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            work(i, barrier)
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)
            barrier.abort()

    threads = [threading.Thread(target=body, args=(i,), name=f"client-{i}") for i in range(count)]
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started[0]


class SubmitRecorder:
    """Per-transaction timings of RegisterCompany submits, shared by the client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total: list[float] = []
        self.endorse: list[float] = []
        self.submit: list[float] = []
        self.commit_wait: list[float] = []
        self.blocks: list[int] = []
        self.failures: list[str] = []
        self.registered: list[str] = []

    def one(self, contract: Contract, name: str, *, record: bool = True) -> None:
        """Register company ``name`` (fresh random fingerprint) and time each stage."""
        args = (name, "participant", os.urandom(32).hex())
        t0 = time.perf_counter()
        try:
            transaction = contract.new_proposal("RegisterCompany", args).endorse()
            t1 = time.perf_counter()
            submitted = transaction.submit()
            t2 = time.perf_counter()
            status = submitted.status()
            t3 = time.perf_counter()
        except FedLedgerError as err:
            with self.lock:
                self.failures.append(f"{name}: {type(err).__name__}: {str(err)[:300]}")
            return
        if not status.successful:
            with self.lock:
                self.failures.append(f"{name}: committed as {status.code} (tx {status.tx_id})")
            return
        with self.lock:
            self.registered.append(name)
        if record:
            with self.lock:
                self.total.append(t3 - t0)
                self.endorse.append(t1 - t0)
                self.submit.append(t2 - t1)
                self.commit_wait.append(t3 - t2)
                self.blocks.append(status.block_number)

    def report(self, wall_s: float) -> dict[str, Any]:
        per_block = np.bincount(np.unique(self.blocks, return_inverse=True)[1]) if self.blocks else np.array([])
        return {
            "submit_to_commit": summarize(self.total),
            "endorse": summarize(self.endorse),
            "submit": summarize(self.submit),
            "commit_wait": summarize(self.commit_wait),
            "wall_s": wall_s,
            "commits_per_s": len(self.total) / wall_s if wall_s > 0 else None,
            "blocks": int(len(per_block)),
            "tx_per_block_mean": float(per_block.mean()) if len(per_block) else None,
            "tx_per_block_max": int(per_block.max()) if len(per_block) else None,
            "failures": len(self.failures),
            "failure_examples": self.failures[:5],
            "registered": self.registered[:1],
        }


def bench_submits(profile: Profile, orgs: list[str], *, clients: int, per_client: int, warmup: int,
                  tag: str) -> dict[str, Any]:
    """``clients`` threads, client i as the admin of orgs[i % len(orgs)] on that org's peer, each
    submitting ``per_client`` RegisterCompany transactions back to back (after ``warmup`` untimed ones)."""
    recorder = SubmitRecorder()

    def work(i: int, barrier: threading.Barrier) -> None:
        with profile.gateway(orgs[i % len(orgs)], "admin") as gateway:
            contract = profile.contract(gateway)
            for k in range(warmup):
                recorder.one(contract, f"{tag}-c{i}-w{k}", record=False)
            barrier.wait()
            for k in range(per_client):
                recorder.one(contract, f"{tag}-c{i}-{k}")

    wall = run_clients(clients, work)
    out = recorder.report(wall)
    out.update({"clients": clients, "submits_per_client": per_client, "warmup_per_client": warmup})
    return out


def bench_evaluates(profile: Profile, orgs: list[str], *, clients: int, per_client: int, company: str) -> dict[str, Any]:
    """``clients`` threads, each a client user of orgs[i % len(orgs)] evaluating GetCompany on its peer."""
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []

    def work(i: int, barrier: threading.Barrier) -> None:
        with profile.gateway(orgs[i % len(orgs)], "client") as gateway:
            contract = profile.contract(gateway)
            contract.evaluate("GetCompany", (company,))  # warm the connection
            mine: list[float] = []
            barrier.wait()
            for _ in range(per_client):
                t0 = time.perf_counter()
                try:
                    contract.evaluate("GetCompany", (company,))
                except FedLedgerError as err:
                    with lock:
                        failures.append(f"{type(err).__name__}: {str(err)[:300]}")
                    continue
                mine.append(time.perf_counter() - t0)
            with lock:
                latencies.extend(mine)

    wall = run_clients(clients, work)
    return {"clients": clients, "evaluates_per_client": per_client, "latency": summarize(latencies),
            "wall_s": wall, "evaluates_per_s": len(latencies) / wall, "failures": len(failures),
            "failure_examples": failures[:5]}


def ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="use the running network in this home (left running)")
    parser.add_argument("--config", type=Path, default=None, help="consortium file (default network/consortium.toml)")
    parser.add_argument("--clients", type=int, default=10, help="concurrent clients of the concurrent runs")
    parser.add_argument("--submits", type=int, default=200, help="submits of the 1-client run")
    parser.add_argument("--submits-per-client", type=int, default=50, help="submits per client, concurrent run")
    parser.add_argument("--evaluates", type=int, default=1000, help="evaluates of the 1-client run")
    parser.add_argument("--evaluates-per-client", type=int, default=200, help="evaluates per client, concurrent run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed submits per client before timing")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "ledger_bench.json")
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--check", action="store_true", help="exit 1 if a goal is missed")
    args = parser.parse_args()
    if args.quick:
        args.submits, args.submits_per_client, args.evaluates, args.evaluates_per_client, args.warmup = 30, 10, 100, 20, 1
    if args.clients < 1 or min(args.submits, args.submits_per_client, args.evaluates, args.evaluates_per_client) < 1:
        parser.error("--clients and every count must be at least 1")

    began = time.perf_counter()
    if args.home is not None:
        try:
            existing = open_network(args.home.expanduser().resolve())
        except NetworkStateError as err:
            print(err, file=sys.stderr)
            return 2
        layout, config = existing.layout, existing.config
        runtime, net, up_seconds = existing.runtime.name, None, None
    else:
        base = free_base_port(3, start=37000)
        config = ConsortiumConfig.load(args.config, base_port=base) if args.config else ConsortiumConfig.load(base_port=base)
        layout = Layout(Path(tempfile.mkdtemp(prefix="fedledger-ledger-bench-")))
        runtime, net = "native", Network(config, layout.home)

    failed = True
    try:
        if net is not None:
            print(f"bringing the consortium up in {layout.home} (base port {config.base_port}) ...", file=sys.stderr)
            up = net.up(progress=lambda m: print(f"  {m}", file=sys.stderr))
            up_seconds = up.seconds
            print(f"  up in {up.seconds:.1f} s", file=sys.stderr)
        raw = json.loads(layout.profile.read_text())
        profile = Profile(raw["channel"], raw["chaincode"], raw["orgs"])
        orgs = sorted(profile.orgs)
        tag = f"bench-{uuid.uuid4().hex[:8]}"

        print(f"submit, 1 client: {args.submits} RegisterCompany ...", file=sys.stderr)
        one = bench_submits(profile, orgs, clients=1, per_client=args.submits, warmup=args.warmup, tag=f"{tag}-s1")
        print(f"submit, {args.clients} clients: {args.submits_per_client} each ...", file=sys.stderr)
        many = bench_submits(profile, orgs, clients=args.clients, per_client=args.submits_per_client,
                             warmup=args.warmup, tag=f"{tag}-s{args.clients}")
        registered = one["registered"] + many["registered"]
        if not registered:
            raise SystemExit("no submit committed, so there is no company to evaluate GetCompany on; "
                             f"first failure: {(one['failure_examples'] or ['-'])[0]}")
        company = registered[0]
        print(f"evaluate, 1 client: {args.evaluates} GetCompany ...", file=sys.stderr)
        eval_one = bench_evaluates(profile, orgs, clients=1, per_client=args.evaluates, company=company)
        print(f"evaluate, {args.clients} clients: {args.evaluates_per_client} each ...", file=sys.stderr)
        eval_many = bench_evaluates(profile, orgs, clients=args.clients, per_client=args.evaluates_per_client,
                                    company=company)
        failed = False
    finally:
        if net is not None:
            try:
                # A failed run keeps its logs (the processes are stopped either way).
                net.down(purge=not failed)
                print(f"network stopped{'' if not failed else f'; logs kept in {layout.logs}'}", file=sys.stderr)
            except FedLedgerError as err:
                print(f"tearing the network down failed: {err}", file=sys.stderr)
    run_seconds = time.perf_counter() - began

    n = args.clients
    s1, sn = one["submit_to_commit"], many["submit_to_commit"]
    print(f"\nLedger on Fabric v2.5, {runtime}, loopback: {len(orgs)} companies (one peer each), "
          f"{config.orderer_count} Raft orderers; BatchTimeout {config.batch_timeout}, "
          f"MaxMessageCount {config.max_message_count}")
    print(f"submit = RegisterCompany by an org admin (endorsed by a majority of orgs); "
          f"evaluate = GetCompany; {os.cpu_count()} CPUs shared by the network and the clients\n")
    header = f"{'measure':<34}{'1 client':>14}{f'{n} clients':>14}{'reference':>14}"
    print(header)
    print("-" * len(header))
    rows: list[tuple[str, str, str, str]] = [
        ("submit->commit p50", ms(s1["p50_s"]), ms(sn["p50_s"]), ms(REFERENCE["submit_commit_p50_s"])),
        ("submit->commit p95", ms(s1["p95_s"]), ms(sn["p95_s"]), "-"),
        ("submit->commit p99", ms(s1["p99_s"]), ms(sn["p99_s"]), "-"),
        ("submit->commit mean", ms(s1["mean_s"]), ms(sn["mean_s"]), "-"),
        ("  endorse p50", ms(one["endorse"]["p50_s"]), ms(many["endorse"]["p50_s"]), ms(REFERENCE["endorse_s"])),
        ("  submit to ordering p50", ms(one["submit"]["p50_s"]), ms(many["submit"]["p50_s"]), ms(REFERENCE["submit_s"])),
        ("  commit wait p50", ms(one["commit_wait"]["p50_s"]), ms(many["commit_wait"]["p50_s"]), "-"),
        ("commits/s", f"{one['commits_per_s']:.1f}", f"{many['commits_per_s']:.1f}", "-"),
        ("transactions per block (mean)", f"{one['tx_per_block_mean'] or 0:.1f}", f"{many['tx_per_block_mean'] or 0:.1f}", "-"),
        ("timed submits (failed)", f"{s1['n']} ({one['failures']})", f"{sn['n']} ({many['failures']})", "-"),
        ("evaluate p50", ms(eval_one["latency"]["p50_s"]), ms(eval_many["latency"]["p50_s"]), "-"),
        ("evaluate p99", ms(eval_one["latency"]["p99_s"]), ms(eval_many["latency"]["p99_s"]), "-"),
        ("evaluates/s", f"{eval_one['evaluates_per_s']:.0f}", f"{eval_many['evaluates_per_s']:.0f}", "-"),
        ("timed evaluates (failed)", f"{eval_one['latency']['n']} ({eval_one['failures']})",
         f"{eval_many['latency']['n']} ({eval_many['failures']})", "-"),
    ]
    for label, a, b, ref in rows:
        print(f"{label:<34}{a:>14}{b:>14}{ref:>14}")
    print(f"\nreference: the brief's figures (endorse ~5 ms, submit ~2 ms, submit->commit ~215 ms median at "
          f"BatchTimeout 200 ms); submit->commit runs from building the proposal to the commit status VALID")
    for result in (one, many, eval_one, eval_many):
        for example in result["failure_examples"]:
            print(f"failure: {example}", file=sys.stderr)

    failures = one["failures"] + many["failures"] + eval_one["failures"] + eval_many["failures"]
    goals = {
        f"submit->commit p50 <= {GOAL_P50_S} s at {n} clients": sn["p50_s"] is not None and sn["p50_s"] <= GOAL_P50_S,
        f"submit->commit p99 <= {GOAL_P99_S} s at {n} clients": sn["p99_s"] is not None and sn["p99_s"] <= GOAL_P99_S,
        "no failed submit or evaluate": failures == 0,
    }
    print()
    for goal, met in goals.items():
        print(f"{'PASS' if met else 'FAIL'}  {goal}")
    if args.quick:
        print(f"(--quick: p99 of {sn['n']} samples; run without --quick for the figures to quote)")
    print(f"run time {run_seconds:.0f} s" + (f" (network up {up_seconds:.1f} s)" if up_seconds else ""))

    report = {
        "command": " ".join(["python", "benchmarks/ledger_bench.py", *sys.argv[1:]]),
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
        "network": {"runtime": runtime, "home": None if net is not None else str(layout.home),
                    "brought_up_by_bench": net is not None, "up_seconds": up_seconds,
                    "batch_timeout": config.batch_timeout, "max_message_count": config.max_message_count,
                    "orderers": config.orderer_count, "companies": orgs},
        "quick": args.quick,
        "submit": {"clients_1": one, f"clients_{n}": many},
        "evaluate": {"clients_1": eval_one, f"clients_{n}": eval_many},
        "reference": REFERENCE,
        "goals": goals,
        "run_seconds": run_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {args.json}", file=sys.stderr)
    return 1 if args.check and not all(goals.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
