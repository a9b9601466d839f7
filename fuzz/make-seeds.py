#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into fuzz/corpus/<target>/seed-*.

The seeds are small, hand-described inputs that reach each target's main paths; the fuzzers grow
the corpus from them and `fuzz/run-fuzzers` minimizes it back into fuzz/corpus/<target>/.
GGUF seeds are written with the `gguf` Python package (an independent writer): every metadata
value type, nested arrays, a byte-level BPE vocabulary with merges, token types and a ChatML-like
chat template, and small tensors of several types (random block bytes, fixed seed).

Usage: python3 fuzz/make-seeds.py        (needs `pip install gguf numpy`)
"""
import os
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20240611


def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))


def byte_map():
    """GPT-2 byte map: byte -> printable character."""
    printable = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or b >= 174]
    m, n = {}, 256
    for b in range(256):
        if b in printable:
            m[b] = chr(b)
        else:
            m[b] = chr(n)
            n += 1
    return m


CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\\nYou are a terse assistant.<|im_end|>\\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def write_gguf(name, build, version=3):
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.gguf")
        w = gguf.GGUFWriter(p, "llama")
        build(w)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        data = open(p, "rb").read()
    if version == 2:
        data = data[:4] + (2).to_bytes(4, "little") + data[8:]
    out("gguf", name, data)


def vocab(w, pre="smollm", with_types=True):
    bm = byte_map()
    tokens = [bm[b] for b in range(256)]
    merges = [("t", "h"), ("Ġ", "t"), ("th", "e"), ("Ġt", "he"), ("i", "n"), ("in", "g"), ("1", "2")]
    for l, r in merges:
        if l + r != "ing":
            tokens.append(l + r)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool>"]
    types = [1] * len(tokens) + [3, 3, 3, 4]
    tokens += specials
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_merges([l + " " + r for l, r in merges])
    if with_types:
        w.add_token_types(types)
    w.add_bos_token_id(len(tokens) - 4)
    w.add_eos_token_id(len(tokens) - 2)
    w.add_chat_template(CHATML)


def tensors(w, rng, kinds):
    for k, t in enumerate(kinds):
        be, bb = gguf.GGML_QUANT_SIZES[t]
        ne0 = be * 2
        rows = 2
        if t in (T.F32, T.F16, T.BF16):
            arr = rng.standard_normal((rows, ne0)).astype(np.float32)
            if t == T.F16:
                w.add_tensor(f"t{k}.weight", arr.astype(np.float16))
            elif t == T.F32:
                w.add_tensor(f"t{k}.weight", arr)
            else:
                raw = (arr.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
                w.add_tensor(f"t{k}.weight", raw, raw_shape=(rows, ne0 * 2), raw_dtype=T.BF16)
            continue
        raw = rng.integers(0, 256, size=(rows, ne0 // be * bb), dtype=np.uint8)
        # Keep the fp16 scales finite: clear the exponent's top bit of every odd byte.
        raw[:, 1::2] &= 0x3B
        w.add_tensor(f"t{k}.weight", raw, raw_shape=(rows, ne0 // be * bb), raw_dtype=t)


def gguf_seeds():
    rng = np.random.default_rng(SEED)
    write_gguf("empty", lambda w: None)
    write_gguf("empty-v2", lambda w: None, version=2)

    def all_types(w):
        w.add_uint8("a.u8", 200)
        w.add_int8("a.i8", -5)
        w.add_uint16("a.u16", 60000)
        w.add_int16("a.i16", -300)
        w.add_uint32("a.u32", 4000000000)
        w.add_int32("a.i32", -7)
        w.add_float32("a.f32", 1.5)
        w.add_uint64("a.u64", 2**63 + 5)
        w.add_int64("a.i64", -(2**40))
        w.add_float64("a.f64", -2.25)
        w.add_bool("a.bool", True)
        w.add_string("a.str", "héllo")
        w.add_array("a.arr_i32", [1, -2, 3])
        w.add_array("a.arr_str", ["x", "yz", ""])
        w.add_array("a.arr_nested", [[1, 2], [3]])
        w.add_array("a.arr_f32", [0.5, 1.5])
        w.add_uint32("general.alignment", 64)
    write_gguf("all-value-types", all_types)
    write_gguf("vocab-smollm", lambda w: vocab(w))
    write_gguf("vocab-llama-bpe", lambda w: vocab(w, "llama-bpe"))
    write_gguf("vocab-no-types", lambda w: vocab(w, "gpt2", with_types=False))
    write_gguf("tensors-float", lambda w: tensors(w, rng, [T.F32, T.F16, T.BF16]))
    write_gguf("tensors-quant", lambda w: tensors(w, rng, [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]))
    write_gguf("tensors-kquant", lambda w: tensors(w, rng, [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]))

    def model_like(w):
        w.add_context_length(64)
        w.add_embedding_length(32)
        w.add_block_count(1)
        w.add_head_count(2)
        w.add_head_count_kv(1)
        w.add_feed_forward_length(64)
        w.add_layer_norm_rms_eps(1e-5)
        vocab(w)
        tensors(w, rng, [T.Q4_1, T.F32])
    write_gguf("model-like", model_like)

    def tiny_llama(w, quant=T.Q4_1, bias=False):
        """A complete llama model of 1 layer: every tensor the loader asks for, right shapes."""
        embd, n_head, n_kv, hd, ff, vocab_n = 32, 2, 1, 16, 64, 16
        w.add_context_length(64)
        w.add_embedding_length(embd)
        w.add_block_count(1)
        w.add_head_count(n_head)
        w.add_head_count_kv(n_kv)
        w.add_feed_forward_length(ff)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_rope_freq_base(10000.0)

        def mat(name, rows, cols):
            be, bb = gguf.GGML_QUANT_SIZES[quant]
            raw = rng.integers(0, 256, size=(rows, cols // be * bb), dtype=np.uint8)
            raw[:, 1::2] &= 0x3B
            w.add_tensor(name, raw, raw_shape=(rows, cols // be * bb), raw_dtype=quant)

        def vec(name, n):
            w.add_tensor(name, np.ones(n, dtype=np.float32))

        mat("token_embd.weight", vocab_n, embd)
        vec("output_norm.weight", embd)
        vec("blk.0.attn_norm.weight", embd)
        vec("blk.0.ffn_norm.weight", embd)
        mat("blk.0.attn_q.weight", n_head * hd, embd)
        mat("blk.0.attn_k.weight", n_kv * hd, embd)
        mat("blk.0.attn_v.weight", n_kv * hd, embd)
        mat("blk.0.attn_output.weight", embd, n_head * hd)
        mat("blk.0.ffn_gate.weight", ff, embd)
        mat("blk.0.ffn_up.weight", ff, embd)
        mat("blk.0.ffn_down.weight", embd, ff)
        if bias:
            vec("blk.0.attn_q.bias", n_head * hd)
            vec("blk.0.attn_k.bias", n_kv * hd)
            vec("blk.0.attn_v.bias", n_kv * hd)
    write_gguf("tiny-llama-q4_1", tiny_llama)
    write_gguf("tiny-llama-q8_0-bias", lambda w: tiny_llama(w, T.Q8_0, True))
    out("gguf", "not-gguf", b"GGML\x01\x00\x00\x00")
    out("gguf", "big-endian", b"GGUF\x00\x00\x00\x03" + bytes(16))


def write_hash_file(name, bits=32, mlp_layers=2, hidden=8, key_per_group=False, arch="hashattn"):
    """A hash-encoder file as `hashattn train` writes it (include/hashattn/hash-file.h), bound to the
    model shape the hash-file target expects (llama, 1 layer, 2/1 heads, head dim 4)."""
    rng = np.random.default_rng(SEED + bits)
    n_layer, n_head, n_kv, hd = 1, 2, 1, 4
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "h.gguf")
        w = gguf.GGUFWriter(p, arch)
        w.add_uint32("hashattn.format_version", 1)
        w.add_string("hashattn.model.architecture", "llama")
        w.add_string("hashattn.model.name", "tiny")
        w.add_uint32("hashattn.model.block_count", n_layer)
        w.add_uint32("hashattn.model.head_count", n_head)
        w.add_uint32("hashattn.model.head_count_kv", n_kv)
        w.add_uint32("hashattn.model.head_dim", hd)
        w.add_string("hashattn.model.layout_digest", "0123456789abcdef")
        w.add_uint32("hashattn.bits", bits)
        w.add_uint32("hashattn.mlp.layers", mlp_layers)
        w.add_uint32("hashattn.mlp.hidden", hidden)
        w.add_string("hashattn.mlp.activation", "silu")
        w.add_bool("hashattn.key_per_group", key_per_group)
        w.add_array("hashattn.train.texts", ["a.txt"])
        w.add_uint64("hashattn.train.tokens", 1000)
        w.add_string("hashattn.train.settings", "lr=0.001")
        w.add_array("hashattn.train.layers", [0])
        w.add_array("hashattn.train.heads", [0, 1])
        w.add_float32("hashattn.train.seconds", 1.5)
        sizes = [hd] + [hidden] * (mlp_layers - 1) + [bits]
        for l in range(n_layer):
            for role, n_enc in (("q", n_head), ("k", n_kv if key_per_group else n_head)):
                for i in range(mlp_layers):
                    w.add_tensor(f"blk.{l}.hash_{role}.weight.{i}",
                                 rng.standard_normal((n_enc, sizes[i], sizes[i + 1])).astype(np.float32))
                    w.add_tensor(f"blk.{l}.hash_{role}.bias.{i}",
                                 rng.standard_normal((n_enc, sizes[i + 1])).astype(np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        out("hash-file", name, open(p, "rb").read())


def hash_file_seeds():
    write_hash_file("b32-mlp2")
    write_hash_file("b16-mlp1", bits=16, mlp_layers=1)
    write_hash_file("b64-mlp3-per-group", bits=64, mlp_layers=3, hidden=4, key_per_group=True)
    write_hash_file("model-file", arch="llama")


def tokenizer_seeds():
    texts = {
        "english": "Hello world, the thing is 12345 and 3.14 -- isn't it?",
        "code": "def f(x):\n    return x**2  # square\n\n\tprint(f(3))\r\n",
        "unicode": "café naïve 日本語 한국어 Ελληνικά 🙂👍🏽 ﬁ \u200b",
        "spaces": "   a  b   \n\n\n  c \t\t d    ",
        "chatml": "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n",
        "user-defined": "call <tool> then <tool_call> and <tool",
        "digits": "1234567890 0001 9999999999999 ١٢٣",
        "abab": "abababababababab ing thing sing",
    }
    for i, (name, text) in enumerate(texts.items()):
        for flags in (0x00, 0x01 | 0x08, 0x05 | 0x10, 0x02 | 0x18 | 0x20, 0x03, 0x04 | 0x08):
            out("tokenizer", f"{name}-{flags:02x}", bytes([flags]) + text.encode("utf-8"))
    out("tokenizer", "invalid-utf8", bytes([0x00]) + b"ab\xff\xfe c\xc3(\xe2\x82 \xf0\x9f\x98")
    out("tokenizer", "invalid-utf8-sanitized", bytes([0x80]) + b"ab\xff\xfe c\xc3(\xe2\x82 \xf0\x9f\x98")
    out("tokenizer", "decode", bytes([0x40 | 0x20]) + bytes([16, 0, 0, 200, 0, 0, 0x10, 0x01, 0, 255, 255, 255]))
    out("tokenizer", "decode-real", bytes([0x45]) + bytes([116, 0, 0, 200, 1, 0, 0x10, 0xC0, 0]))
    # Custom vocabulary: 2 extra tokens (user-defined "xy", control "<s>") with the gpt2 pre-tokenizer.
    custom = bytes([0x06 | 0x10, (2 << 3) | 3, 4, 2]) + b"xy" + bytes([3, 3]) + b"<s>"
    out("tokenizer", "custom", custom + "xyz <s> abc".encode())


def chat_seeds():
    out("chat-template", "chatml-default-system",
        CHATML + "\x00\x01\x00user\x00Hello!\x00assistant\x00Hi.\x00user\x00And?")
    out("chat-template", "chatml-system", CHATML + "\x00\x00\x00system\x00Be brief.\x00user\x00x")
    out("chat-template", "not-chatml", "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }}{% endfor %}\x00\x01")
    out("chat-template", "empty", "\x00\x01\x00user\x00hi")
    out("chat-template", "empty-role", CHATML + "\x00\x01\x00\x00content")
    out("chat-template", "unguarded", "<|im_start|>system\\nX<|im_end|>\x00\x01\x00user\x00y")


def args_seeds():
    argvs = {
        "help": ["--help"], "version": ["--version"], "none": [], "unknown-sub": ["frobnicate"],
        "info": ["info", "model.gguf"], "info-opts": ["info", "--max-items", "3", "--no-tensors", "m.gguf"],
        "info-bad-int": ["info", "--max-items", "-3", "m.gguf"], "info-help": ["info", "-h"],
        "info-missing": ["info"], "info-unknown-flag": ["info", "--frob", "m.gguf"],
        "info-eq": ["info", "--max-items=12", "m.gguf", "extra"],
        "generate": ["generate", "-p", "Hello", "-n", "16", "--temp", "0.7", "--seed", "1"],
        "generate-attn": ["generate", "--attn", "hash", "--density", "1/32", "--sinks", "4", "--window", "64",
                          "--hash", "h.gguf", "-f", "prompt.txt", "--chat"],
        "train": ["train", "--text", "a.txt", "b.txt", "-o", "h.gguf", "--bits", "32", "--mlp", "128,128"],
        "train-full": ["train", "-m", "m.gguf", "--text", "a.txt", "-o", "h.gguf", "--bits", "64", "--mlp", "128",
                       "--ctx", "2048", "--gqa-mode", "group", "--layers", "0,5-7", "--heads", "1,3", "--lr", "1e-3",
                       "--density", "0.0625", "--sinks", "4", "--window", "64", "--rank", "value-norm",
                       "--loss", "listwise", "--eval-densities", "0.1,0.05"],
        "train-bad-values": ["train", "--bits", "33", "--mlp", "128,x", "--density", "2", "--layers", "7-0",
                             "--ctx", "-5", "--lr", "nan"],
        "train-eval": ["train", "--eval", "--hash", "h.gguf", "--text", "a.txt", "--eval-windows", "2"],
        "eval": ["eval", "--hash", "h.gguf", "--task", "passkey", "--attn", "dense,hash", "--density",
                 "0.1,0.03", "--json", "out.json"],
    }
    for name, argv in argvs.items():
        out("args", name, "\x00".join(argv))


if __name__ == "__main__":
    gguf_seeds()
    tokenizer_seeds()
    chat_seeds()
    args_seeds()
    hash_file_seeds()
