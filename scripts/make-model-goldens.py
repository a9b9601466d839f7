#!/usr/bin/env python3
"""Makes the goldens that tests/model/llama-model-test.cpp checks the runtime against.

Two references on the same GGUF (neither is a runtime dependency):
  llama.cpp  through llama-cpp-python, 2 threads. It quantizes activations to 8 bits in every
             quantized mat-mul and rounds q and the attention weights to fp16, which on this model
             (outlier activations of ~2.5e4 next to values of ~1) moves logits by ~0.1-1.
  float64    a plain numpy forward pass written here from the architecture (weights dequantized by
             the `gguf` package, every hyperparameter from the file's metadata, exact RoPE angles,
             no rounding of K/V): the oracle of the model's math.
Writes (small, committed):
  tests/data/model-goldens.json        model identity, reference versions, prompts (token ids, so the
                                       model test does not depend on the tokenizer), greedy runs of
                                       both references, and the layout of the binary file
  tests/data/model-goldens-logits.bin  little-endian; for each prompt in order:
                                         n_pos x {int32 ids[K]; float32 logits[K]}  llama.cpp top-K
                                         n_pos x {int32 ids[K64]; float32 logits[K64]} float64 top-K64
                                         float16 logits[n_vocab] (llama.cpp) for each full_rows entry
                                       (K = 20, K64 = 10, most likely first)
Prompts: 3 short ones (chat, plain text, code), the first 2300 tokens of KJV Genesis (public
domain; Debian package bible-kjv, `bible -f gen1:1-gen10:32`) and 2100 tokens of synthetic text
made here from a fixed seed. Greedy: 64 tokens from 3 prompts for each reference (argmax), with
the top-1/top-2 margin of each step (to explain a divergence on a near-tie).

Usage: python3 scripts/make-model-goldens.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import argparse
import hashlib
import json
import os
import random
import struct
import subprocess
import sys

import numpy as np

TOP_K = 20
TOP_K64 = 10
N_GREEDY = 64


class f64_model:
    """Float64 forward pass of a llama-architecture GGUF with a KV cache (numpy)."""

    def __init__(self, path):
        import gguf
        from gguf.quants import dequantize
        r = gguf.GGUFReader(path)

        def meta(key, default=None):
            f = r.fields.get(key)
            if f is None:
                if default is None:
                    sys.exit(f"make-model-goldens: metadata {key} missing")
                return default
            v = f.parts[f.data[0]]
            return v.tobytes().decode() if f.types[0] == gguf.GGUFValueType.STRING else v[0].item()

        arch = meta("general.architecture")
        if arch != "llama":
            sys.exit(f"make-model-goldens: the float64 reference handles llama, not {arch}")
        a = arch + "."
        self.n_layer = int(meta(a + "block_count"))
        self.n_head = int(meta(a + "attention.head_count"))
        self.n_kv = int(meta(a + "attention.head_count_kv", self.n_head))
        n_embd = int(meta(a + "embedding_length"))
        self.hd = int(meta(a + "attention.key_length", n_embd // self.n_head))
        self.eps = float(meta(a + "attention.layer_norm_rms_epsilon"))
        base = float(meta(a + "rope.freq_base", 10000.0))
        rope_dims = int(meta(a + "rope.dimension_count", self.hd))
        self.inv_freq = base ** (-np.arange(0, rope_dims, 2, dtype=np.float64) / rope_dims)
        self.rope_dims = rope_dims
        tensors = {t.name: t for t in r.tensors}

        def w(name):
            t = tensors[name]
            return np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float64)

        self.embd = w("token_embd.weight")
        self.out = w("output.weight") if "output.weight" in tensors else self.embd
        self.out_norm = w("output_norm.weight")
        self.layers = []
        for l in range(self.n_layer):
            b = f"blk.{l}."
            self.layers.append({k: w(b + k + ".weight") for k in (
                "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate",
                "ffn_up", "ffn_down")})
        self.reset()

    def reset(self):
        self.kc = [np.zeros((0, self.n_kv, self.hd)) for _ in range(self.n_layer)]
        self.vc = [np.zeros((0, self.n_kv, self.hd)) for _ in range(self.n_layer)]

    def rms(self, x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * w

    def rope(self, v, pos):  # v [n, h, hd]; adjacent pairs (llama GGUF layout)
        ang = pos[:, None] * self.inv_freq[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        d = self.rope_dims
        a, b = v[..., 0:d:2], v[..., 1:d:2]
        o = v.copy()
        o[..., 0:d:2] = a * c - b * s
        o[..., 1:d:2] = a * s + b * c
        return o

    def forward(self, toks):
        """Appends toks to the cache; returns the final normed hidden states [n, n_embd]."""
        n = len(toks)
        pos0 = self.kc[0].shape[0]
        pos = np.arange(pos0, pos0 + n, dtype=np.float64)
        x = self.embd[toks]
        g = self.n_head // self.n_kv
        for l, L in enumerate(self.layers):
            h = self.rms(x, L["attn_norm"])
            q = self.rope((h @ L["attn_q"].T).reshape(n, self.n_head, self.hd), pos)
            k = self.rope((h @ L["attn_k"].T).reshape(n, self.n_kv, self.hd), pos)
            v = (h @ L["attn_v"].T).reshape(n, self.n_kv, self.hd)
            self.kc[l] = np.concatenate([self.kc[l], k])
            self.vc[l] = np.concatenate([self.vc[l], v])
            K, V = self.kc[l], self.vc[l]
            T = K.shape[0]
            mask = np.arange(T)[None, :] > (pos0 + np.arange(n))[:, None]
            o = np.empty((n, self.n_head, self.hd))
            for hh in range(self.n_head):
                S = q[:, hh] @ K[:, hh // g].T / np.sqrt(self.hd)
                S[mask] = -np.inf
                S = np.exp(S - S.max(1, keepdims=True))
                o[:, hh] = (S / S.sum(1, keepdims=True)) @ V[:, hh // g]
            x = x + o.reshape(n, -1) @ L["attn_output"].T
            h = self.rms(x, L["ffn_norm"])
            gt = h @ L["ffn_gate"].T
            x = x + (gt / (1 + np.exp(-gt)) * (h @ L["ffn_up"].T)) @ L["ffn_down"].T
        return self.rms(x, self.out_norm)

    def logits(self, hidden):
        return hidden @ self.out.T


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def synthetic_text(n_words, seed=7):
    rng = random.Random(seed)
    nouns = ["lamp", "river", "ledger", "falcon", "garden", "engine", "harbor", "violin", "meadow",
             "lantern", "quarry", "orchard", "compass", "beacon", "cellar", "tunnel", "glacier"]
    adjs = ["red", "quiet", "distant", "broken", "golden", "narrow", "ancient", "bright", "hollow"]
    verbs = ["follows", "guards", "measures", "repairs", "crosses", "counts", "paints", "carries"]
    words = []
    while len(words) < n_words:
        s = (f"Record {rng.randint(1, 9999)}: the {rng.choice(adjs)} {rng.choice(nouns)} "
             f"{rng.choice(verbs)} {rng.randint(2, 500)} {rng.choice(adjs)} {rng.choice(nouns)}s"
             f" near the {rng.choice(nouns)}.")
        words += s.split()
    return " ".join(words[:n_words])


def kjv_text():
    try:
        out = subprocess.run(["bible", "-f", "gen1:1-gen10:32"], stdin=subprocess.DEVNULL,
                             capture_output=True, check=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"make-model-goldens: the KJV text needs the Debian package bible-kjv ({e})")
    return out


def main():
    ap = argparse.ArgumentParser()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--model", default=os.path.join(root, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=os.path.join(root, "tests", "data"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import llama_cpp

    llm = llama_cpp.Llama(model_path=args.model, n_ctx=4096, n_threads=args.threads,
                          n_threads_batch=args.threads, logits_all=True, verbose=False, seed=0)
    n_vocab = llm.n_vocab()

    def tok(text, special=True):
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def chat(msg):
        return tok(f"<|im_start|>user\n{msg}<|im_end|>\n<|im_start|>assistant\n")

    prompts = [
        ("chat_capital", chat("What is the capital of France?")),
        ("plain_story", tok("Once upon a time, in a small village by the sea, there lived an old "
                            "fisherman who")),
        ("code_fib", tok("def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n")),
        ("kjv_genesis_long", tok(kjv_text(), special=False)[:2300]),
        ("synthetic_long", tok(synthetic_text(1500), special=False)[:2100]),
    ]
    greedy_prompts = [
        ("chat_capital", prompts[0][1]),
        ("chat_kv_cache", chat("In three sentences: why is reading the KV cache the bottleneck of "
                               "long-context LLM decoding?")),
        ("plain_story", prompts[1][1]),
    ]

    def run(tokens):
        llm.reset()
        llm.eval(tokens)
        return np.array(llm.scores[: len(tokens)], dtype=np.float32)

    print("loading the float64 reference", file=sys.stderr)
    ref = f64_model(args.model)

    def top(row, k):
        ids = np.argsort(-row, kind="stable")[:k]
        return ids, row[ids]

    os.makedirs(args.out, exist_ok=True)
    bin_path = os.path.join(args.out, "model-goldens-logits.bin")
    meta_prompts = []
    with open(bin_path, "wb") as fb:
        for name, tokens in prompts:
            logits = run(tokens)
            n = len(tokens)
            full_rows = [n - 1]
            for p in range(n):
                ids, vals = top(logits[p], TOP_K)
                fb.write(struct.pack(f"<{TOP_K}i", *ids.tolist()))
                fb.write(struct.pack(f"<{TOP_K}f", *vals.astype(np.float32).tolist()))
            ref.reset()
            hidden = ref.forward(tokens)
            agree, max_diff = 0, 0.0
            for c in range(0, n, 256):
                lg = ref.logits(hidden[c:c + 256])
                for i in range(lg.shape[0]):
                    ids, vals = top(lg[i], TOP_K64)
                    fb.write(struct.pack(f"<{TOP_K64}i", *ids.tolist()))
                    fb.write(struct.pack(f"<{TOP_K64}f", *vals.astype(np.float32).tolist()))
                    agree += int(ids[0] == int(np.argmax(logits[c + i])))
                    max_diff = max(max_diff, float(np.abs(logits[c + i][ids] - vals).max()))
            for p in full_rows:
                fb.write(logits[p].astype("<f2").tobytes())
            meta_prompts.append({"name": name, "tokens": [int(t) for t in tokens],
                                 "full_rows": full_rows,
                                 "llama_cpp_vs_f64": {"top1_agree": agree, "positions": n,
                                                      "max_diff_on_f64_top10": round(max_diff, 4)}})
            print(f"{name}: {n} tokens; llama.cpp vs float64: top-1 {agree}/{n}, max diff "
                  f"{max_diff:.3f}", file=sys.stderr)

    def greedy_run(name, tokens, first_logits, step):
        out, margins = [], []
        row = first_logits
        for _ in range(N_GREEDY):
            top2 = np.sort(row)[-2:]
            t = int(np.argmax(row))
            out.append(t)
            margins.append(round(float(top2[1] - top2[0]), 5))
            row = step(t)
        return {"name": name, "prompt": [int(t) for t in tokens], "tokens": out,
                "margins": margins, "text": llm.detokenize(out).decode("utf-8", errors="replace")}

    greedy, greedy64 = [], []
    for name, tokens in greedy_prompts:
        llm.reset()
        llm.eval(tokens)

        def step_llama(t):
            llm.eval([t])
            return np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)

        greedy.append(greedy_run(name, tokens, np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64),
                                 step_llama))
        ref.reset()
        first = ref.logits(ref.forward(tokens)[-1:])[0]
        greedy64.append(greedy_run(name, tokens, first, lambda t: ref.logits(ref.forward([t]))[0]))
        same = next((i for i, (a, b) in enumerate(zip(greedy[-1]["tokens"], greedy64[-1]["tokens"]))
                     if a != b), N_GREEDY)
        print(f"greedy {name}: llama.cpp {greedy[-1]['text']!r}\n  float64 {greedy64[-1]['text']!r}"
              f"\n  identical for {same} tokens", file=sys.stderr)

    meta = {
        "about": "llama.cpp reference logits and greedy continuations; made by "
                 "scripts/make-model-goldens.py",
        "model": {"file": os.path.basename(args.model), "size": os.path.getsize(args.model),
                  "sha256": sha256(args.model), "n_vocab": n_vocab},
        "reference": {"llama_cpp_python": llama_cpp.__version__, "threads": args.threads,
                      "system": llama_cpp.llama_print_system_info().decode().strip(),
                      "numpy": np.__version__},
        "top_k": TOP_K,
        "top_k_f64": TOP_K64,
        "binary_layout": "per prompt: n_pos x {int32 ids[top_k], float32 logits[top_k]} (llama.cpp), "
                         "n_pos x {int32 ids[top_k_f64], float32 logits[top_k_f64]} (float64), then "
                         "float16 logits[n_vocab] (llama.cpp) per full_rows entry; little-endian",
        "prompts": meta_prompts,
        "greedy": greedy,
        "greedy_f64": greedy64,
    }
    with open(os.path.join(args.out, "model-goldens.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"wrote {bin_path} ({os.path.getsize(bin_path)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
