#!/usr/bin/env python3
"""Writes the GGUF golden files used by tests/gguf, using the `gguf` Python package as the
independent implementation:

  tests/data/dequant-golden.json     random blocks of every quantized type the package can
                                     dequantize (hex bytes) and the package's float output
  tests/data/gguf-model-golden.json  facts about the default model (counts, a few tensor infos)
                                     and dequantized rows of a few of its tensors

Usage: python3 tests/data/make-gguf-goldens.py [MODEL.gguf]
(default model: models/SmolLM2-135M-Instruct.Q4_1.gguf; needs `pip install gguf numpy`).
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SEED = 20240607


def finite_half(rng):
    """Random fp16 bits of a normal number with magnitude in [2^-8, 2^2)."""
    sign = int(rng.integers(0, 2))
    exp = int(rng.integers(7, 17))
    man = int(rng.integers(0, 1024))
    return (sign << 15) | (exp << 10) | man


# Byte offsets of the fp16 scale fields inside one block of each type; the other bytes are random.
HALF_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def dequant_golden():
    rng = np.random.default_rng(SEED)
    out = {"seed": SEED, "cases": []}
    for qt, fields in HALF_FIELDS.items():
        block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qt]
        n_blocks = 2 if block_elems == 32 else 1
        raw = bytearray(rng.integers(0, 256, size=block_bytes * n_blocks, dtype=np.uint8).tobytes())
        for b in range(n_blocks):
            for off in fields:
                h = finite_half(rng)
                raw[b * block_bytes + off] = h & 0xFF
                raw[b * block_bytes + off + 1] = h >> 8
        y = dequantize(np.frombuffer(bytes(raw), dtype=np.uint8), qt).astype(np.float32).reshape(-1)
        assert y.size == block_elems * n_blocks and np.all(np.isfinite(y))
        out["cases"].append({
            "type": qt.name,
            "type_id": int(qt),
            "n": int(y.size),
            "hex": bytes(raw).hex(),
            "values": [float(v) for v in y],
        })
    return out


def model_golden(path):
    r = gguf.GGUFReader(path)
    types = {}
    for t in r.tensors:
        key = f"{t.tensor_type.name}/{len(t.shape)}"
        types[key] = types.get(key, 0) + 1
    n_kv = int(r.fields["GGUF.kv_count"].contents())
    g = {
        "file_size": os.path.getsize(path),
        "version": int(r.fields["GGUF.version"].contents()),
        "n_kv": n_kv,
        "n_tensors": len(r.tensors),
        "data_offset": int(r.data_offset),
        "type_counts": types,
        "tensors": [],
        "rows": [],
    }
    want_infos = ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_norm.weight",
                  "blk.29.ffn_down.weight", "output_norm.weight"]
    want_rows = [("token_embd.weight", [0, 1, 4321, 49151]), ("blk.0.attn_q.weight", [0, 575]),
                 ("blk.29.ffn_down.weight", [7]), ("blk.0.attn_norm.weight", [0]), ("output_norm.weight", [0])]
    by_name = {t.name: t for t in r.tensors}
    for name in want_infos:
        t = by_name[name]
        g["tensors"].append({
            "name": name, "type": t.tensor_type.name, "ne": [int(d) for d in t.shape],
            "offset": int(t.data_offset) - int(r.data_offset), "nbytes": int(t.n_bytes),
        })
    for name, rows in want_rows:
        t = by_name[name]
        full = dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32)
        full = full.reshape(-1, int(t.shape[0]))
        for row in rows:
            g["rows"].append({"tensor": name, "row": row, "values": [float(v) for v in full[row]]})
        g["rows"].append({"tensor": name, "row": -1, "sum": float(full.astype(np.float64).sum()),
                          "sumsq": float((full.astype(np.float64) ** 2).sum())})
    return g


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    with open(os.path.join(HERE, "dequant-golden.json"), "w") as f:
        json.dump(dequant_golden(), f, separators=(",", ":"))
        f.write("\n")
    with open(os.path.join(HERE, "gguf-model-golden.json"), "w") as f:
        json.dump(model_golden(model), f, separators=(",", ":"))
        f.write("\n")
    print("wrote tests/data/dequant-golden.json and tests/data/gguf-model-golden.json")


if __name__ == "__main__":
    main()
