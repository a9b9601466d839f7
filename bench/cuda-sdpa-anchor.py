#!/usr/bin/env python3
"""Dense decode-attention anchor for the CUDA benchmark: torch SDPA with the flash backend.

Llama-3.1-8B attention shape (32 query / 8 KV heads, head_dim 128, bf16), one decode query per
sequence, K/V contiguous [B, 8, n, 128] with enable_gqa (no K/V expansion). For each (B, n):
  eager: one call at a time, CUDA events, median of the timed calls (like docs ANCHORS.md);
  graph: L layers' calls (distinct K/V, as many as the C++ benchmark rotates through) captured in
         one CUDA graph, time / L per replay (the faster, launch-overhead-free configuration).
Writes JSON records (--json FILE); prints a table.
"""
import argparse
import json
import math
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def parse_list(s):
    out = []
    for t in s.split(","):
        if "/" in t:
            a, b = t.split("/")
            out.append(float(a) / float(b))
        else:
            out.append(float(t))
    return out


def median_ms(fn, reps, layers, stream):
    start = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    end = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    for i in range(reps):
        start[i].record(stream)
        fn()
        end[i].record(stream)
    torch.cuda.synchronize()
    t = sorted(s.elapsed_time(e) / layers for s, e in zip(start, end))
    return t[len(t) // 2], t[0], t[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", default="1,8,32")
    ap.add_argument("--ctx", default="8192,32768,131072,524288")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--rotate-bytes", type=float, default=256e6)
    ap.add_argument("--json")
    a = ap.parse_args()
    H, HKV, D = 32, 8, 128
    dev = torch.device("cuda")
    recs = []
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"{'B':>3} {'n':>7} {'eager_us':>9} {'graph_us':>9} {'GB/s(graph)':>11} backend")
    for B in [int(x) for x in parse_list(a.batch)]:
        for n in [int(x) for x in parse_list(a.ctx)]:
            kv_bytes = 2.0 * B * HKV * n * D * 2
            L = int(min(16, max(1, math.ceil(a.rotate_bytes / kv_bytes))))
            free, _ = torch.cuda.mem_get_info()
            if L * kv_bytes + 2e9 > 0.92 * free:
                print(f"{B:>3} {n:>7} skipped: needs {L * kv_bytes / 1e9:.1f} GB, {free / 1e9:.1f} GB free")
                recs.append({"B": B, "n": n, "impl": "torch_sdpa_flash", "skipped": "memory"})
                continue
            g = torch.Generator(device=dev).manual_seed(B * 1000003 + n)
            ks = [torch.rand(B, HKV, n, D, device=dev, dtype=torch.bfloat16, generator=g).mul_(2).sub_(1) for _ in range(L)]
            vs = [torch.rand(B, HKV, n, D, device=dev, dtype=torch.bfloat16, generator=g).mul_(2).sub_(1) for _ in range(L)]
            qs = [torch.randn(B, H, 1, D, device=dev, dtype=torch.bfloat16, generator=g) for _ in range(L)]
            outs = [None] * L
            backend = "flash"

            def one(i):
                with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                    outs[i] = F.scaled_dot_product_attention(qs[i], ks[i], vs[i], enable_gqa=True)

            try:
                one(0)
                torch.cuda.synchronize()
            except RuntimeError as e:  # report, do not silently change the anchor
                print(f"{B:>3} {n:>7} flash backend refused: {e}", file=sys.stderr)
                recs.append({"B": B, "n": n, "impl": "torch_sdpa_flash", "error": str(e)[:300]})
                del ks, vs, qs
                torch.cuda.empty_cache()
                continue
            stream = torch.cuda.current_stream()
            eager = median_ms(lambda: one(0), a.reps, 1, stream)
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for i in range(L):  # warm-up on the side stream before capture
                    one(i)
            torch.cuda.current_stream().wait_stream(s)
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for i in range(L):
                    one(i)
            gr = median_ms(graph.replay, a.reps, L, stream)
            kvb = 2.0 * B * HKV * n * D * 2
            print(f"{B:>3} {n:>7} {eager[0] * 1e3:>9.1f} {gr[0] * 1e3:>9.1f} {kvb / (gr[0] * 1e-3) / 1e9:>11.0f} {backend}")
            recs.append({"B": B, "n": n, "impl": "torch_sdpa_flash", "layers": L, "eager_ms": eager[0],
                         "eager_ms_min": eager[1], "eager_ms_max": eager[2], "graph_ms": gr[0],
                         "graph_ms_min": gr[1], "graph_ms_max": gr[2], "bytes": kvb,
                         "gbps_graph": kvb / (gr[0] * 1e-3) / 1e9, "torch": torch.__version__})
            del graph, ks, vs, qs, outs
            torch.cuda.empty_cache()
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "records": recs}, f, indent=1)


if __name__ == "__main__":
    main()
