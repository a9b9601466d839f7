#!/usr/bin/env python3
"""Writes tests/data/tokenizer-goldens.json: token ids produced by llama.cpp (through
llama-cpp-python, vocab only) for a list of test strings, and chat prompts rendered by Jinja2 from
the model's own tokenizer.chat_template. tests/tokenizer/*-model-test.cpp compares against it.

Usage: python3 scripts/make-tokenizer-goldens.py [MODEL.gguf]
(default model: models/SmolLM2-135M-Instruct.Q4_1.gguf; needs llama-cpp-python, gguf, jinja2).
"""
import json
import os
import sys
import tempfile

import gguf
import jinja2
import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STRINGS = [
    "",
    " ",
    "  ",
    "hello",
    " hello",
    "Hello world",
    "Hello, world!",
    "don't I'll we've they're she's it'd I'm",
    "DON'T I'LL WE'VE",
    "'s 's 'S 'll",
    "12345678",
    "3.14159 and 1,000,000",
    "x1y22z333 4444",
    "\t\ttabs\tand\nnewlines\n\n\nend",
    "   leading spaces",
    "trailing spaces   ",
    "multiple   spaces  between  words",
    "line1\r\nline2\r\n",
    "\n",
    "\n\n",
    " \n ",
    "    indented\n        more indented\n",
    "中文字符测试",
    "日本語のテキスト、カタカナ",
    "한국어 텍스트",
    "emoji 😀🎉👍🏽 family 👨‍👩‍👧",
    "Ünïcödé àccents café naïve",
    "Привет, мир!",
    "مرحبا بالعالم",
    "ελληνικά γράμματα",
    "math: ∑ x² ≤ ∞ → ∀ε>0",
    "code: def f(x):\n    return x**2  # square\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i]; }",
    "<|im_start|>user\nhi<|im_end|>\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
    "text <|endoftext|> more",
    "<|im_end|><|im_end|>",
    "<|im_start",
    "<jupyter_code>print(1)",
    "URL https://example.com/path?q=1&r=2#frag",
    "email a.b@c.org",
    "$100.50 + 20% = ???",
    "!!!??? ... --- ***",
    "a\u00a0b non-breaking",
    "zero\u200bwidth",
    "ａｂｃ１２３ fullwidth",
    "Ⅻ roman ½ fraction ²³",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "mixed 中文 and English 123 😀!",
    "wörd-wörd_wörd",
    "\u3000ideographic space",
    "tab\t \tmix \t",
]

CHATS = [
    ([{"role": "user", "content": "hi"}], True),
    ([{"role": "user", "content": "hi"}], False),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}], True),
    ([{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi! How can I help?"},
      {"role": "user", "content": "Tell me a joke.\nA short one."}], True),
    ([], True),
]


# Other pre-tokenizers, checked on the same vocabulary: the model's metadata is copied into a
# tensor-less GGUF with tokenizer.ggml.pre replaced (a temporary file, never committed).
OTHER_PRE = ["llama-bpe", "qwen2", "gpt-2", "default"]


def vocab_with_pre(reader, pre, path):
    w = gguf.GGUFWriter(path, arch="llama")
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = pre if key == "tokenizer.ggml.pre" else field.contents()
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            w.add_array(key, value)
        else:
            w.add_key_value(key, value, field.types[0])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    llm = llama_cpp.Llama(model_path=model, vocab_only=True, verbose=False)
    cases = []
    for s in STRINGS:
        b = s.encode("utf-8")
        case = {"text": s}
        for add_special in (False, True):
            for parse_special in (False, True):
                key = f"ids_add{int(add_special)}_special{int(parse_special)}"
                case[key] = list(llm.tokenize(b, add_bos=add_special, special=parse_special))
        case["detok_special"] = llm.detokenize(case["ids_add0_special1"], special=True).decode("utf-8", "replace")
        cases.append(case)

    reader = gguf.GGUFReader(model)
    template = reader.fields["tokenizer.chat_template"].contents()
    env = jinja2.Environment(loader=jinja2.BaseLoader())
    tmpl = env.from_string(template)
    chats = []
    for messages, gen in CHATS:
        chats.append({"messages": messages, "add_generation_prompt": gen,
                      "text": tmpl.render(messages=messages, add_generation_prompt=gen)})

    pre_cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        for pre in OTHER_PRE:
            path = os.path.join(tmp, f"vocab-{pre}.gguf")
            vocab_with_pre(reader, pre, path)
            other = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
            pre_cases[pre] = [{"ids_special0": list(other.tokenize(s.encode("utf-8"), add_bos=False, special=False)),
                               "ids_special1": list(other.tokenize(s.encode("utf-8"), add_bos=False, special=True))}
                              for s in STRINGS]
            del other

    out = {
        "model": os.path.basename(model),
        "llama_cpp_python": llama_cpp.__version__,
        "n_vocab": llm.n_vocab(),
        "cases": cases,
        "pre_cases": pre_cases,
        "chat_template": template,
        "chats": chats,
    }
    path = os.path.join(ROOT, "tests", "data", "tokenizer-goldens.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path}: {len(cases)} strings, {len(chats)} chats")


if __name__ == "__main__":
    main()
