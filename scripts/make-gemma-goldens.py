#!/usr/bin/env python3
"""Makes tests/data/gemma-greedy-goldens.json: llama.cpp's greedy continuations on Gemma 3 270M Q4_K_M.

The second architecture's real file (fetched by `scripts/setup --models gemma3`, not committed) is run
by llama.cpp through llama-cpp-python (2 threads, the peer of scripts/bench-llamacpp.py) on 5 short
completion prompts (a base model: no chat template) and one of ~1,060 tokens that reaches past the
512-token sliding window (a question about an inventory listed ~950 tokens earlier); for each, the
prompt's token ids (llama.cpp's tokenizer, <bos> first), the 64 greedy tokens and llama.cpp's
top-1/top-2 logit margin at each step (to tell a near-tie from a real disagreement) are written. Ids
and margins only, no logits: the file stays small. tests/model/gemma-greedy-gemma-test.cpp checks our tokenizer and greedy decode against it.

Usage: .venv-bench/bin/python scripts/make-gemma-goldens.py [--model models/gemma-3-270m-q4_k_m.gguf]
(needs llama-cpp-python, pinned in .venv-bench by `scripts/setup --bench`).
"""
import argparse
import hashlib
import json
import os
import sys

N_GREEDY = 64
GEMMA_SHA = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

PROMPTS = [
    ("capital", "The capital of France is"),
    ("story", "Once upon a time, in a small village at the edge of a great forest,"),
    ("code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"),
    ("physics", "Water boils at 100 degrees Celsius at sea level. At higher altitudes,"),
    ("french", "Le chat dort sur le canapé. En anglais, cette phrase se dit :"),
]


def long_prompt():
    """~1,060 tokens (past the 512-token sliding window of 15 of the 18 layers): a made-up inventory of
    80 numbered boxes, then a question about box 7 (its answer sits ~950 tokens back, where only the
    3 global layers can read it)."""
    colors = ["red", "blue", "green", "yellow", "white", "black", "orange", "purple"]
    things = ["marbles", "coins", "keys", "stamps", "buttons", "shells", "pencils", "candles"]
    lines = ["The following is the inventory of the old storage room, box by box."]
    for i in range(1, 81):
        c, t = colors[(i * 3) % 8], things[(i * 5) % 8]
        lines.append(f"Box {i} is {c} and holds {(i * 37) % 90 + 10} {t}.")
    lines.append("Question: what does box 7 hold? Answer: Box 7 holds")
    return " ".join(lines)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.join(root, "models", "gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "gemma-greedy-goldens.json"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not os.path.isfile(args.model):
        sys.exit(f"make-gemma-goldens: no model at {args.model}: run `scripts/setup --models gemma3`")
    digest = sha256(args.model)
    if digest != GEMMA_SHA:
        sys.exit(f"make-gemma-goldens: sha256 of {args.model} is {digest}, expected {GEMMA_SHA}")
    try:
        import llama_cpp
        import numpy as np
    except ImportError as e:
        sys.exit(f"make-gemma-goldens: {e}; run it with .venv-bench/bin/python (`scripts/setup --bench`)")

    llm = llama_cpp.Llama(model_path=args.model, n_ctx=2048, n_threads=args.threads,
                          n_threads_batch=args.threads, verbose=False, seed=0)
    n_vocab = llm.n_vocab()
    out = []
    for name, text in PROMPTS + [("long_inventory", long_prompt())]:
        prompt = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        llm.reset()
        llm.eval(prompt)
        tokens, margins = [], []
        for _ in range(N_GREEDY):
            # the last row straight from the context (llm.scores stays zero without logits_all)
            ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
            row = np.ctypeslib.as_array(ptr, shape=(n_vocab,)).astype(np.float64)
            t = int(np.argmax(row))
            top2 = np.sort(row)[-2:]
            tokens.append(t)
            margins.append(round(float(top2[1] - top2[0]), 4))
            llm.eval([t])
        cont = llm.detokenize(tokens).decode("utf-8", errors="replace")
        shown = text if len(text) < 200 else "..." + text[-60:]
        print(f"{name}: {len(prompt)} prompt tokens; {shown!r} -> {cont!r}; smallest margin "
              f"{min(margins):.4f} at step {margins.index(min(margins))}", file=sys.stderr)
        out.append({"name": name, "text": text, "prompt": [int(t) for t in prompt], "tokens": tokens,
                    "margins": margins})
    meta = {
        "about": "llama.cpp's greedy continuations (64 tokens, argmax) with its top-1/top-2 margin at each step; "
                 "made by scripts/make-gemma-goldens.py",
        "model": {"file": os.path.basename(args.model), "size": os.path.getsize(args.model), "sha256": digest},
        "reference": {"llama_cpp_python": llama_cpp.__version__, "threads": args.threads,
                      "system": llama_cpp.llama_print_system_info().decode().strip()},
        "greedy": out,
    }
    with open(args.out, "w") as f:
        # one prompt per line group: ids on single lines keep the file small and diffable
        f.write("{\n")
        for k in ("about", "model", "reference"):
            f.write(f" {json.dumps(k)}: {json.dumps(meta[k])},\n")
        f.write(' "greedy": [\n')
        for i, g in enumerate(out):
            f.write("  " + json.dumps(g, ensure_ascii=False) + (",\n" if i + 1 < len(out) else "\n"))
        f.write(" ]\n}\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
