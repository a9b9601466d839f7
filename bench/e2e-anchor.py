#!/usr/bin/env python3
"""End-to-end dense decode anchor for the GPU benchmark: a Llama decoder in plain PyTorch.

The model has Llama-3.1-8B's shape by default (flags below), random bf16 weights drawn on the device
from a seed, a fused QKV projection and a fused gate/up projection, RMSNorm, RoPE with Llama 3.1's
frequency scaling, SwiGLU, a static KV cache [B, n_kv, ctx, head_dim] (bf16) per layer, torch SDPA
forced to the flash backend, and greedy argmax on the device. One decode step of B sequences (every
sequence at position ctx - 1, attending over the cache's ctx tokens) is captured once as a CUDA graph
whose inputs (token ids, position) are static device tensors, and replayed.

GQA is tried two ways, each captured and timed; the fastest that runs is kept (both are in the JSON):
  flash-gqa:     SDPA(q [B, H, 1, d], K, V, enable_gqa=True)
  flash-grouped: SDPA(q viewed as [B, n_kv, H / n_kv, d], K, V): a group's query heads become query
                 rows of their KV head (exact for a decode step, which attends over every cached token)
B = 1 rows are also timed eagerly (no graph), with the kept variant.

Before timing, a self-check compares the decode step (eagerly and, on CUDA, through a captured graph)
with a separate non-cached full-sequence forward in fp32 at a small shape; it fails the run when the
logits differ by more than the tolerance, or when a step fed the wrong cache does NOT differ.

Rows whose KV cache does not fit next to the weights are reported as not fitting (computed before
allocating). The KV cache holds random values: the step's cost does not depend on them.

Output: a table on stdout, and with --json FILE (the C++ benchmark writes the same fields):
  {"device", "torch", "copy_gbps", "shape": {...}, "selfcheck": {...},
   "rows": [{"impl": "anchor", "policy": "dense", "variant", "batch", "ctx", "fits", "ms", "ms_min",
             "ms_max", "ms_p10", "ms_p90", "reps", "tokens_per_s", "weight_bytes", "kv_bytes", "bytes",
             "roofline_ms", "kept"}]}
  bytes = weight_bytes (every weight a step reads: all layers, final norm, output head, and the B
  embedding rows looked up) + kv_bytes (K and V of ctx tokens, every layer and sequence);
  roofline_ms = bytes / copy bandwidth (device-to-device copy, bytes read + written per second).

usage: e2e-anchor.py [--batch 1,8,16] [--ctx 8192,32768,131072] [--reps 30] [--json FILE]
       e2e-anchor.py --device cpu --tiny          (tiny shape, eager, on the CPU: exercises the code)
"""
import argparse
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

LLAMA31_8B = dict(layers=32, embd=4096, ff=14336, heads=32, kv_heads=8, head_dim=128, vocab=128256)
TINY = dict(layers=2, embd=128, ff=384, heads=8, kv_heads=2, head_dim=16, vocab=512)
CHECK_SHAPE = dict(layers=2, embd=256, ff=512, heads=8, kv_heads=2, head_dim=32, vocab=1000)
BF16 = 2  # bytes


class Shape:
    def __init__(self, dims, rope_base, rope_scaling, eps):
        self.layers, self.embd, self.ff = dims["layers"], dims["embd"], dims["ff"]
        self.heads, self.kv_heads, self.head_dim, self.vocab = (
            dims["heads"], dims["kv_heads"], dims["head_dim"], dims["vocab"])
        if self.heads % self.kv_heads or self.head_dim % 2:
            raise SystemExit("e2e-anchor: heads must be a multiple of kv-heads and head-dim even")
        self.rope_base, self.rope_scaling, self.eps = rope_base, rope_scaling, eps

    def dims(self):
        return dict(layers=self.layers, embd=self.embd, ff=self.ff, heads=self.heads, kv_heads=self.kv_heads,
                    head_dim=self.head_dim, vocab=self.vocab)


# ---- RoPE ----
def rope_inv_freq(shape):
    """Per-pair inverse frequencies (float64), with Llama 3.1's scaling when rope_scaling is set:
    (factor, low_freq_factor, high_freq_factor, original context). Wavelengths shorter than
    original / high_freq_factor keep their frequency, longer than original / low_freq_factor are
    divided by factor, and the band between blends the two linearly in original / wavelength."""
    d = shape.head_dim
    inv = 1.0 / shape.rope_base ** (np.arange(0, d, 2, dtype=np.float64) / d)
    if shape.rope_scaling is None:
        return inv
    factor, low, high, orig = shape.rope_scaling
    wavelen = 2.0 * math.pi / inv
    blend = np.clip((orig / wavelen - low) / (high - low), 0.0, 1.0)  # 0: long waves, 1: short waves
    return (1.0 - blend) * inv / factor + blend * inv


def rope_tables(shape, n_pos, device):
    """cos and sin of position x frequency, [n_pos, head_dim / 2] fp32 (angles in float64)."""
    ang = np.outer(np.arange(n_pos, dtype=np.float64), rope_inv_freq(shape))
    return (torch.tensor(np.cos(ang), dtype=torch.float32, device=device),
            torch.tensor(np.sin(ang), dtype=torch.float32, device=device))


def apply_rope(x, cos, sin):
    """x [..., head_dim] bf16, rotating the pairs (2i, 2i + 1); cos/sin broadcast to [..., head_dim / 2]."""
    xf = x.float().unflatten(-1, (-1, 2))
    x0, x1 = xf[..., 0], xf[..., 1]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2).to(x.dtype)


# ---- weights ----
def make_weights(shape, device, seed, dtype=torch.bfloat16):
    g = torch.Generator(device=device)
    g.manual_seed(seed)

    def normal(rows, cols, std):
        t = torch.empty(rows, cols, device=device, dtype=dtype)
        return t.normal_(0.0, std, generator=g)

    def norm_weight(n):
        return torch.empty(n, device=device, dtype=dtype).normal_(1.0, 0.1, generator=g)

    E, H, KV, D, FF = shape.embd, shape.heads, shape.kv_heads, shape.head_dim, shape.ff
    w = {"emb": normal(shape.vocab, E, 1.0), "layers": []}
    for _ in range(shape.layers):
        w["layers"].append({
            "attn_norm": norm_weight(E),
            "wqkv": normal((H + 2 * KV) * D, E, E ** -0.5),   # rows: q heads, k heads, v heads
            "wo": normal(E, H * D, (H * D) ** -0.5),
            "ffn_norm": norm_weight(E),
            "w13": normal(2 * FF, E, E ** -0.5),              # rows: gate, then up
            "w2": normal(E, FF, FF ** -0.5),
        })
    w["norm"] = norm_weight(E)
    w["out"] = normal(shape.vocab, E, E ** -0.5)
    return w


def weight_alloc_bytes(shape):
    E, H, KV, D, FF = shape.embd, shape.heads, shape.kv_heads, shape.head_dim, shape.ff
    per_layer = 2 * E + (H + 2 * KV) * D * E + E * H * D + 2 * FF * E + E * FF
    return BF16 * (shape.layers * per_layer + E + 2 * shape.vocab * E)


def weight_read_bytes(shape, B):
    """What one step reads of the weights: everything but the embedding table, of which B rows."""
    return weight_alloc_bytes(shape) - BF16 * (shape.vocab - B) * shape.embd


def kv_bytes(shape, B, ctx):
    return 2 * shape.layers * B * shape.kv_heads * ctx * shape.head_dim * BF16


# ---- the decode step ----
def attend_flash_gqa(q, k, v):
    return F.scaled_dot_product_attention(q.unsqueeze(2), k, v, enable_gqa=True).squeeze(2)


def attend_flash_grouped(q, k, v):
    B, H, D = q.shape
    # reshape, not view: the flash backend may return the [B, n_kv, G, d] result with G outermost in memory
    return F.scaled_dot_product_attention(q.view(B, k.shape[1], H // k.shape[1], D), k, v).reshape(B, H, D)


VARIANTS = {"flash-gqa": attend_flash_gqa, "flash-grouped": attend_flash_grouped}


def rms_norm(x, w, eps):
    return F.rms_norm(x, (x.shape[-1],), w, eps)


def decode_step(shape, w, cache, tokens, pos, rope, attend):
    """One decode step: tokens [B] (int64) at position pos ([1], int64; every sequence at the same
    position), K/V of the new token written into cache[l] = (K, V) [B, n_kv, ctx, d] at pos, attention
    over the whole cache. Returns the logits [B, vocab] (bf16)."""
    B = tokens.shape[0]
    H, KV, D = shape.heads, shape.kv_heads, shape.head_dim
    cos, sin = rope[0].index_select(0, pos), rope[1].index_select(0, pos)  # [1, D / 2]
    h = F.embedding(tokens, w["emb"])                                       # [B, E], the residual
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        for lw, (kc, vc) in zip(w["layers"], cache):
            qkv = F.linear(rms_norm(h, lw["attn_norm"], shape.eps), lw["wqkv"])
            qk = apply_rope(qkv[:, :(H + KV) * D].view(B, H + KV, D), cos, sin)
            kc.index_copy_(2, pos, qk[:, H:].unsqueeze(2))
            vc.index_copy_(2, pos, qkv[:, (H + KV) * D:].view(B, KV, 1, D))
            y = attend(qk[:, :H], kc, vc)                                   # [B, H, D]
            h.addmm_(y.reshape(B, H * D), lw["wo"].t())
            gate, up = F.linear(rms_norm(h, lw["ffn_norm"], shape.eps), lw["w13"]).chunk(2, dim=-1)
            h.addmm_(F.silu(gate) * up, lw["w2"].t())
    return F.linear(rms_norm(h, w["norm"], shape.eps), w["out"])


def greedy_step(shape, w, cache, tokens, pos, rope, attend):
    """decode_step, then the argmax token fed back into tokens (the next step's input)."""
    logits = decode_step(shape, w, cache, tokens, pos, rope, attend)
    tokens.copy_(logits.argmax(dim=-1))
    return logits


# ---- reference: full sequence, no cache, fp32, written independently of decode_step ----
def reference_forward(shape, w, tokens):
    """tokens [B, T] -> logits [B, T, vocab] (fp32) and per layer (K, V) [B, n_kv, T, d] after RoPE."""
    B, T = tokens.shape
    H, KV, D, FF, G = shape.heads, shape.kv_heads, shape.head_dim, shape.ff, shape.heads // shape.kv_heads
    dev = tokens.device

    def norm(x, g):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + shape.eps) * g.float()

    ang = torch.outer(torch.arange(T, dtype=torch.float64), torch.tensor(rope_inv_freq(shape)))
    rot = torch.polar(torch.ones_like(ang), ang).to(torch.complex64).to(dev)  # [T, D / 2]

    def rope(x):  # [B, T, heads, D]
        c = torch.view_as_complex(x.reshape(B, T, x.shape[2], D // 2, 2).contiguous())
        return torch.view_as_real(c * rot[None, :, None, :]).reshape(B, T, x.shape[2], D)

    x = w["emb"].float()[tokens]
    future = torch.triu(torch.ones(T, T, dtype=torch.bool, device=dev), diagonal=1)
    kvs = []
    for lw in w["layers"]:
        a = norm(x, lw["attn_norm"]) @ lw["wqkv"].float().t()
        q = rope(a[..., :H * D].reshape(B, T, H, D))
        k = rope(a[..., H * D:(H + KV) * D].reshape(B, T, KV, D))
        v = a[..., (H + KV) * D:].reshape(B, T, KV, D)
        kvs.append((k.transpose(1, 2), v.transpose(1, 2)))
        kx, vx = k.repeat_interleave(G, dim=2), v.repeat_interleave(G, dim=2)  # query head h reads KV head h // G
        s = torch.einsum("bthd,bshd->bhts", q, kx) / math.sqrt(D)
        p = torch.softmax(s.masked_fill(future, float("-inf")), dim=-1)
        x = x + torch.einsum("bhts,bshd->bthd", p, vx).reshape(B, T, H * D) @ lw["wo"].float().t()
        f = norm(x, lw["ffn_norm"])
        w13 = lw["w13"].float()
        x = x + (F.silu(f @ w13[:FF].t()) * (f @ w13[FF:].t())) @ lw["w2"].float().t()
    return norm(x, w["norm"]) @ w["out"].float().t(), kvs


def capture(fn, device):
    """Capture fn as a CUDA graph (after warm-up runs on a side stream); returns the graph's replay."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


def self_check(args, device):
    """Decode step at position T - 1 over a cache holding the reference's K/V of tokens 0..T-2, against
    the reference's logits at T - 1. Tolerance: max |diff| <= tol * max |reference logit|."""
    shape = Shape(CHECK_SHAPE, args.rope_base, args.rope_scaling, args.norm_eps)
    B, T, tol = 3, 24, 0.05
    w = make_weights(shape, device, seed=args.seed + 7)
    g = torch.Generator(device="cpu").manual_seed(args.seed + 11)
    toks = torch.randint(0, shape.vocab, (B, T), generator=g).to(device)
    other = torch.randint(0, shape.vocab, (B, T), generator=g).to(device)
    other[:, -1] = toks[:, -1]
    ref, kvs = reference_forward(shape, w, toks)
    _, kvs_other = reference_forward(shape, w, other)
    ref_last = ref[:, -1]
    scale = ref_last.abs().max().item()
    rope = rope_tables(shape, T, device)
    out = {"shape": shape.dims(), "batch": B, "tokens": T, "tol": tol, "variants": {}}
    ok = True

    def fill(src):  # cache: the reference's K/V at 0..T-2, a random row at T-1 (the step must write it)
        cache = []
        for k, v in src:
            kc = torch.randn(B, shape.kv_heads, T, shape.head_dim, device=device, dtype=torch.bfloat16)
            vc = torch.randn_like(kc)
            kc[:, :, :T - 1] = k[:, :, :T - 1].to(torch.bfloat16)
            vc[:, :, :T - 1] = v[:, :, :T - 1].to(torch.bfloat16)
            cache.append((kc, vc))
        return cache

    for name in args.variants:
        attend = VARIANTS[name]
        res = {}
        try:
            tokens = toks[:, -1].clone()
            pos = torch.tensor([T - 1], device=device)
            cache = fill(kvs)
            runs = {"eager": lambda: decode_step(shape, w, cache, tokens, pos, rope, attend).float()}
            if device.type == "cuda":
                graph, gout = capture(lambda: decode_step(shape, w, cache, tokens, pos, rope, attend), device)

                def replay():
                    graph.replay()
                    return gout.float()
                runs["graph"] = replay
            for mode, fn in runs.items():
                err = (fn() - ref_last).abs().max().item() / scale
                res[mode] = err
                ok &= err <= tol
            # Negative control: the same step over the cache of another prefix must NOT match.
            cache[:] = fill(kvs_other)
            res["wrong_cache"] = (runs["eager"]() - ref_last).abs().max().item() / scale
            ok &= res["wrong_cache"] > 4 * tol
        except RuntimeError as e:
            res["error"] = str(e).splitlines()[0][:300]
        out["variants"][name] = res
        print(f"self-check {name}: " + ", ".join(
            f"{m} {v:.4f}" if isinstance(v, float) else f"{m} {v}" for m, v in res.items())
            + f" (max |decode - reference| / max |reference|; tol {tol}, wrong_cache must exceed {4 * tol})")
    ran = [r for r in out["variants"].values() if "error" not in r]
    out["passed"] = bool(ok and ran)
    return out


# ---- timing ----
def time_ms(fn, reps, warmup, device):
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for a, b in ev:
            a.record()
            fn()
            b.record()
        torch.cuda.synchronize()
        return [a.elapsed_time(b) for a, b in ev]
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def stats(ts):
    t = np.asarray(ts, dtype=np.float64)
    return {"ms": float(np.median(t)), "ms_min": float(t.min()), "ms_max": float(t.max()),
            "ms_p10": float(np.percentile(t, 10)), "ms_p90": float(np.percentile(t, 90)), "reps": len(ts)}


def copy_gbps(device):
    """Device-to-device copy bandwidth, GB/s counting bytes read + written (median of 10 copies)."""
    n = (1 << 31) if device.type == "cuda" else (1 << 26)
    src = torch.empty(n, dtype=torch.uint8, device=device).random_(0, 256)
    dst = torch.empty_like(src)
    t = time_ms(lambda: dst.copy_(src), 10, 3, device)
    del src, dst
    return 2 * n / (float(np.median(t)) * 1e-3) / 1e9


def device_memory(device):
    """(free, total) bytes for the device's allocations."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return torch.cuda.mem_get_info()
    import os
    pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    avail = os.sysconf("SC_AVPHYS_PAGES") * size
    return avail, pages * size


def parse_ints(s):
    return [int(x) for x in s.split(",") if x]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, v in LLAMA31_8B.items():
        ap.add_argument("--" + flag.replace("_", "-"), type=int, default=None, help=f"default {v}")
    ap.add_argument("--rope-base", type=float, default=500000.0)
    ap.add_argument("--rope-scaling", default="8,1,4,8192",
                    help="Llama 3.1 RoPE scaling: factor,low_freq_factor,high_freq_factor,original_context "
                         "('none': unscaled)")
    ap.add_argument("--norm-eps", type=float, default=1e-5)
    ap.add_argument("--batch", default=None, help="default 1,8,16 (--tiny: 1,2)")
    ap.add_argument("--ctx", default=None, help="default 8192,32768,131072 (--tiny: 64,256)")
    ap.add_argument("--reps", type=int, default=None, help="timed steps per row (default 30; --tiny: 5)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--variants", default="flash-gqa,flash-grouped")
    ap.add_argument("--no-eager", action="store_true", help="skip the eager (no graph) timing at B = 1")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny model shape (runs anywhere, in seconds)")
    ap.add_argument("--check-only", action="store_true", help="run the self-check and stop")
    ap.add_argument("--no-check", action="store_true", help="skip the self-check (not for recorded runs)")
    ap.add_argument("--json")
    a = ap.parse_args()
    dims = dict(TINY if a.tiny else LLAMA31_8B)
    for k in dims:
        if getattr(a, k) is not None:
            dims[k] = getattr(a, k)
    a.rope_scaling = None if a.rope_scaling == "none" else tuple(float(x) for x in a.rope_scaling.split(","))
    if a.rope_scaling is not None and len(a.rope_scaling) != 4:
        raise SystemExit("e2e-anchor: --rope-scaling takes factor,low,high,original_context or none")
    a.variants = [v for v in a.variants.split(",") if v]
    for v in a.variants:
        if v not in VARIANTS:
            raise SystemExit(f"e2e-anchor: unknown variant '{v}' (known: {', '.join(VARIANTS)})")
    batches = parse_ints(a.batch or ("1,2" if a.tiny else "1,8,16"))
    ctxs = parse_ints(a.ctx or ("64,256" if a.tiny else "8192,32768,131072"))
    reps = a.reps or (5 if a.tiny else 30)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("e2e-anchor: no CUDA device (use --device cpu --tiny to exercise the code here)")
    shape = Shape(dims, a.rope_base, a.rope_scaling, a.norm_eps)
    torch.set_grad_enabled(False)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = {"device": dev_name, "torch": torch.__version__, "shape": shape.dims(),
              "rope": {"base": shape.rope_base, "scaling": shape.rope_scaling}, "seed": a.seed,
              "graph": device.type == "cuda", "argv": sys.argv[1:], "rows": []}

    def write():
        if a.json:
            with open(a.json, "w") as f:
                json.dump(report, f, indent=1)

    print(f"device: {dev_name}, torch {torch.__version__}; shape {shape.dims()}")
    if not a.no_check:
        report["selfcheck"] = self_check(a, device)
        write()
        if not report["selfcheck"]["passed"]:
            print("e2e-anchor: SELF-CHECK FAILED: the decode step does not match the full-sequence forward "
                  "(or the check could not tell a wrong cache apart); not timing", file=sys.stderr)
            return 1
        print("self-check passed")
        if a.check_only:
            return 0

    report["copy_gbps"] = copy_gbps(device)
    bw = report["copy_gbps"] * 1e9
    print(f"copy bandwidth (read + write): {report['copy_gbps']:.0f} GB/s")
    free, total = device_memory(device)
    w_alloc = weight_alloc_bytes(shape)
    margin = (1 << 30) if device.type == "cuda" else (64 << 20)
    weights = None
    if w_alloc + margin <= free:
        t0 = time.perf_counter()
        weights = make_weights(shape, device, a.seed)
        if device.type == "cuda":
            torch.cuda.synchronize()
        print(f"weights: {w_alloc / 1e9:.2f} GB bf16, drawn in {time.perf_counter() - t0:.1f} s")
    else:
        print(f"weights: {w_alloc / 1e9:.2f} GB do not fit ({free / 1e9:.1f} GB free)")
    max_ctx = max(ctxs)
    rope = rope_tables(shape, max_ctx, device)
    print(f"{'B':>3} {'ctx':>7} {'variant':<20} {'ms/step':>8} {'p10-p90':>15} {'tok/s':>8} {'GB/step':>8} "
          f"{'roofline':>8} {'of roof':>7}")
    for B in batches:
        for ctx in ctxs:
            kvb = kv_bytes(shape, B, ctx)
            base = {"impl": "anchor", "policy": "dense", "batch": B, "ctx": ctx,
                    "weight_bytes": weight_read_bytes(shape, B), "kv_bytes": kvb}
            base["bytes"] = base["weight_bytes"] + kvb
            base["roofline_ms"] = base["bytes"] / bw * 1e3
            free, _ = device_memory(device)
            need = kvb + margin + B * shape.vocab * 8
            if weights is None or need > free:
                row = dict(base, variant="-", fits=False, bytes_needed=w_alloc + need,
                           bytes_available=free + (w_alloc if weights is not None else 0))
                report["rows"].append(row)
                print(f"{B:>3} {ctx:>7} does not fit: needs {(w_alloc + need) / 1e9:.1f} GB (weights "
                      f"{w_alloc / 1e9:.1f}, KV {kvb / 1e9:.1f}, working space {(need - kvb) / 1e9:.1f}); "
                      f"{row['bytes_available'] / 1e9:.1f} GB available")
                write()
                continue
            g = torch.Generator(device=device)
            g.manual_seed(a.seed * 1000003 + B * 1009 + ctx)
            cache = []
            try:
                for _ in range(shape.layers):
                    kc = torch.empty(B, shape.kv_heads, ctx, shape.head_dim, device=device, dtype=torch.bfloat16)
                    vc = torch.empty_like(kc)
                    cache.append((kc.normal_(0.0, 1.0, generator=g), vc.normal_(0.0, 1.0, generator=g)))
            except torch.cuda.OutOfMemoryError as e:
                cache = None
                torch.cuda.empty_cache()
                report["rows"].append(dict(base, variant="-", fits=False, error=str(e).splitlines()[0][:300]))
                print(f"{B:>3} {ctx:>7} does not fit: out of memory while allocating the KV cache")
                write()
                continue
            tokens0 = torch.randint(0, shape.vocab, (B,), device=device, generator=g)
            pos = torch.tensor([ctx - 1], device=device)
            rows, first_logits = [], None
            for name in a.variants:
                attend = VARIANTS[name]
                tokens = tokens0.clone()
                mode = "graph" if device.type == "cuda" else "eager"
                row = dict(base, variant=f"{name}-{mode}", fits=True)
                try:
                    logits = greedy_step(shape, w=weights, cache=cache, tokens=tokens, pos=pos, rope=rope,
                                         attend=attend).float()
                    if first_logits is None:
                        first_logits = logits
                    else:  # the variants compute the same step: their logits must agree closely
                        row["max_rel_diff_vs_first_variant"] = (
                            (logits - first_logits).abs().max().item() / first_logits.abs().max().item())
                    tokens.copy_(tokens0)

                    def fn():
                        greedy_step(shape, weights, cache, tokens, pos, rope, attend)
                    graph = None
                    if mode == "graph":
                        graph, _ = capture(fn, device)
                        fn = graph.replay
                    row.update(stats(time_ms(fn, reps, a.warmup, device)))
                    row["tokens_per_s"] = B * 1000.0 / row["ms"]
                    del graph
                except RuntimeError as e:  # includes out of memory; report, never crash
                    row["error"] = str(e).splitlines()[0][:300]
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                rows.append(row)
            timed = [r for r in rows if "ms" in r]
            if timed:
                best = min(timed, key=lambda r: r["ms"])
                for r in rows:
                    r["kept"] = r is best
                if B == 1 and device.type == "cuda" and not a.no_eager:
                    attend = VARIANTS[best["variant"].rsplit("-", 1)[0]]
                    tokens = tokens0.clone()
                    row = dict(base, variant=best["variant"].rsplit("-", 1)[0] + "-eager", fits=True, kept=False)
                    row.update(stats(time_ms(lambda: greedy_step(shape, weights, cache, tokens, pos, rope, attend),
                                             reps, a.warmup, device)))
                    row["tokens_per_s"] = B * 1000.0 / row["ms"]
                    rows.append(row)
            for r in rows:
                report["rows"].append(r)
                if "ms" not in r:
                    print(f"{B:>3} {ctx:>7} {r['variant']:<20} failed: {r.get('error')}")
                    continue
                spread = f"{r['ms_p10']:.2f}-{r['ms_p90']:.2f}"
                print(f"{B:>3} {ctx:>7} {r['variant']:<20} {r['ms']:>8.3f} {spread:>15} {r['tokens_per_s']:>8.1f} "
                      f"{r['bytes'] / 1e9:>8.2f} {r['roofline_ms']:>8.3f} {r['roofline_ms'] / r['ms']:>7.2f}"
                      + ("  (kept)" if r.get("kept") else "")
                      + (f"  diff vs first {r['max_rel_diff_vs_first_variant']:.1e}"
                         if "max_rel_diff_vs_first_variant" in r else ""))
            write()
            del cache, rows, first_logits
            if device.type == "cuda":
                torch.cuda.empty_cache()
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
