"""Dealerless threshold Paillier keys (fedledger.crypto.dkg): candidates, rounds, bytes and compute time.

Runs the whole protocol for ``--parties`` members in this one process, ``--keys`` times per size:
distributed sieving, N by BGW multiplication, public trial division, the Boneh-Franklin test, and
the key derivation. Reports per key the candidates at each stage, message rounds and bytes, and
CPU time two ways: all members added up (this process's cost) and the critical path (the slowest
member of each round, added up: what members on their own machines would wait for, before any
network latency). CPU time, not wall time, so that other work on the machine does not inflate it.
Network time is not simulated; the table gives what to multiply:

    T(key) ~= critical path + rounds * RTT + (bytes per member) / bandwidth

Each key is checked: p and q are rebuilt from the shares (test-only) and tested for primality,
and a ciphertext under N is decrypted 2-of-3. The trusted dealer's deal_threshold_key (safe
primes) is timed once per size for comparison, with one partial decryption per ciphertext.

    python benchmarks/dkg_bench.py            # 20 keys at 1024 bits, 10 at 2048 (README figures)
    python benchmarks/dkg_bench.py --quick    # 512 bits, 2 keys: a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import gmpy2
import numpy as np
from gmpy2 import mpz

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients"))

from fedledger.crypto.dkg import (  # noqa: E402
    Committee,
    DkgParameters,
    DkgStats,
    combine_partials,
    partial_decrypt,
)
from fedledger.crypto.packing import Layout  # noqa: E402
from fedledger.crypto.threshold import combine_partials as threshold_combine  # noqa: E402
from fedledger.crypto.threshold import deal_threshold_key  # noqa: E402
from fedledger.crypto.threshold import partial_decrypt as threshold_partial  # noqa: E402
from fedledger.crypto.vector import encrypt_vector  # noqa: E402

MODULUS_STEPS = ("sieve", "multiply", "open_sieved", "open_modulus")
TEST_STEPS = ("jacobi", "confirm", "open_gcd", "accept")
CIPHERTEXTS = 8  # ciphertexts decrypted per key to time partial decryption


def expected_moduli(params: DkgParameters) -> float:
    """Expected N computed per key: 1 / Pr[p prime | no factor up to B1]^2, with Mertens' theorem.

    Pr[p prime | p odd, coprime to the odd primes up to B1] ~= e^gamma ln(B1) / ln(2^l).
    """
    gamma = 0.5772156649
    q = math.exp(gamma) * math.log(params.sieve_bound) / (params.factor_bits * math.log(2))
    return 1 / (q * q)


def subtract(after: DkgStats, before: DkgStats) -> dict[str, float]:
    return {
        "rounds": after.rounds - before.rounds,
        "messages": after.messages - before.messages,
        "bytes_sent": after.bytes_sent - before.bytes_sent,
        "cpu_s": after.cpu_s - before.cpu_s,
        "critical_path_s": after.critical_path_s - before.critical_path_s,
    }


def one_key(params: DkgParameters, batch_size: int) -> dict[str, object]:
    committee = Committee(params)
    start = time.process_time()
    modulus = committee.generate_modulus(batch_size=batch_size)
    cpu_modulus = time.process_time() - start
    after_modulus = committee.stats
    start = time.process_time()
    public, shares = committee.derive_key()
    cpu_key = time.process_time() - start
    after_key = committee.stats

    # Test-only check: rebuild p and q from every member's shares.
    p = sum((m.p_share for m in committee.members), mpz(0))
    q = sum((m.q_share for m in committee.members), mpz(0))
    biprime = bool(p * q == modulus and gmpy2.is_prime(p) and gmpy2.is_prime(q) and modulus.bit_length() == params.key_bits)
    pk = public.public_key
    plaintexts = [mpz(k * 1_000_003) for k in range(CIPHERTEXTS)]
    ciphertexts = [pk.raw_encrypt(m) for m in plaintexts]
    t0 = time.process_time()
    partials = [partial_decrypt(s, ciphertexts) for s in shares[: params.threshold]]
    t_partial = (time.process_time() - t0) / params.threshold
    t0 = time.process_time()
    decrypted = combine_partials(public, partials)
    t_combine = time.process_time() - t0

    s = after_modulus
    per_member_bytes = s.bytes_sent / params.parties
    return {
        "biprime_checked": biprime,
        "decrypts": decrypted == plaintexts,
        "batches": s.batches,
        "sieved": s.sieved,
        "moduli": s.moduli,
        "trial_division_survivors": s.trial_division_survivors,
        "jacobi_passed": s.jacobi_passed,
        "modulus": {
            "rounds": s.rounds,
            "step_rounds": s.step_rounds,
            "messages": s.messages,
            "bytes_sent": s.bytes_sent,
            "bytes_per_member": per_member_bytes,
            "cpu_s": s.cpu_s,
            "critical_path_s": s.critical_path_s,
            "process_cpu_s": cpu_modulus,
            "step_cpu_s": s.step_cpu_s,
            "step_critical_path_s": s.step_critical_path_s,
        },
        "key": {**subtract(after_key, after_modulus), "process_cpu_s": cpu_key},
        "partial_decrypt_s_per_ciphertext": t_partial / CIPHERTEXTS,
        "combine_s_per_ciphertext": t_combine / CIPHERTEXTS,
        "share_bits": max(int(abs(sh.secret).bit_length()) for sh in shares),
    }


def dealer(key_bits: int, parties: int, threshold: int) -> dict[str, float]:
    start = time.process_time()
    tpk, shares = deal_threshold_key(threshold=threshold, parties=parties, key_bits=key_bits)
    t_deal = time.process_time() - start
    layout = Layout(clip=2.0, max_summands=5, max_weight=100, value_bits=12)
    slots = layout.slots(key_bits)
    vector = encrypt_vector(tpk.public_key, np.zeros(slots * CIPHERTEXTS), layout)
    start = time.process_time()
    partials = [threshold_partial(s, vector) for s in shares[:threshold]]
    t_partial = (time.process_time() - start) / threshold
    start = time.process_time()
    threshold_combine(tpk, vector, partials)
    t_combine = time.process_time() - start
    n = len(vector.ciphertexts)
    return {
        "deal_s": t_deal,
        "partial_decrypt_s_per_ciphertext": t_partial / n,
        "combine_s_per_ciphertext": t_combine / n,
        "share_bits": max(int(s.secret.bit_length()) for s in shares),
    }


def summarize(params: DkgParameters, keys: list[dict[str, object]], batch_size: int) -> dict[str, object]:
    def values(path: str) -> list[float]:
        out = []
        for k in keys:
            x: object = k
            for part in path.split("."):
                x = x[part]  # type: ignore[index]
            out.append(float(x))  # type: ignore[arg-type]
        return out

    def stats(path: str) -> dict[str, float]:
        v = values(path)
        return {"mean": statistics.mean(v), "median": statistics.median(v), "min": min(v), "max": max(v)}

    moduli = sum(values("moduli"))
    survivors = sum(values("trial_division_survivors"))
    step_cpu: dict[str, float] = {}
    step_crit: dict[str, float] = {}
    for k in keys:
        for name, t in k["modulus"]["step_cpu_s"].items():  # type: ignore[index]
            step_cpu[name] = step_cpu.get(name, 0.0) + t
        for name, t in k["modulus"]["step_critical_path_s"].items():  # type: ignore[index]
            step_crit[name] = step_crit.get(name, 0.0) + t
    # Per-candidate costs: the sieving and product steps scale with the N computed; the first-base
    # step with the trial-division survivors (its trial division itself is ~50 us per N and member).
    per_modulus_cpu = sum(step_cpu.get(s, 0.0) for s in MODULUS_STEPS) / moduli
    per_modulus_crit = sum(step_crit.get(s, 0.0) for s in MODULUS_STEPS) / moduli
    per_survivor_cpu = step_cpu.get("jacobi", 0.0) / survivors
    per_survivor_crit = step_crit.get("jacobi", 0.0) / survivors
    expected = expected_moduli(params)
    survival = survivors / moduli
    return {
        "keys": len(keys),
        "batch_size": batch_size,
        "sieve_bound": params.sieve_bound,
        "sieve_modulus_bits": int(params.sieve_modulus.bit_length()),
        "trial_division_bound": params.trial_division_bound,
        "sieve_field_bits": int(params.sieve_field.bit_length()),
        "key_field_bits": int(params.key_field.bit_length()),
        "rounds_per_batch": params.rounds_per_batch,
        "moduli": stats("moduli"),
        "moduli_expected_by_mertens": expected,
        "trial_division_survivors": stats("trial_division_survivors"),
        "batches": stats("batches"),
        "modulus_rounds": stats("modulus.rounds"),
        "modulus_bytes_per_member": stats("modulus.bytes_per_member"),
        "modulus_cpu_s": stats("modulus.cpu_s"),
        "modulus_critical_path_s": stats("modulus.critical_path_s"),
        "key_rounds": stats("key.rounds"),
        "key_cpu_s": stats("key.cpu_s"),
        "key_critical_path_s": stats("key.critical_path_s"),
        "per_modulus_cpu_ms": per_modulus_cpu * 1e3,
        "per_modulus_critical_path_ms": per_modulus_crit * 1e3,
        "per_trial_division_survivor_cpu_ms": per_survivor_cpu * 1e3,
        "per_trial_division_survivor_critical_path_ms": per_survivor_crit * 1e3,
        "trial_division_survival": survival,
        # Expected compute per key from the per-candidate costs and Mertens' expected count.
        "expected_critical_path_s": expected * (per_modulus_crit + survival * per_survivor_crit),
        "expected_cpu_s": expected * (per_modulus_cpu + survival * per_survivor_cpu),
        "partial_decrypt_ms_per_ciphertext": statistics.mean(values("partial_decrypt_s_per_ciphertext")) * 1e3,
        "combine_ms_per_ciphertext": statistics.mean(values("combine_s_per_ciphertext")) * 1e3,
        "share_bits": max(values("share_bits")),
        "all_checked": all(k["biprime_checked"] and k["decrypts"] for k in keys),
    }


def fmt_s(x: float) -> str:
    return f"{x:.3g} s" if x >= 0.01 else f"{x * 1e3:.3g} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-bits", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--keys", type=int, nargs="+", default=[20, 10], help="keys generated per size (one number, or one per size)")
    parser.add_argument("--parties", type=int, default=3)
    parser.add_argument("--threshold", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128, help="candidate pairs per batch")
    parser.add_argument("--no-dealer", action="store_true", help="skip timing the trusted dealer")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "dkg_bench.json")
    parser.add_argument("--quick", action="store_true", help="512-bit keys, 2 of them: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.key_bits, args.keys, args.batch_size = [512], [2], 64
    if len(args.keys) not in (1, len(args.key_bits)):
        parser.error("--keys takes one count, or one per --key-bits size")
    keys_per_size = dict(zip(args.key_bits, args.keys * len(args.key_bits) if len(args.keys) == 1 else args.keys))

    results: dict[str, object] = {}
    for key_bits in args.key_bits:
        start = time.process_time()
        params = DkgParameters(key_bits=key_bits, parties=args.parties, threshold=args.threshold)
        t_params = time.process_time() - start  # the public field primes, once per size
        keys = []
        for k in range(keys_per_size[key_bits]):
            print(f"{key_bits} bits: key {k + 1}/{keys_per_size[key_bits]} ...", file=sys.stderr)
            keys.append(one_key(params, args.batch_size))
            r = keys[-1]
            print(f"  {r['moduli']} N computed, {r['trial_division_survivors']} tested, "
                  f"{fmt_s(r['modulus']['cpu_s'])} CPU, {fmt_s(r['modulus']['critical_path_s'])} critical path",  # type: ignore[index]
                  file=sys.stderr)
        summary = summarize(params, keys, args.batch_size)
        dealt = None if args.no_dealer else dealer(key_bits, args.parties, args.threshold)
        summary["parameters_s"] = t_params
        results[str(key_bits)] = {"summary": summary, "keys": keys, "dealer": dealt}

    print(f"\nDealerless threshold Paillier key, {args.parties} members, {args.threshold}-of-{args.parties}, "
          f"batches of {args.batch_size} candidate pairs, one process\n")
    header = f"{'':<44}" + "".join(f"{kb:>16}" for kb in args.key_bits)
    print(header)
    print("-" * len(header))

    def row(label: str, fn: object) -> None:
        cells = []
        for kb in args.key_bits:
            res = results[str(kb)]
            cells.append(f"{fn(res):>16}")  # type: ignore[operator]
        print(f"{label:<44}" + "".join(cells))

    S = lambda r: r["summary"]  # noqa: E731
    row("keys generated", lambda r: f"{S(r)['keys']}")
    row("sieve bound B1 (p, q have no factor <= B1)", lambda r: f"{S(r)['sieve_bound']}")
    row("N computed per key (mean; median)", lambda r: f"{S(r)['moduli']['mean']:.0f}; {S(r)['moduli']['median']:.0f}")
    row("  expected (Mertens)", lambda r: f"{S(r)['moduli_expected_by_mertens']:.0f}")
    row("biprimality tests per key (mean)", lambda r: f"{S(r)['trial_division_survivors']['mean']:.0f}")
    row("batches per key (mean)", lambda r: f"{S(r)['batches']['mean']:.1f}")
    row("rounds per batch", lambda r: f"{S(r)['rounds_per_batch']}")
    row("rounds per key: modulus (mean) + key", lambda r: f"{S(r)['modulus_rounds']['mean']:.0f} + {S(r)['key_rounds']['mean']:.0f}")
    row("bytes sent per member, modulus (mean)", lambda r: f"{S(r)['modulus_bytes_per_member']['mean'] / 1e6:.1f} MB")
    row("compute, all members (mean; max)", lambda r: f"{fmt_s(S(r)['modulus_cpu_s']['mean'])}; {fmt_s(S(r)['modulus_cpu_s']['max'])}")
    row("compute, critical path (mean; max)", lambda r: f"{fmt_s(S(r)['modulus_critical_path_s']['mean'])}; {fmt_s(S(r)['modulus_critical_path_s']['max'])}")
    row("  per N computed, critical path", lambda r: f"{S(r)['per_modulus_critical_path_ms']:.3f} ms")
    row("  per biprimality test, critical path", lambda r: f"{S(r)['per_trial_division_survivor_critical_path_ms']:.2f} ms")
    row("  expected from these x Mertens", lambda r: fmt_s(S(r)["expected_critical_path_s"]))
    row("public parameters (field primes), once", lambda r: fmt_s(S(r)["parameters_s"]))
    row("key derivation, critical path (mean)", lambda r: fmt_s(S(r)["key_critical_path_s"]["mean"]))
    row("partial decryption per ciphertext", lambda r: f"{S(r)['partial_decrypt_ms_per_ciphertext']:.1f} ms")
    row("key share bits", lambda r: f"{S(r)['share_bits']:.0f}")
    if not args.no_dealer:
        row("trusted dealer: deal (safe primes)", lambda r: fmt_s(r["dealer"]["deal_s"]))
        row("trusted dealer: partial decryption/ct", lambda r: f"{r['dealer']['partial_decrypt_s_per_ciphertext'] * 1e3:.1f} ms")
        row("trusted dealer: key share bits", lambda r: f"{r['dealer']['share_bits']:.0f}")
    row("every key biprime and decrypts", lambda r: "yes" if S(r)["all_checked"] else "NO")
    print("\ncritical path = the slowest member of each round, added up (members on their own machines);"
          "\nadd rounds x RTT and bytes / bandwidth for the network. All members = this process's CPU time.")

    report = {
        "command": " ".join(["python", "benchmarks/dkg_bench.py", *sys.argv[1:]]),
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
        "parties": args.parties, "threshold": args.threshold, "batch_size": args.batch_size,
        "network_formula": "T ~= critical_path_s + rounds * RTT + bytes_per_member / bandwidth",
        "results": results,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, sort_keys=True, default=int) + "\n")
    print(f"\nwrote {args.json}", file=sys.stderr)
    ok = all(results[str(kb)]["summary"]["all_checked"] for kb in args.key_bits)  # type: ignore[index]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
