#!/usr/bin/env python3
"""Writes tests/data/spm-goldens.json: llama.cpp's token ids (through llama-cpp-python, vocab only)
for SentencePiece vocabularies (tokenizer.ggml.model = "llama": Llama 2, Mistral 7B v0.1-v0.3,
Gemma 3), which tests/tokenizer/spm-tokenizer-test.cpp checks our tokenizer against.

The vocabulary: a subset of the Llama 2 SentencePiece vocabulary of llama.cpp's source tree
(models/ggml-vocab-llama-spm.gguf, in the llama-cpp-python 0.3.36 sdist: pass its path): the ids that
llama.cpp produces on the string set of scripts/make-tokenizer-goldens.py, with every vocabulary
token that is a substring of one of them (so merges take their real paths), the 3 special and 256
byte-fallback tokens, in their original order and with their scores. Two flavours of it are
tokenized: "llama" (add_space_prefix, as Llama 2 and Mistral) and "gemma" (no space prefix, as
Gemma 3, with the control tokens <start_of_turn> and <end_of_turn> added). The JSON holds both
vocabularies, so the test needs no model file.

Usage: .venv-bench/bin/python tests/data/make-spm-goldens.py PATH/ggml-vocab-llama-spm.gguf
"""
import importlib.util
import json
import os
import sys
import tempfile

import gguf
import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EXTRA = ["Hello world", "  two leading", "<start_of_turn>user\nhi<end_of_turn>\n", "a<s>b</s>c", "▁literal ▁",
         "\x00\x01 bytes \x7f", "ĉ ŉ ǅ", "antidisestablishmentarianism", "internationalization"]


def strings():
    spec = importlib.util.spec_from_file_location("mtg", os.path.join(ROOT, "scripts", "make-tokenizer-goldens.py"))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m.STRINGS + EXTRA


def write_vocab(path, toks, scores, types, space_prefix):
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(64)
    w.add_feed_forward_length(64)
    w.add_head_count(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(space_prefix)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tokenize_all(path, texts):
    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    cases = []
    for s in texts:
        case = {"text": s}
        for add in (False, True):
            for special in (False, True):
                case[f"ids_add{int(add)}_special{int(special)}"] = list(
                    llm.tokenize(s.encode("utf-8"), add_bos=add, special=special))
        case["detok"] = llm.detokenize(case["ids_add0_special1"], special=True).decode("utf-8", "replace")
        cases.append(case)
    del llm
    return cases


def main():
    src = sys.argv[1]
    r = gguf.GGUFReader(src)
    toks = [str(t) for t in r.fields["tokenizer.ggml.tokens"].contents()]
    scores = [float(x) for x in r.fields["tokenizer.ggml.scores"].contents()]
    types = [int(x) for x in r.fields["tokenizer.ggml.token_type"].contents()]
    texts = strings()
    full = llama_cpp.Llama(model_path=src, vocab_only=True, verbose=False)
    used = set()
    for s in texts:
        for add in (False, True):
            used.update(full.tokenize(s.encode("utf-8"), add_bos=add, special=False))
            used.update(full.tokenize(s.encode("utf-8"), add_bos=add, special=True))
    del full
    index = {t: i for i, t in enumerate(toks)}
    keep = set(range(259)) | used
    for i in list(used):
        t = toks[i]
        for a in range(len(t)):
            for b in range(a + 1, len(t) + 1):
                j = index.get(t[a:b])
                if j is not None:
                    keep.add(j)
    ids = sorted(keep)
    sub_t, sub_s, sub_y = [toks[i] for i in ids], [scores[i] for i in ids], [types[i] for i in ids]
    out = {"about": "llama.cpp token ids on SentencePiece vocabularies; made by tests/data/make-spm-goldens.py",
           "source_vocab": os.path.basename(src), "llama_cpp_python": llama_cpp.__version__, "flavours": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name, space_prefix, extra in (("llama", True, []), ("gemma", False, ["<start_of_turn>", "<end_of_turn>"])):
            t, sc, ty = sub_t + extra, sub_s + [0.0] * len(extra), sub_y + [3] * len(extra)
            path = os.path.join(tmp, name + ".gguf")
            write_vocab(path, t, sc, ty, space_prefix)
            out["flavours"].append({"name": name, "add_space_prefix": space_prefix, "tokens": t, "scores": sc,
                                    "types": ty, "bos": 1, "eos": 2, "unk": 0, "cases": tokenize_all(path, texts)})
            print(f"{name}: {len(t)} tokens, {len(texts)} strings")
    with open(os.path.join(HERE, "spm-goldens.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
