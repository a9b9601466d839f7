#!/usr/bin/env python3
"""Markdown tables from bench-attention JSON (--benchmark_format=json, with --benchmark_repetitions).

Usage: bench/attention-table.py out.json
Per line: median of the repetitions and [min, max]; ratios are of medians from the same run.
"""
import json
import statistics
import sys
from collections import defaultdict


def main(path):
    d = json.load(open(path))
    reps = defaultdict(list)
    extra = {}
    for b in d["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        name = b["run_name"].replace("/real_time", "")
        unit = {"ms": 1e-3, "us": 1e-6, "ns": 1e-9}[b["time_unit"]]
        reps[name].append(b["real_time"] * unit)
        extra[name] = b
    med = {k: statistics.median(v) for k, v in reps.items()}
    rng = {k: (min(v), max(v)) for k, v in reps.items()}

    def fmt(name):
        m = med[name] * 1e3
        lo, hi = (x * 1e3 for x in rng[name])
        return f"{m:.3g} [{lo:.3g}, {hi:.3g}]"

    ctx = d["context"]
    print(f"host {ctx.get('host_name')}, {ctx.get('num_cpus')} CPUs, simd {ctx.get('simd_target')}, "
          f"{ctx.get('date')}")
    threads = sorted({int(k.split("threads:")[1]) for k in med if k.startswith("memcpy")})
    print()
    print("| roofline | threads | median GB/s [min, max] |")
    print("|---|---|---|")
    bw = {}
    for kind in ("memcpy", "read"):
        for t in threads:
            n = f"{kind}/threads:{t}"
            gbs = [extra[n]["bytes_per_second"] / 1e9]
            bw[(kind, t)] = statistics.median(
                [float(x) for x in [extra[n]["bytes_per_second"]]]) / 1e9
            bytes_ = (2 if kind == "memcpy" else 1) * (512 << 20)
            vals = [bytes_ / x / 1e9 for x in reps[n]]
            print(f"| {kind} ({'read+write' if kind == 'memcpy' else 'read only'}) | {t} | "
                  f"{statistics.median(vals):.1f} [{min(vals):.1f}, {max(vals):.1f}] |")
            bw[(kind, t)] = statistics.median(vals)
    print()
    print("Dense decode attention (one layer, fp16 KV) vs the memory roofline (K+V bytes / bandwidth).")
    print()
    print("| shape | n | threads | dense ms, median [min, max] | GB/s | roofline ms (memcpy / read) | dense / roofline (memcpy / read) |")
    print("|---|---|---|---|---|---|---|")
    dense = sorted((k for k in med if k.startswith("dense/")),
                   key=lambda k: (k.split("/")[1], int(k.split("n:")[1].split("/")[0]), k))
    for k in dense:
        _, shape, n, t = k.split("/")
        t = int(t.split(":")[1])
        by = extra[k]["bytes"]
        r_c = by / (bw[("memcpy", t)] * 1e9)
        r_r = by / (bw[("read", t)] * 1e9)
        print(f"| {shape} | {n[2:]} | {t} | {fmt(k)} | {by / med[k] / 1e9:.1f} | {r_c * 1e3:.3g} / {r_r * 1e3:.3g} | "
              f"{med[k] / r_c:.2f} / {med[k] / r_r:.2f} |")
    print()
    print("Hash sparse decode (query MLP encode + score + histogram select, then sparse attention), ms median "
          "[min, max]; speedup = dense median / total median. Density counts sinks 128 + window 128.")
    print()
    print("| shape | n | threads | GQA mode | density | select ms | total ms | speedup vs dense |")
    print("|---|---|---|---|---|---|---|---|")
    for k in dense:
        _, shape, n, t = k.split("/")
        for mode in ("per_head", "per_group"):
            for inv in (8, 16, 32):
                tail = f"{mode}/density:1_{inv}/{shape}/{n}/{t}"
                s, tot = f"hash_select/{tail}", f"hash_total/{tail}"
                if s not in med or tot not in med:
                    continue
                print(f"| {shape} | {n[2:]} | {t[8:]} | {mode} | 1/{inv} | {fmt(s)} | {fmt(tot)} | "
                      f"{med[k] / med[tot]:.1f}x |")


if __name__ == "__main__":
    main(sys.argv[1])
