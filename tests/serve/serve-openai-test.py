#!/usr/bin/env python3
"""`hashattn serve` on a loopback port, driven by the official openai client (.venv-serve, scripts/setup).

Covers: chat and completions, whole and streamed (the stream's text equals the whole answer); greedy
output through the server equals `hashattn generate` for the same prompt, dense and hash (a hash file
trained for a few steps in setUpClass); every bad input answered with an OpenAI-style error and the
right 4xx status while the server keeps serving; a client that leaves mid-stream gets its request
cancelled and its pages freed (/metrics); prefix sharing between requests; SIGTERM ends the server
cleanly. Usage: serve-openai-test.py --cli PATH/TO/hashattn [unittest args]
"""
import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.environ.get("HASHATTN_MODEL", os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
TEXT = os.path.join(ROOT, "data", "texts", "persuasion.txt")
KEY = "test-key"
CTX = 1024
CLI = None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    body = c.getresponse().read().decode()
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def raw(port, method, path, body=None, headers=None):
    """One HTTP request; returns (status, parsed JSON or text)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    h = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read().decode()
    try:
        return r.status, json.loads(data)
    except json.JSONDecodeError:
        return r.status, data


class Server:
    def __init__(self, *args):
        self.port = free_port()
        cmd = [CLI, "serve", "-m", MODEL, "--port", str(self.port), "--ctx", str(CTX), "--parallel", "4",
               "-t", "2", "--api-key", KEY, "--max-body", "65536", *args]
        self.log = tempfile.TemporaryFile()
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError("the server exited: " + self.output())
            try:
                if raw(self.port, "GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the server did not come up: " + self.output())

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            return self.p.wait(timeout=60)
        return self.p.returncode


class ServeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for f in (CLI, MODEL, TEXT):
            if not os.path.isfile(f):
                raise RuntimeError(f"input of the server test: nothing at {f} (run scripts/setup --texts)")
        cls.tmp = tempfile.TemporaryDirectory()
        cls.hash = os.path.join(cls.tmp.name, "h.gguf")
        subprocess.run([CLI, "train", "-m", MODEL, "--text", os.path.join(ROOT, "data", "texts", "emma.txt"),
                        "--ctx", "512", "--windows", "1", "--steps", "2", "--queries", "64", "--val-queries", "0",
                        "--layers", "0", "-o", cls.hash, "--threads", "2"], check=True, capture_output=True)
        with open(TEXT, encoding="utf-8") as f:
            cls.long_text = f.read()[2000:5000]
        cls.srv = Server("--hash", cls.hash)
        cls.client = openai.OpenAI(base_url=f"http://127.0.0.1:{cls.srv.port}/v1", api_key=KEY, max_retries=0)
        cls.model_id = os.path.splitext(os.path.basename(MODEL))[0]

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        cls.tmp.cleanup()
        assert rc == 0, f"SIGTERM: exit code {rc}\n{cls.srv.output()}"

    def generate(self, args):
        r = subprocess.run([CLI, "generate", "-m", MODEL, "--temp", "0", "-t", "2", "--ctx", str(CTX), *args],
                           check=True, capture_output=True, text=True)
        return r.stdout[:-1]  # generate ends with a newline

    def healthy(self):
        self.assertEqual(raw(self.srv.port, "GET", "/health")[0], 200)
        r = self.client.completions.create(model=self.model_id, prompt="One, two,", max_tokens=3, temperature=0)
        self.assertEqual(r.choices[0].finish_reason, "length")

    def test_models(self):
        ids = [m.id for m in self.client.models.list()]
        self.assertEqual(ids, [self.model_id])

    def test_chat_whole_and_streamed_agree_with_generate(self):
        q = "Name three rivers in Europe."
        r = self.client.chat.completions.create(model=self.model_id, messages=[{"role": "user", "content": q}],
                                                max_tokens=24, temperature=0)
        text = r.choices[0].message.content
        self.assertEqual(r.usage.completion_tokens, 24)
        self.assertEqual(r.choices[0].finish_reason, "length")
        self.assertEqual(text, self.generate(["--chat", "-p", q, "-n", "24"]))
        parts, finish = [], None
        for ch in self.client.chat.completions.create(model=self.model_id, messages=[{"role": "user", "content": q}],
                                                      max_tokens=24, temperature=0, stream=True):
            parts.append(ch.choices[0].delta.content or "")
            finish = ch.choices[0].finish_reason or finish
        self.assertEqual("".join(parts), text)
        self.assertEqual(finish, "length")

    def test_completions_dense_and_hash_agree_with_generate(self):
        for attn in ("dense", "hash"):
            with self.subTest(attn=attn):
                r = self.client.completions.create(model=self.model_id, prompt=self.long_text, max_tokens=16,
                                                   temperature=0, extra_body={"attn": attn, "density": "1/8"})
                args = ["-p", self.long_text, "-n", "16", "--attn", attn, "--density", "1/8"]
                if attn == "hash":
                    args += ["--hash", self.hash]
                self.assertEqual(r.choices[0].text, self.generate(args))
                self.assertEqual(r.model_extra["hashattn"]["attn"], "dense" if attn == "dense" else "hash/head@1/8")
                if attn == "hash":
                    self.assertLess(r.model_extra["hashattn"]["density"], 0.5)

    def test_streamed_completion_and_stop_string(self):
        r = self.client.completions.create(model=self.model_id, prompt="1, 2, 3, 4,", max_tokens=20, temperature=0)
        full = r.choices[0].text
        self.assertIn(" 7", full)
        cut = self.client.completions.create(model=self.model_id, prompt="1, 2, 3, 4,", max_tokens=20, temperature=0,
                                             stop=[" 7"])
        self.assertEqual(cut.choices[0].text, full[:full.index(" 7")])
        self.assertEqual(cut.choices[0].finish_reason, "stop")
        text = "".join(c.choices[0].text for c in self.client.completions.create(
            model=self.model_id, prompt="1, 2, 3, 4,", max_tokens=20, temperature=0, stop=[" 7"], stream=True))
        self.assertEqual(text, cut.choices[0].text)

    def test_seeded_sampling_is_reproducible(self):
        kw = dict(model=self.model_id, prompt="Once upon a time", max_tokens=12, temperature=0.9, seed=7)
        self.assertEqual(self.client.completions.create(**kw).choices[0].text,
                         self.client.completions.create(**kw).choices[0].text)

    def test_bad_inputs_get_4xx_and_the_server_keeps_serving(self):
        p = self.srv.port
        chat = "/v1/chat/completions"
        msgs = [{"role": "user", "content": "hi"}]
        cases = [
            ("malformed JSON", chat, "{not json", 400),
            ("not an object", chat, "[1, 2]", 400),
            ("no messages", chat, json.dumps({"model": self.model_id}), 400),
            ("messages not a list", chat, json.dumps({"messages": "hi"}), 400),
            ("bad role", chat, json.dumps({"messages": [{"role": "robot", "content": "x"}]}), 400),
            ("max_tokens a string", chat, json.dumps({"messages": msgs, "max_tokens": "5"}), 400),
            ("max_tokens 0", chat, json.dumps({"messages": msgs, "max_tokens": 0}), 400),
            ("max_tokens too large", chat, json.dumps({"messages": msgs, "max_tokens": CTX}), 400),
            ("temperature out of range", chat, json.dumps({"messages": msgs, "temperature": 5}), 400),
            ("stream not a bool", chat, json.dumps({"messages": msgs, "stream": "yes"}), 400),
            ("unknown model", chat, json.dumps({"model": "gpt-9", "messages": msgs}), 404),
            ("unknown attn", chat, json.dumps({"messages": msgs, "attn": "magic"}), 400),
            ("bad density", chat, json.dumps({"messages": msgs, "attn": "hash", "density": "2"}), 400),
            ("n = 2", chat, json.dumps({"messages": msgs, "n": 2}), 400),
            ("prompt over the context", "/v1/completions", json.dumps({"prompt": "word " * 3000}), 400),
            ("empty prompt", "/v1/completions", json.dumps({"prompt": ""}), 400),
            ("oversized body", chat, json.dumps({"messages": msgs, "pad": "x" * 100000}), 413),
            ("unknown endpoint", "/v1/embeddings", json.dumps({"input": "x"}), 404),
        ]
        for name, path, body, status in cases:
            with self.subTest(name):
                got, resp = raw(p, "POST", path, body)
                self.assertEqual(got, status, resp)
                self.assertIsInstance(resp, dict, resp)
                self.assertIn("message", resp["error"])
                self.healthy()
        with self.subTest("bad API key"):
            got, resp = raw(p, "POST", chat, json.dumps({"messages": msgs}), {"Authorization": "Bearer wrong"})
            self.assertEqual(got, 401)
            self.assertEqual(resp["error"]["code"], "invalid_api_key")
            bad = openai.OpenAI(base_url=f"http://127.0.0.1:{p}/v1", api_key="wrong", max_retries=0)
            with self.assertRaises(openai.AuthenticationError):
                bad.models.list()
            self.healthy()
        with self.subTest("openai client sees a 400"):
            with self.assertRaises(openai.BadRequestError):
                self.client.chat.completions.create(model=self.model_id, messages=msgs, max_tokens=0)

    def test_client_leaving_mid_stream_frees_its_pages(self):
        srv = Server("--no-prefix-share")  # no finished request keeps pages: every page must come back
        try:
            self.leave_mid_stream(srv.port)
        finally:
            self.assertEqual(srv.stop(), 0, srv.output())

    def leave_mid_stream(self, p):
        before = metrics(p)
        self.assertEqual(before["hashattn_kv_pages_used"], 0)
        c = http.client.HTTPConnection("127.0.0.1", p, timeout=60)
        body = {"prompt": "A long story about a lighthouse keeper:", "max_tokens": 600, "ignore_eos": True,
                "stream": True, "temperature": 0}
        c.request("POST", "/v1/completions", body=json.dumps(body),
                  headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        got = b""
        while got.count(b"data: ") < 5:
            got += r.read1(4096)
        self.assertGreater(metrics(p)["hashattn_running_requests"], 0)
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        deadline = time.time() + 60
        while time.time() < deadline:
            m = metrics(p)
            if m['hashattn_requests_total{outcome="cancelled"}'] > before['hashattn_requests_total{outcome="cancelled"}']:
                break
            time.sleep(0.2)
        self.assertGreater(m['hashattn_requests_total{outcome="cancelled"}'],
                           before['hashattn_requests_total{outcome="cancelled"}'])
        self.assertEqual(m["hashattn_running_requests"], 0)
        self.assertEqual(m["hashattn_kv_pages_used"], 0, "the pages came back")
        self.assertEqual(raw(p, "GET", "/health")[0], 200)

    def test_prefix_shared_between_requests(self):
        prefix = "Chapter the ninth, as told twice.\n" + self.long_text[:1500]  # no other test starts so
        outs = []
        for tail in (" What happened next?", " Who was there?"):
            r = self.client.completions.create(model=self.model_id, prompt=prefix + tail, max_tokens=8,
                                               temperature=0)
            outs.append(r)
        self.assertEqual(outs[0].model_extra["hashattn"]["shared_prompt_tokens"], 0)
        self.assertGreaterEqual(outs[1].model_extra["hashattn"]["shared_prompt_tokens"], 256)
        self.assertEqual(outs[1].choices[0].text, self.generate(["-p", prefix + " Who was there?", "-n", "8"]))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    args, rest = ap.parse_known_args()
    CLI = os.path.abspath(args.cli)
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)
