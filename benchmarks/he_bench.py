"""Homomorphic encryption of one FL round, side by side: naive phe, FedLedger's packed Paillier, CKKS.

One run measures, for a model update of ``--params`` values from ``--clients`` companies:
online encryption of one update, weighted aggregation of all of them, decryption (single key and
threshold t-of-n), and ciphertext bytes per update. Naive python-paillier (one ciphertext per
value) is timed on a ``--naive-slice`` slice and scaled linearly, as the table says. TenSEAL CKKS
(what NVIDIA FLARE uses) is the reference for time and bytes. Prints a table, writes JSON.

    python benchmarks/he_bench.py                 # the README's figures (about 4 minutes)
    python benchmarks/he_bench.py --quick         # a small smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients"))

from fedledger.crypto.packing import Layout  # noqa: E402
from fedledger.crypto.paillier import RandomnessPool, generate_keypair  # noqa: E402
from fedledger.crypto.threshold import combine_partials, deal_threshold_key, partial_decrypt  # noqa: E402
from fedledger.crypto.vector import aggregate, decrypt_vector, encrypt_vector  # noqa: E402

T = TypeVar("T")
CLIP = 4.0  # the clip norm of 003_9658668e214f0ee6.txt's MNIST experiment
MAX_WEIGHT = 1024  # FedAvg weights n_k rescaled to at most 10 bits


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def bench_naive_phe(args: argparse.Namespace, updates: list[np.ndarray]) -> dict[str, float]:
    import phe

    public_key, private_key = phe.generate_paillier_keypair(n_length=args.key_bits)
    piece = updates[0][: args.naive_slice]
    scale = args.params / len(piece)
    encrypted, t_enc = timed(lambda: [public_key.encrypt(float(x)) for x in piece])
    # Aggregation on one client's slice added (clients - 1) times: the additions cost the same
    # for any values, and equal exponents spare phe its exponent alignment (favouring phe).
    def add_all() -> list[object]:
        acc = list(encrypted)
        for _ in range(args.clients - 1):
            acc = [a + b for a, b in zip(acc, encrypted)]
        return acc
    summed, t_agg = timed(add_all)
    _, t_dec = timed(lambda: [private_key.decrypt(c) for c in summed])
    ciphertext_bytes = (public_key.nsquare.bit_length() + 7) // 8
    return {
        "encrypt_s": t_enc * scale,
        "aggregate_s": t_agg * scale,
        "decrypt_s": t_dec * scale,
        "bytes_per_update": ciphertext_bytes * args.params,
        "per_value_encrypt_ms": t_enc / len(piece) * 1e3,
        "measured_values": len(piece),
    }


def bench_packed(args: argparse.Namespace, updates: list[np.ndarray], weights: list[int]) -> dict[str, float]:
    public_key, private_key = generate_keypair(key_bits=args.key_bits)
    layout = Layout(clip=CLIP, max_summands=args.clients, max_weight=MAX_WEIGHT)
    count = len(layout.pack(np.zeros(args.params, dtype=np.uint64), args.key_bits))
    pool = RandomnessPool(public_key)
    _, t_fill_1 = timed(lambda: pool.fill(count, workers=1))
    _, t_fill_2 = timed(lambda: pool.fill(count * (args.clients - 1), workers=2))
    pool.close()
    t_fill_2 /= args.clients - 1
    encrypted = []
    t_online = []
    for update in updates:
        vector, t = timed(lambda u=update: encrypt_vector(public_key, u, layout, pool=pool))
        encrypted.append(vector)
        t_online.append(t)
    total, t_agg = timed(lambda: aggregate(encrypted, weights))
    result, t_dec = timed(lambda: decrypt_vector(private_key, total))
    _, t_dec_2 = timed(lambda: decrypt_vector(private_key, total, workers=2))
    expected = sum(w * u for w, u in zip(weights, updates))
    error = float(np.abs(result - expected).max())
    out: dict[str, float] = {
        "encrypt_s": float(np.median(t_online)),
        "pool_fill_s_1_core": t_fill_1,
        "pool_fill_s_2_cores": t_fill_2,
        "aggregate_s": t_agg,
        "decrypt_s": t_dec,
        "decrypt_s_2_cores": t_dec_2,
        "bytes_per_update": len(encrypted[0].to_bytes()),
        "ciphertexts_per_update": len(encrypted[0].ciphertexts),
        "slots_per_ciphertext": layout.slots(args.key_bits),
        "max_abs_error": error,
        "error_bound": layout.error_bound(total.total_weight),
    }
    for t, n in args.thresholds:
        (tpk, shares), t_deal = timed(lambda t=t, n=n: deal_threshold_key(threshold=t, parties=n, key_bits=args.key_bits))
        th_vectors = [encrypt_vector(tpk.public_key, u, layout) for u in updates]
        th_total = aggregate(th_vectors, weights)
        member_times = []
        partials = []
        for share in shares[:t]:
            partial, t_member = timed(lambda s=share: partial_decrypt(s, th_total))
            partials.append(partial)
            member_times.append(t_member)
        combined, t_combine = timed(lambda: combine_partials(tpk, th_total, partials))
        th_error = float(np.abs(combined.values - expected).max())
        key = f"threshold_{t}_of_{n}"
        out[f"{key}_deal_s"] = t_deal
        out[f"{key}_member_max_s"] = max(member_times)
        out[f"{key}_combine_s"] = t_combine
        # Members are different companies on their own machines: they decrypt in parallel.
        out[f"{key}_wall_s"] = max(member_times) + t_combine
        out[f"{key}_cpu_s"] = sum(member_times) + t_combine
        out[f"{key}_max_abs_error"] = th_error
    return out


def bench_ckks(args: argparse.Namespace, updates: list[np.ndarray], weights: list[int]) -> dict[str, float] | None:
    try:
        import tenseal as ts
    except ImportError as err:
        print(f"TenSEAL not installed ({err}); CKKS column skipped. pip install '.[bench]'", file=sys.stderr)
        return None
    context = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=8192, coeff_mod_bit_sizes=[60, 40, 40, 60])
    context.global_scale = 2**40
    slots = 8192 // 2
    chunks = [slice(i, i + slots) for i in range(0, args.params, slots)]

    def encrypt(update: np.ndarray) -> list[object]:
        return [ts.ckks_vector(context, update[c].tolist()) for c in chunks]

    encrypted = []
    t_enc = []
    for update in updates:
        vector, t = timed(lambda u=update: encrypt(u))
        encrypted.append(vector)
        t_enc.append(t)

    def weighted_sum() -> list[object]:
        acc = [v * weights[0] for v in encrypted[0]]
        for w, vec in zip(weights[1:], encrypted[1:]):
            acc = [a + v * w for a, v in zip(acc, vec)]
        return acc

    total, t_agg = timed(weighted_sum)
    result, t_dec = timed(lambda: np.concatenate([np.array(v.decrypt()) for v in total]))
    expected = sum(w * u for w, u in zip(weights, updates))
    return {
        "encrypt_s": float(np.median(t_enc)),
        "aggregate_s": t_agg,
        "decrypt_s": t_dec,
        "bytes_per_update": sum(len(v.serialize()) for v in encrypted[0]),
        "max_abs_error": float(np.abs(result - expected).max()),
    }


def fmt(x: float | None, unit: str = "s") -> str:
    if x is None:
        return "-"
    if unit == "B":
        return f"{x / 1e6:.2f} MB" if x >= 1e5 else f"{x / 1e3:.1f} kB"
    return f"{x:.3g} s" if x >= 0.01 else f"{x * 1e3:.3g} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--naive-slice", type=int, default=2_000)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "he_bench.json")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--check", action="store_true", help="exit 1 if a goal is missed")
    args = parser.parse_args()
    args.thresholds = [(2, 3), (3, 5)]
    if args.quick:
        args.params, args.clients, args.key_bits, args.naive_slice = 3_000, 3, 1024, 100

    rng = np.random.default_rng(2025)
    updates = [np.clip(rng.normal(0.0, 1.0, args.params), -CLIP, CLIP) for _ in range(args.clients)]
    weights = [int(w) for w in rng.integers(100, MAX_WEIGHT + 1, args.clients)]

    print(f"update: {args.params:,} values, {args.clients} clients, {args.key_bits}-bit keys", file=sys.stderr)
    print("naive phe ...", file=sys.stderr)
    naive = bench_naive_phe(args, updates)
    print("packed Paillier ...", file=sys.stderr)
    ours = bench_packed(args, updates, weights)
    print("TenSEAL CKKS ...", file=sys.stderr)
    ckks = bench_ckks(args, updates, weights)

    rows = [
        ("online encrypt (1 update)", "encrypt_s", "s"),
        ("aggregate (all clients, weighted)", "aggregate_s", "s"),
        ("decrypt (single key)", "decrypt_s", "s"),
        ("bytes per update", "bytes_per_update", "B"),
    ]
    print(f"\nHE for one round: {args.params:,} parameters, {args.clients} clients, {args.key_bits}-bit Paillier")
    print(f"naive phe timed on {naive['measured_values']:,} values ({naive['per_value_encrypt_ms']:.2f} ms/value) and scaled to {args.params:,}\n")
    header = f"{'operation':<36}{'naive phe':>14}{'packed (ours)':>15}{'CKKS':>13}{'phe/ours':>10}{'CKKS/ours':>11}"
    print(header)
    print("-" * len(header))
    for label, key, unit in rows:
        c = ckks[key] if ckks else None
        ratio_c = f"{c / ours[key]:.2g}x" if c else "-"
        print(f"{label:<36}{fmt(naive[key], unit):>14}{fmt(ours[key], unit):>15}{fmt(c, unit):>13}"
              f"{naive[key] / ours[key]:>9.3g}x{ratio_c:>11}")
    for t, n in args.thresholds:
        k = f"threshold_{t}_of_{n}"
        print(f"{f'decrypt threshold {t}-of-{n} (wall)':<36}{'-':>14}{fmt(ours[k + '_wall_s']):>15}{'-':>13}"
              f"{'':>10}  {ours[k + '_wall_s'] / ours['decrypt_s']:.1f}x single-key")
        print(f"{f'  members total CPU':<36}{'-':>14}{fmt(ours[k + '_cpu_s']):>15}{'-':>13}"
              f"{'':>10}  {ours[k + '_cpu_s'] / ours['decrypt_s']:.1f}x single-key")
    print(f"\noffline r^n pool for one update: {fmt(ours['pool_fill_s_1_core'])} on 1 core, "
          f"{fmt(ours['pool_fill_s_2_cores'])} on 2 cores; {ours['ciphertexts_per_update']:.0f} ciphertexts "
          f"of {ours['slots_per_ciphertext']:.0f} slots")
    print(f"single-key decryption on 2 cores: {fmt(ours['decrypt_s_2_cores'])}")
    print(f"max |error| of the decrypted weighted sum: {ours['max_abs_error']:.4g} "
          f"(bound {ours['error_bound']:.4g}); CKKS {ckks['max_abs_error'] if ckks else float('nan'):.3g}")
    print("threshold wall = slowest member's partial decryption + verification and combination "
          "(members decrypt in parallel on their own machines); CPU = all members + combination")

    goals = {
        "online encrypt >= 300x faster than naive phe": naive["encrypt_s"] / ours["encrypt_s"] >= 300,
        "online encrypt no slower than CKKS": ckks is None or ours["encrypt_s"] <= ckks["encrypt_s"],
        "bytes >= 60x smaller than naive phe": naive["bytes_per_update"] / ours["bytes_per_update"] >= 60,
        "bytes >= 5x smaller than CKKS": ckks is None or ckks["bytes_per_update"] / ours["bytes_per_update"] >= 5,
    }
    for t, n in args.thresholds:
        goals[f"threshold {t}-of-{n} wall <= 8x single-key decrypt"] = (
            ours[f"threshold_{t}_of_{n}_wall_s"] <= 8 * ours["decrypt_s"]
        )
    print()
    if args.quick:
        print("goals not judged: they are set for 2048-bit keys and 100,000 parameters (run without --quick)")
    else:
        for goal, met in goals.items():
            print(f"goal {'met    ' if met else 'MISSED '} {goal}")

    report = {
        "command": " ".join(["python", "benchmarks/he_bench.py", *sys.argv[1:]]),
        "machine": {"python": platform.python_version(), "cpu_count": __import__("os").cpu_count(),
                    "platform": platform.platform()},
        "params": args.params, "clients": args.clients, "key_bits": args.key_bits,
        "naive_phe": naive, "packed": ours, "ckks": ckks,
        "goals": None if args.quick else goals,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {args.json}", file=sys.stderr)
    return 1 if args.check and not args.quick and not all(goals.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
