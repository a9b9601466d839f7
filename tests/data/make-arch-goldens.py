#!/usr/bin/env python3
"""Writes tests/data/arch-goldens.json: llama.cpp's logits on small random-weight models of each
supported architecture, which tests/model/arch-golden-slow-test.cpp checks the runtime against.

Every model is written here by the `gguf` Python package from a spec (kept in the JSON: metadata and
a table of tensors) and a fixed seed; the test rebuilds the same tensors byte for byte from the same
spec with its own generator (a per-tensor splitmix64 stream, defined below and in the test) and
checks them against the digest recorded here, so the goldens need no committed model files and CI
needs neither Python package. Weights are random blocks of their GGUF type (K-quants included):
random bytes, with every fp16 scale field set to 2^E (1 + m / 1024), m a random 10-bit mantissa and E
the spec's exponent for the tensor (E_min for the K-quants' and Q2_K's dmin field), so that each
type's weights have a chosen magnitude. Norm weights are 1 + U[-0.2, 0.2), biases U[-0.2, 0.2).

Cases (one file each; 256 positions of random token ids, logits of all of them):
  mistral       llama architecture, GQA 4:1, rope base 1e6, attention.sliding_window 4096 (ignored
                by llama.cpp for llama files, and by us), Q4_K/Q3_K/Q8_0/Q5_K/Q2_K/Q6_K weights
  llama3        Llama 3.1 RoPE frequency scaling (orig. context 64, factor 8, low 1, high 4),
                tied embeddings; llama.cpp reads the rope_freqs tensor; the test runs both that file
                and a variant without the tensor that asks for the scaling in the metadata
                (rope.scaling.type = llama3 ..., which llama.cpp does not read)
  qwen2-yarn    qwen2 (NEOX RoPE, q/k/v biases) with YaRN: factor 4, original context 64
  gemma3        6 layers, default pattern (layers 0-4 sliding, window 32, rope base 10000; layer 5
                global, rope base 1e6 with linear scaling 8), QK-norm, post-norms, GeGLU, embedding
                scale, tied output, key_length 128 x 4 heads != n_embd, final logit soft-capping 30
Each case comes twice: "NAME-f16" with every matrix F16 (llama.cpp then rounds activations to fp16
only: the architecture's math is compared tightly) and "NAME" with the quantized types above (llama.cpp
quantizes activations to 8 bits in those products, which moves the logits of these flat random
models by up to ~6% of their largest value and flips a few near-tied top-1s: the test's criterion
for these cases is looser, see tests/model/arch-golden-slow-test.cpp).
Stored per case: the spec, the data digest, the token ids, llama.cpp's top-8 (id, logit) at every
position and its full logits rows at 4 positions.

Usage: .venv-bench/bin/python tests/data/make-arch-goldens.py   (needs llama-cpp-python, gguf, numpy:
`scripts/setup --bench`). Files go to a temporary directory.
"""
import importlib.metadata
import json
import math
import os
import sys
import tempfile

import numpy as np

SEED = 20261205
N_POS = 256
TOP = 8
FULL_ROWS = [0, 33, 150, 255]
HERE = os.path.dirname(os.path.abspath(__file__))
M64 = (1 << 64) - 1

# GGUF type ids, block elements, block bytes and the byte offsets of (d, dmin) fp16 fields.
TYPES = {
    "F32": (0, 1, 4, []), "F16": (1, 1, 2, []), "Q4_0": (2, 32, 18, [0]), "Q5_0": (6, 32, 22, [0]), "Q8_0": (8, 32, 34, [0]),
    "Q2_K": (10, 256, 84, [80, 82]), "Q3_K": (11, 256, 110, [108]), "Q4_K": (12, 256, 144, [0, 2]),
    "Q5_K": (13, 256, 176, [0, 2]), "Q6_K": (14, 256, 210, [208]),
}
# Exponent E of the scale fields per type (weights of std ~0.02-0.1), and E_min of the dmin fields.
EXP = {"F16": (-4, 0), "Q4_0": (-8, 0), "Q5_0": (-9, 0), "Q8_0": (-12, 0), "Q2_K": (-9, -9), "Q3_K": (-11, 0),
       "Q4_K": (-13, -10), "Q5_K": (-14, -10), "Q6_K": (-14, 0)}


def fnv1a(data, h=0xcbf29ce484222325):
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & M64
    return h


class splitmix64:
    def __init__(self, seed):
        self.s = seed & M64

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & M64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)


def tensor_bytes(name, tname, ne, kind, exp=0, exp_min=0):
    """The bytes of one tensor (the same recipe as tests/model/arch-golden-slow-test.cpp)."""
    rng = splitmix64(SEED ^ fnv1a(name.encode()))
    tid, blk, bb, fields = TYPES[tname]
    n = int(np.prod(ne))
    if tname == "F32":
        vals = np.empty(n, dtype=np.float32)
        for i in range(n):
            u = (rng.next() >> 40) / float(1 << 24) - 0.5  # exact in double
            vals[i] = np.float32((1.0 if kind == "norm" else 0.0) + u * 0.4)
        return vals.tobytes()
    if tname == "F16":  # +-2^E (1 + m / 1024)
        h = np.empty(n, dtype=np.uint16)
        for i in range(n):
            r = rng.next()
            h[i] = (r & 0x8000) | ((exp + 15) << 10) | (r & 0x3FF)
        return h.tobytes()
    nbytes = n // blk * bb
    out = bytearray()
    while len(out) < nbytes:
        out += rng.next().to_bytes(8, "little")
    out = out[:nbytes]
    for b in range(n // blk):
        for k, off in enumerate(fields):
            e = exp if k == 0 else exp_min
            bits = ((e + 15) << 10) | (rng.next() & 0x3FF)
            out[b * bb + off] = bits & 0xFF
            out[b * bb + off + 1] = bits >> 8
    return bytes(out)


def digest(tensors):
    """FNV-1a over (name, bytes) of every tensor, by name."""
    h = 0xcbf29ce484222325
    for name in sorted(tensors):
        h = fnv1a(name.encode(), h)
        h = fnv1a(tensors[name], h)
    return f"{h:016x}"


def llama3_factors(dims, base, factor, low, high, orig):
    """convert_hf_to_gguf's Llama 3.1 rope_freqs (float64, stored as float32)."""
    out = []
    for i in range(dims // 2):
        freq = 1.0 / (base ** (2 * i / dims))
        wave = 2 * math.pi / freq
        if wave < orig / high:
            out.append(1.0)
        elif wave > orig / low:
            out.append(factor)
        else:
            smooth = (orig / wave - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def layer_tensors(l, E, Q, KV, F, types, bias=False, gemma=False, hd=0):
    b = f"blk.{l}."
    t = [(b + "attn_norm.weight", "F32", [E], "norm"), (b + "ffn_norm.weight", "F32", [E], "norm"),
         (b + "attn_q.weight", types["q"], [E, Q], "w"), (b + "attn_k.weight", types["k"], [E, KV], "w"),
         (b + "attn_v.weight", types["v"], [E, KV], "w"), (b + "attn_output.weight", types["o"], [Q, E], "w"),
         (b + "ffn_gate.weight", types["gate"], [E, F], "w"), (b + "ffn_up.weight", types["up"], [E, F], "w"),
         (b + "ffn_down.weight", types["down"], [F, E], "w")]
    if bias:
        t += [(b + "attn_q.bias", "F32", [Q], "bias"), (b + "attn_k.bias", "F32", [KV], "bias"),
              (b + "attn_v.bias", "F32", [KV], "bias")]
    if gemma:
        t += [(b + "attn_q_norm.weight", "F32", [hd], "norm"), (b + "attn_k_norm.weight", "F32", [hd], "norm"),
              (b + "post_attention_norm.weight", "F32", [E], "norm"), (b + "post_ffw_norm.weight", "F32", [E], "norm")]
    return t


def case_spec(name):
    if name.endswith("-f16"):  # the same model with F16 matrices
        spec = case_spec(name[:-4])
        spec["name"] = name
        tied = not any(t["name"] == "output.weight" for t in spec["tensors"])
        for t in spec["tensors"]:
            if t["kind"] == "w":
                big = t["name"] == "output.weight" or (t["name"] == "token_embd.weight" and not tied)
                t["type"], t["exp"], t["exp_min"] = "F16", -4 if big else -6, 0
        return spec
    V, E, F = 512, 256, 512
    if name == "mistral":
        arch, L, H, KVH, HD, ctx = "llama", 3, 4, 1, 64, 1024
        meta = [("llama.rope.freq_base", "f32", 1e6), ("llama.attention.sliding_window", "u32", 4096)]
        types = {"q": "Q4_K", "k": "Q3_K", "v": "Q8_0", "o": "Q5_K", "gate": "Q2_K", "up": "Q4_K", "down": "Q5_K"}
        emb, out = "Q8_0", "F16"
    elif name == "llama3":
        arch, L, H, KVH, HD, ctx = "llama", 2, 4, 2, 64, 1024
        meta = [("llama.rope.freq_base", "f32", 500000.0)]
        types = {"q": "Q8_0", "k": "Q8_0", "v": "Q4_0", "o": "Q4_0", "gate": "Q4_K", "up": "Q5_0", "down": "Q6_K"}
        emb, out = "F16", None
    elif name == "qwen2-yarn":
        arch, L, H, KVH, HD, ctx = "qwen2", 2, 4, 2, 64, 1024
        meta = [("qwen2.rope.freq_base", "f32", 1e6), ("qwen2.rope.scaling.type", "str", "yarn"),
                ("qwen2.rope.scaling.factor", "f32", 4.0), ("qwen2.rope.scaling.original_context_length", "u32", 64)]
        types = {"q": "Q5_0", "k": "Q8_0", "v": "Q4_0", "o": "Q8_0", "gate": "Q4_K", "up": "Q4_K", "down": "Q6_K"}
        emb, out = "Q4_0", "F16"
    elif name == "gemma3":
        arch, L, H, KVH, HD, ctx = "gemma3", 6, 4, 1, 128, 1024
        meta = [("gemma3.rope.freq_base", "f32", 1e6), ("gemma3.attention.sliding_window", "u32", 32),
                ("gemma3.rope.scaling.type", "str", "linear"), ("gemma3.rope.scaling.factor", "f32", 8.0),
                ("gemma3.final_logit_softcapping", "f32", 30.0)]
        types = {"q": "Q4_K", "k": "Q8_0", "v": "Q5_K", "o": "Q4_K", "gate": "Q4_K", "up": "Q3_K", "down": "Q5_K"}
        emb, out = "F16", None
    else:
        raise ValueError(name)
    a = arch + "."
    meta = [("general.architecture", "str", arch), (a + "block_count", "u32", L), (a + "context_length", "u32", ctx),
            (a + "embedding_length", "u32", E), (a + "feed_forward_length", "u32", F),
            (a + "attention.head_count", "u32", H), (a + "attention.head_count_kv", "u32", KVH),
            (a + "attention.key_length", "u32", HD), (a + "attention.value_length", "u32", HD),
            (a + "attention.layer_norm_rms_epsilon", "f32", 1e-6 if arch == "gemma3" else 1e-5)] + meta
    tensors = [("token_embd.weight", emb, [E, V], "w"), ("output_norm.weight", "F32", [E], "norm")]
    if out:
        tensors.append(("output.weight", out, [E, V], "w"))
    for l in range(L):
        tensors += layer_tensors(l, E, H * HD, KVH * HD, F, types, bias=arch == "qwen2", gemma=arch == "gemma3", hd=HD)
    spec = {"name": name, "metadata": [list(m) for m in meta],
            "tensors": [{"name": n, "type": t, "ne": ne, "kind": k, "exp": EXP.get(t, (0, 0))[0],
                         "exp_min": EXP.get(t, (0, 0))[1]} for n, t, ne, k in tensors]}
    if name == "llama3":
        sc = {"factor": 8.0, "low": 1.0, "high": 4.0, "orig": 64}
        spec["rope_freqs"] = [float(x) for x in llama3_factors(HD, 500000.0, 8.0, 1.0, 4.0, 64)]
        spec["ours_metadata"] = [["llama.rope.scaling.type", "str", "llama3"],
                                 ["llama.rope.scaling.factor", "f32", sc["factor"]],
                                 ["llama.rope.scaling.low_freq_factor", "f32", sc["low"]],
                                 ["llama.rope.scaling.high_freq_factor", "f32", sc["high"]],
                                 ["llama.rope.scaling.original_context_length", "u32", sc["orig"]]]
    return spec


def write_gguf(spec, path):
    import gguf
    w = gguf.GGUFWriter(path, spec["metadata"][0][2])
    vt = {"u32": gguf.GGUFValueType.UINT32, "f32": gguf.GGUFValueType.FLOAT32, "str": gguf.GGUFValueType.STRING}
    for k, t, v in spec["metadata"]:
        if k == "general.architecture":
            continue  # written by the GGUFWriter constructor
        w.add_key_value(k, v, vt[t])
    # A byte-level vocabulary for llama.cpp's loader (our model loader does not read it): the 256
    # GPT-2 byte tokens, one merge, fillers, bos and eos.
    V = next(t["ne"][1] for t in spec["tensors"] if t["name"] == "token_embd.weight")
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_tok = {b: chr(c) for b, c in zip(bs, cs)}
    toks = [byte_tok[b] for b in range(256)] + ["ab"] + [f"<|filler_{i}|>" for i in range(257, V - 2)]
    toks += ["<|begin_of_text|>", "<|end_of_text|>"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(toks)
    w.add_token_types([1] * (V - 2) + [3, 3])
    w.add_token_merges(["a b"])  # llama.cpp wants a merges list
    w.add_bos_token_id(V - 2)
    w.add_eos_token_id(V - 1)
    w.add_add_bos_token(False)
    data = {}
    for t in spec["tensors"]:
        b = tensor_bytes(t["name"], t["type"], t["ne"], t["kind"], t["exp"], t["exp_min"])
        data[t["name"]] = b
        tid = TYPES[t["type"]][0]
        if t["type"] in ("F32", "F16"):
            dt = np.float32 if t["type"] == "F32" else np.float16
            w.add_tensor(t["name"], np.frombuffer(b, dtype=dt).reshape(list(reversed(t["ne"]))))
        elif False:
            w.add_tensor(t["name"], np.frombuffer(b, dtype=np.float32).reshape(list(reversed(t["ne"]))))
        else:
            rows = int(np.prod(t["ne"][1:]))
            arr = np.frombuffer(b, dtype=np.uint8).reshape(rows, len(b) // rows)
            w.add_tensor(t["name"], arr, raw_dtype=gguf.GGMLQuantizationType(tid))
    if "rope_freqs" in spec:
        w.add_tensor("rope_freqs.weight", np.array(spec["rope_freqs"], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return digest(data)


def run_case(spec, tmp):
    import llama_cpp
    path = os.path.join(tmp, spec["name"] + ".gguf")
    spec_digest = write_gguf(spec, path)
    V = next(t["ne"][1] for t in spec["tensors"] if t["name"] == "token_embd.weight")
    rng = np.random.default_rng(SEED + len(spec["name"]))
    tokens = [int(x) for x in rng.integers(0, V - 2, size=N_POS)]
    llm = llama_cpp.Llama(model_path=path, n_ctx=1024, n_batch=512, n_threads=2, n_threads_batch=2,
                          logits_all=True, verbose=bool(os.environ.get("VERBOSE")), seed=0)
    llm.eval(tokens)
    L = np.array(llm.scores[:N_POS], dtype=np.float32)
    del llm
    top = np.argsort(-L, axis=1, kind="stable")[:, :TOP]
    margin = np.take_along_axis(L, top[:, :2], axis=1)
    return {
        "spec": spec, "digest": spec_digest, "file_bytes": os.path.getsize(path), "tokens": tokens,
        "top_ids": top.astype(int).tolist(),
        "top_logits": [[float(f"{v:.5g}") for v in L[i, top[i]]] for i in range(N_POS)],
        "top1_margin_min": float((margin[:, 0] - margin[:, 1]).min()),
        "full_rows": {str(i): [float(f"{v:.5g}") for v in L[i]] for i in FULL_ROWS},
    }


def main():
    import llama_cpp
    import gguf  # noqa: F401
    names = sys.argv[1:] or [n + v for n in ["mistral", "llama3", "qwen2-yarn", "gemma3"] for v in ["-f16", ""]]
    out = {"about": "llama.cpp logits on random-weight models; made by tests/data/make-arch-goldens.py",
           "seed": SEED, "n_pos": N_POS, "top": TOP,
           "reference": {"llama_cpp_python": llama_cpp.__version__, "gguf": importlib.metadata.version("gguf"),
                         "numpy": np.__version__, "threads": 2},
           "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in names:
            c = run_case(case_spec(n), tmp)
            print(f"{n}: {c['file_bytes']} bytes, digest {c['digest']}, min top-1 margin {c['top1_margin_min']:.4f}")
            out["cases"].append(c)
    with open(os.path.join(HERE, "arch-goldens.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
