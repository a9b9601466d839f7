#!/usr/bin/env python3
"""Speed of the hashattn CPU runtime side by side with llama.cpp, in one run.

Same GGUF, same threads, same context, same prompt token ids (taken from the KJV text when the
Debian package bible-kjv is installed, else synthetic text), alternating the two runtimes:
  prefill of 512 and 4096 tokens                              -> prompt tokens/s
  decode after a prefill of 512 and of 8000 tokens (64 and 32 steps) -> ms/token
hashattn runs as `hashattn generate --token-ids FILE --ignore-eos` (its closing stderr line gives
the prompt and decode times); llama.cpp runs through llama-cpp-python in a child process, timed
with wall time around Llama.eval (llama_perf_context reads zero through these bindings); the
bindings' own per-call work (copying the logits row into numpy) is included in its decode time.
Decode is also put against the memory roofline: bytes of weights + K/V read per token divided by
the copy bandwidth measured in the same run (numpy copies, one per thread: read + write bytes/s).
K/V is counted per layer: a sliding-window layer (gemma3: all but every 6th) reads only its window in
hashattn; llama.cpp's full-size window cache is masked, not cut, so a second roofline counts every
layer's whole context for it. `--only` takes any prefillN / decodeN (e.g. decode32000 with --model
models/gemma-3-270m-q4_k_m.gguf); the context grows to fit each case.
Prints a Markdown report (medians, min-max over the runs, ratios) to stdout.

With --hash H.gguf (and --hash-group G.gguf), the longest decode case (8000 by default; decode32000 with
--only decode32000) also runs hashattn with HashAttention at density 1/32 (per query head, and per KV group
with the group file): the whole prompt is prefilled densely, every decode step goes through the hash policy.

Usage: python3 scripts/bench-llamacpp.py [--runs 5] [--threads 2] [--model M.gguf] [--bin build/bin/hashattn]
                                         [--hash H.gguf [--rerank 2,4]] [--hash-group G.gguf] [--quick]
Run it on a quiet machine: the report states the load average before and after.

Needs the Python packages llama-cpp-python (the llama.cpp peer), gguf and numpy, pinned in the virtual
environment .venv-bench that `bash scripts/setup --bench` builds (llama.cpp compiled for this CPU, AMX off).
Run with another interpreter, the script re-runs itself with .venv-bench/bin/python when that exists.
`make bench-llamacpp` does both steps and builds hashattn first.
"""
import argparse
import importlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv-bench")
SETUP = "bash scripts/setup --bench"
PEERS = (("llama_cpp", "llama-cpp-python"), ("gguf", "gguf"), ("numpy", "numpy"))


def require_peers():
    """Imports the peers, or re-runs the script in .venv-bench, or exits naming the command that installs them."""
    missing, broken = [], []
    for mod, pkg in PEERS:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # the package is there, something it imports is not
                broken.append(f"{pkg}: {e}")
            else:
                missing.append(pkg)
        except (ImportError, OSError) as e:  # e.g. llama.cpp's shared library fails to load
            broken.append(f"{pkg}: {e}")
    if not missing and not broken:
        return
    venv_py = os.path.join(VENV, "bin", "python")
    in_venv = os.path.realpath(sys.prefix) == os.path.realpath(VENV)
    if not in_venv and os.access(venv_py, os.X_OK):
        print(f"bench: {', '.join(missing + [b.split(':')[0] for b in broken])} not importable by "
              f"{sys.executable}; re-running with {os.path.relpath(venv_py)}", file=sys.stderr)
        os.execv(venv_py, [venv_py, os.path.abspath(__file__), *sys.argv[1:]])
    msg = "bench: this benchmark needs the Python packages llama-cpp-python, gguf and numpy"
    if missing:
        msg += f"; not installed for {sys.executable}: {', '.join(missing)}"
    if broken:
        msg += "; installed but failing to import: " + "; ".join(broken)
    if in_venv:
        msg += f".\nRe-run the setup (it rebuilds .venv-bench when its pins or imports do not check out): {SETUP}"
    else:
        msg += (f".\nInstall them (pinned, into .venv-bench; compiles llama.cpp, long on a small machine): {SETUP}"
                f"\nthen run: make bench-llamacpp   (or .venv-bench/bin/python scripts/bench-llamacpp.py ...)")
    sys.exit(msg)

LLAMA_CHILD = r"""
import json, sys, time, llama_cpp
with open(sys.argv[1]) as f:  # a file: 32K prompt ids do not fit in one command-line argument
    cfg = json.load(f)
llm = llama_cpp.Llama(model_path=cfg["model"], n_ctx=cfg["ctx"], n_threads=cfg["threads"],
                      n_threads_batch=cfg["threads"], n_batch=512, n_ubatch=512, verbose=False)
toks = cfg["tokens"]
t0 = time.perf_counter(); llm.eval(toks); t1 = time.perf_counter()
res = {"prefill_s": t1 - t0}
n_dec = cfg["n_decode"]
if n_dec > 0:
    t0 = time.perf_counter()
    for i in range(n_dec):
        llm.eval([cfg["decode_token"]])
    t1 = time.perf_counter()
    res["decode_s"] = t1 - t0
print(json.dumps(res))
"""


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def load():
    return os.getloadavg()[0]


def copy_bandwidth(threads, mb=256, reps=5):
    import numpy as np
    from concurrent.futures import ThreadPoolExecutor
    n = mb * (1 << 20) // 8 // threads
    src = [np.ones(n) for _ in range(threads)]
    dst = [np.empty(n) for _ in range(threads)]
    best = 1e9
    with ThreadPoolExecutor(threads) as ex:
        for _ in range(reps):
            t0 = time.perf_counter()
            list(ex.map(lambda i: np.copyto(dst[i], src[i]), range(threads)))
            best = min(best, time.perf_counter() - t0)
    return 2 * n * 8 * threads / best  # read + write bytes per second


def prompt_tokens(model, n):
    import llama_cpp
    llm = llama_cpp.Llama(model_path=model, n_ctx=64, vocab_only=True, verbose=False)
    try:
        text = sh(["bible", "-f", "gen1:1-exo40:38"], stdin=subprocess.DEVNULL, check=True).stdout
        source = "KJV Genesis-Exodus (bible-kjv)"
    except (OSError, subprocess.CalledProcessError):
        words = "the quick brown fox jumps over the lazy dog near a quiet river bank".split()
        text = " ".join(words[(i * 7) % len(words)] + str(i % 97) for i in range(20000))
        source = "synthetic words"
    toks = llm.tokenize(text.encode(), add_bos=False, special=False)
    if len(toks) < n:
        sys.exit(f"bench: the text gives {len(toks)} tokens, {n} needed")
    return toks[:n], source


def weight_bytes(model):
    """Bytes a decode step reads: every block weight, the output matrix (the token embeddings when tied),
    one embedding row; and the K/V layout: (per-layer fp16 K+V bytes per token, per-layer window, 0: global)."""
    import gguf
    r = gguf.GGUFReader(model)
    t = {x.name: x for x in r.tensors}
    b = sum(int(x.n_bytes) for n, x in t.items() if n.startswith("blk.") and n.endswith(".weight")
            and len(x.shape) == 2)
    emb = t["token_embd.weight"]
    out = t.get("output.weight", emb)
    b += int(out.n_bytes) + int(emb.n_bytes) // int(emb.shape[1])
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()

    def f(k, default=None):
        fld = r.fields.get(f"{arch}.{k}")
        return default if fld is None else int(fld.parts[-1][0])

    n_layer, n_head = f("block_count"), f("attention.head_count")
    n_kv = f("attention.head_count_kv")
    hd_k = f("attention.key_length", f("embedding_length") // n_head)
    hd_v = f("attention.value_length", hd_k)
    win = f("attention.sliding_window", 0)
    # Gemma 3: every 6th layer global, the others slide over `win` tokens (llama.cpp's rule; the file
    # stores only the window). Other architectures: every layer global.
    windows = [0 if arch != "gemma3" or (l + 1) % 6 == 0 else win for l in range(n_layer)]
    return b, (n_kv * (hd_k + hd_v) * 2, windows)


def kv_read_bytes(layout, ctx, full_window=False):
    """K/V bytes one decode step reads at context ctx: each global layer all ctx tokens, each sliding-window
    layer its window (full_window: every layer all ctx tokens, as a full-size sliding-window cache that is
    masked rather than cut)."""
    per_tok, windows = layout
    return sum(per_tok * (ctx if w == 0 or full_window else min(ctx, w)) for w in windows)


def run_hashattn(binary, model, toks, threads, ctx, n_decode, policy=()):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(" ".join(map(str, toks)))
        path = f.name
    try:
        r = sh([binary, "generate", "-m", model, "--token-ids", path, "-n", str(n_decode + 1),
                "--ignore-eos", "-t", str(threads), "--ctx", str(ctx), *policy])
    finally:
        os.unlink(path)
    m = re.search(r"prompt (\d+) tokens, ([\d.]+) tokens/s \| decode (\d+) tokens, ([\d.]+) "
                  r"tokens/s \(([\d.]+) ms/token\)", r.stderr)
    if r.returncode != 0 or not m:
        sys.exit(f"bench: hashattn failed ({r.returncode}): {r.stderr.strip()}")
    res = {"prefill_s": int(m.group(1)) / float(m.group(2))}
    if n_decode > 0:
        res["decode_ms"] = float(m.group(5))
    return res


def run_llama(model, toks, threads, ctx, n_decode):
    cfg = {"model": model, "tokens": toks, "threads": threads, "ctx": ctx, "n_decode": n_decode,
           "decode_token": toks[-1]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfg, f)
        path = f.name
    try:
        r = sh([sys.executable, "-c", LLAMA_CHILD, path])
    finally:
        os.unlink(path)
    if r.returncode != 0:
        sys.exit(f"bench: llama.cpp failed: {r.stderr.strip()[-2000:]}")
    d = json.loads(r.stdout.strip().splitlines()[-1])
    res = {"prefill_s": d["prefill_s"]}
    if n_decode > 0:
        res["decode_ms"] = 1e3 * d["decode_s"] / n_decode
    return res


def med(xs):
    return statistics.median(xs)


def spread(xs, fmt):
    return f"{fmt.format(min(xs))}-{fmt.format(max(xs))}"


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog=f"Needs llama-cpp-python, gguf and numpy: `{SETUP}` installs them (pinned) into .venv-bench; "
               "`make bench-llamacpp` sets up, builds and runs.")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin", "hashattn"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ctx", type=int, default=8192)
    ap.add_argument("--quick", action="store_true", help="only prefill 512 and decode at 512")
    ap.add_argument("--only", help="comma-separated cases: prefill512,prefill4096,decode512,decode8000, or any "
                    "prefillN / decodeN (decode past 4096: 32 steps); the context grows to fit each case")
    ap.add_argument("--hash", help="hash file (per query head): adds hash 1/32 decode at the longest decode case "
                    "(8000 by default)")
    ap.add_argument("--hash-group", help="hash file (per KV group): adds hash 1/32 group-mode decode there")
    ap.add_argument("--rerank", help="candidate factors C, comma separated: adds hash-rrC 1/32 decode there for "
                    "each of --hash (per head) and --hash-group (per group)")
    args = ap.parse_args()
    cases = [("prefill", 512, 0), ("prefill", 4096, 0), ("decode", 512, 64), ("decode", 8000, 32)]
    if args.quick:
        cases = [("prefill", 512, 0), ("decode", 512, 64)]
    if args.only:
        cases = []
        for w in args.only.split(","):
            m = re.fullmatch(r"(prefill|decode)(\d+)", w.strip())
            if not m or int(m.group(2)) < 1:
                sys.exit(f"bench: unknown case {w!r} (expected prefillN or decodeN, e.g. decode512)")
            n = int(m.group(2))
            cases.append((m.group(1), n, 0 if m.group(1) == "prefill" else 64 if n <= 4096 else 32))
    decodes = [c for c in cases if c[0] == "decode"]
    sparse_case = max(decodes, key=lambda c: c[1]) if decodes else None
    if (args.hash or args.hash_group) and sparse_case is None:  # checked before the peers are loaded
        sys.exit("bench: --hash / --hash-group / --rerank need a decode case (e.g. --only decode8000)")
    require_peers()
    import llama_cpp

    toks_all, source = prompt_tokens(args.model, max(c[1] for c in cases))
    wbytes, kv_layout = weight_bytes(args.model)
    load0 = load()
    bw = copy_bandwidth(args.threads)
    variants = [("hashattn", ())]
    if args.hash:
        variants.append(("hashattn hash 1/32 head", ("--attn", "hash", "--density", "1/32", "--gqa-mode", "head",
                                                      "--hash", args.hash)))
    for f in (args.rerank.split(",") if args.rerank else []):
        if args.hash:
            variants.append((f"hashattn hash-rr{f} 1/32 head", ("--attn", f"hash-rr{f}", "--density", "1/32",
                                                                 "--gqa-mode", "head", "--hash", args.hash)))
        if args.hash_group:
            variants.append((f"hashattn hash-rr{f} 1/32 group", ("--attn", f"hash-rr{f}", "--density", "1/32",
                                                                  "--gqa-mode", "group", "--hash", args.hash_group)))
    if args.hash_group:
        variants.append(("hashattn hash 1/32 group", ("--attn", "hash", "--density", "1/32", "--gqa-mode", "group",
                                                       "--hash", args.hash_group)))
    results = {c: {"hashattn": [], "llama.cpp": []} for c in cases}
    if sparse_case in cases:
        for name, _ in variants[1:]:
            results[sparse_case][name] = []
    for run in range(args.runs):
        for c in cases:
            kind, n, n_dec = c
            toks = toks_all[:n]
            ctx = max(args.ctx, n + n_dec + 8)
            order = [("hashattn", lambda: run_hashattn(args.bin, args.model, toks, args.threads, ctx, n_dec)),
                     ("llama.cpp", lambda: run_llama(args.model, toks, args.threads, ctx, n_dec))]
            if c == sparse_case:
                for name, pol in variants[1:]:
                    order.insert(1, (name, lambda pol=pol: run_hashattn(args.bin, args.model, toks, args.threads,
                                                                        ctx, n_dec, pol)))
            if run % 2:
                order.reverse()
            for name, fn in order:
                results[c][name].append(fn())
        print(f"bench: run {run + 1}/{args.runs} done (load {load():.2f}): "
              f"{json.dumps({f'{c[0]}_{c[1]}': {k: v[-1] for k, v in results[c].items()} for c in cases})}",
              file=sys.stderr)
    bw2 = copy_bandwidth(args.threads)
    load1 = load()

    rev = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
    dirty = sh(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    extra = (f" --hash {os.path.relpath(args.hash, ROOT)}" if args.hash else "") + \
        (f" --hash-group {os.path.relpath(args.hash_group, ROOT)}" if args.hash_group else "")
    extra += f" --rerank {args.rerank}" if args.rerank else ""
    extra += f" --only {args.only}" if args.only else ""
    if os.path.abspath(args.model) != os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"):
        extra = f" --model {os.path.relpath(args.model, ROOT)}" + extra
    print(f"- command: `python3 scripts/bench-llamacpp.py --runs {args.runs} --threads {args.threads}{extra}`")
    print(f"- machine: {cpu}, {os.cpu_count()} cores; threads {args.threads}; context {args.ctx} "
          "(or the case's prompt + decode, if larger)")
    print(f"- revision: {rev}{' (uncommitted changes)' if dirty else ''}; llama-cpp-python "
          f"{llama_cpp.__version__} ({llama_cpp.llama_print_system_info().decode().strip()})")
    print(f"- model: {os.path.basename(args.model)}; prompt tokens from {source}")
    print(f"- load average (1 min) before {load0:.2f}, after {load1:.2f}; copy bandwidth "
          f"{bw / 1e9:.1f} / {bw2 / 1e9:.1f} GB/s (before / after, read+write)")
    print(f"- {args.runs} runs, alternating order; median and min-max\n")
    print("| case | hashattn | llama.cpp | ratio (llama.cpp time / hashattn time) |")
    print("|---|---|---|---|")
    for c in cases:
        kind, n, n_dec = c
        h, l = results[c]["hashattn"], results[c]["llama.cpp"]
        if kind == "prefill":
            hv = [n / r["prefill_s"] for r in h]
            lv = [n / r["prefill_s"] for r in l]
            print(f"| prefill {n} tokens (tokens/s) | {med(hv):.0f} ({spread(hv, '{:.0f}')}) | "
                  f"{med(lv):.0f} ({spread(lv, '{:.0f}')}) | {med(hv) / med(lv):.2f}x |")
        else:
            hv = [r["decode_ms"] for r in h]
            lv = [r["decode_ms"] for r in l]
            print(f"| decode at context {n}, {n_dec} tokens (ms/token) | {med(hv):.2f} "
                  f"({spread(hv, '{:.2f}')}) | {med(lv):.2f} ({spread(lv, '{:.2f}')}) | "
                  f"{med(lv) / med(hv):.2f}x |")
    if sparse_case in cases and len(variants) > 1:
        lv = med([r["decode_ms"] for r in results[sparse_case]["llama.cpp"]])
        dv = med([r["decode_ms"] for r in results[sparse_case]["hashattn"]])
        print(f"\nSparse decode at context {sparse_case[1]} ({sparse_case[2]} tokens; dense prefill; every decode "
              "step through the policy):\n")
        print("| setting | ms/token | speed vs llama.cpp dense | speed vs our dense |")
        print("|---|---|---|---|")
        for name, _ in variants:
            hv = [r["decode_ms"] for r in results[sparse_case][name]]
            print(f"| {name} | {med(hv):.2f} ({spread(hv, '{:.2f}')}) | {lv / med(hv):.2f}x | {dv / med(hv):.2f}x |")
        print(f"| llama.cpp dense | {lv:.2f} | 1.00x | {dv / lv:.2f}x |")
    print("\nMemory roofline of decode (bytes read per token / copy bandwidth):\n")
    windowed = any(w for w in kv_layout[1])
    if windowed:
        n_glob = sum(1 for w in kv_layout[1] if w == 0)
        print(f"{n_glob} of {len(kv_layout[1])} layers global, the others read a window of {max(kv_layout[1])} "
              "tokens (hashattn); llama.cpp keeps a full-size sliding-window cache here and masks it, so "
              "its attention reads every layer's whole context (second roofline).\n")
    print("| context | weights + KV read per token | roofline ms/token | hashattn | llama.cpp |")
    print("|---|---|---|---|---|")
    bwm = max(bw, bw2)
    for c in cases:
        kind, n, n_dec = c
        if kind != "decode":
            continue
        ctx_mid = n + n_dec // 2
        kv = kv_read_bytes(kv_layout, ctx_mid)
        kv_full = kv_read_bytes(kv_layout, ctx_mid, full_window=True)
        roof, roof_full = 1e3 * (wbytes + kv) / bwm, 1e3 * (wbytes + kv_full) / bwm
        hv = med([r["decode_ms"] for r in results[c]["hashattn"]])
        lv = med([r["decode_ms"] for r in results[c]["llama.cpp"]])
        row = (f"| {n} | {(wbytes + kv) / 1e6:.1f} MB ({wbytes / 1e6:.1f} weights + {kv / 1e6:.1f} KV) "
               f"| {roof:.2f} | {hv:.2f} ({roof / hv:.0%} of roofline) | {lv:.2f} ({roof / lv:.0%}) |")
        if windowed:
            row += (f"\n| {n}, whole context on every layer | {(wbytes + kv_full) / 1e6:.1f} MB ({kv_full / 1e6:.1f} KV) "
                    f"| {roof_full:.2f} | | {lv:.2f} ({roof_full / lv:.0%}) |")
        print(row)


if __name__ == "__main__":
    main()
