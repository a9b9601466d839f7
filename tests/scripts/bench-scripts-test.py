#!/usr/bin/env python3
"""Tests of the benchmark scripts that turn measurements into the "met" columns and ratios, on inputs
committed under tests/data/ (python3 stdlib unittest; run from ctest, label unit):
  - bench/cuda-report.py: the recorded H200 run of docs/PERFORMANCE.md (cuda-decode-bench and
    cuda-sdpa-anchor JSON) renders exactly the recorded report (tests/data/cuda-report.md); on small
    hand-made inputs each target is "yes" at the target ratio, "NO" just below and "not measured"
    without a torch anchor;
  - bench/attention-table.py: a hand-made bench-attention JSON (google-benchmark format, 3
    repetitions) gives the medians, ranges, rooflines and speedups computed by hand below;
  - scripts/bench-llamacpp.py: the closing stderr line of a recorded `hashattn generate --token-ids`
    run (tests/data/hashattn-generate.stderr: 600 prompt tokens, -n 9, -t 2, on a busy 2-core machine) and the JSON line of the llama-cpp-python child parse to the times they state; a run without
    the line stops the benchmark with the tool's stderr.
"""
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data")


def run_script(path, *args):
    r = subprocess.run([sys.executable, os.path.join(ROOT, path), *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"{path} exited {r.returncode}: {r.stderr}")
    return r.stdout


def write_json(d, obj):
    p = os.path.join(d, f"in{len(os.listdir(d))}.json")
    with open(p, "w") as f:
        json.dump(obj, f)
    return p


class CudaReport(unittest.TestCase):
    def test_recorded_run_renders_the_recorded_report(self):
        got = run_script("bench/cuda-report.py", os.path.join(DATA, "cuda-decode-bench.json"),
                         os.path.join(DATA, "cuda-sdpa-anchor.json"))
        with open(os.path.join(DATA, "cuda-report.md")) as f:
            want = f.read()
        self.assertEqual(got, want)
        self.assertIn("| B=1 32K (per_group) | >= 3x | 1.3x | NO |", got)
        self.assertIn("| B=1 8K vs our dense | >= 1x | 1.17x | yes |", got)

    def targets(self, sparse_ms_32k, torch_ms=0.3):
        """B=1: dense and sparse (1/32, both modes) at 8K and 32K; torch anchor at 32K and 8K only."""
        recs = []
        for n, dense_ms in ((8192, 0.2), (32768, 1.0)):
            recs.append({"B": 1, "n": n, "impl": "ours_dense", "ms": dense_ms, "bytes": 1e6, "gbps": 1.0})
            for mode, ms in (("per_head", 0.5), ("per_group", sparse_ms_32k if n == 32768 else 0.2)):
                recs.append({"B": 1, "n": n, "impl": "ours_sparse", "mode": mode, "density": 1 / 32, "ms": ms,
                             "encode_ms": 0, "select_ms": 0, "attend_ms": 0, "bytes": 1e6, "gbps": 1,
                             "attend_gbps": 1})
        anchor = [{"B": 1, "n": 32768, "eager_ms": torch_ms, "graph_ms": 0.4},
                  {"B": 1, "n": 8192, "eager_ms": 0.25, "graph_ms": 0.19}]
        with tempfile.TemporaryDirectory() as d:
            return run_script("bench/cuda-report.py", write_json(d, {"device": "X", "sms": 1, "records": recs}),
                              write_json(d, {"records": anchor}))

    def test_met_exactly_at_the_target_and_not_below(self):
        # best torch = min(0.3, 0.4) = 0.3 ms; per_group 0.1 ms (faster than per_head 0.5) -> 3.0x
        self.assertIn("| B=1 32K (per_group) | >= 3x | 3.0x | yes |", self.targets(0.1))
        self.assertIn("| B=1 32K (per_group) | >= 3x | 2.9x | NO |", self.targets(0.3 / 2.9))
        out = self.targets(0.1)
        for case in ("B=1 128K", "B=1 512K", "B=8 128K"):
            self.assertIn(f"| {case} | ", out)
            self.assertRegex(out, rf"\| {case} \| >= \d+x \| not measured \| no \|")
        # 8K: dense 0.2 ms vs sparse 0.2 ms -> 1.00x met; torch 0.19 ms vs 0.2 ms -> 0.95x not met
        self.assertIn("| B=1 8K vs our dense | >= 1x | 1.00x | yes |", out)
        self.assertIn("| B=1 8K vs torch | >= 1x | 0.95x | NO |", out)


class AttentionTable(unittest.TestCase):
    def bench_json(self, with_total=True):
        def rep(name, ms_list, **extra):
            return [dict(run_type="iteration", run_name=name + "/real_time", time_unit="ms", real_time=ms, **extra)
                    for ms in ms_list]
        b = []
        b += rep("memcpy/threads:1", [100, 110, 90], bytes_per_second=1e10)
        b += rep("read/threads:1", [50, 50, 50], bytes_per_second=1e10)
        b += rep("dense/h9kv3d64/n:8192/threads:1", [2, 3, 7], bytes=10737418)
        tail = "per_head/density:1_16/h9kv3d64/n:8192/threads:1"
        b += rep("hash_select/" + tail, [0.5, 0.5, 0.5])
        if with_total:
            b += rep("hash_total/" + tail, [1.0, 1.5, 0.4])
        b.append(dict(run_type="aggregate", run_name="memcpy/threads:1/real_time", time_unit="ms", real_time=1e9))
        ctx = {"host_name": "h", "num_cpus": 2, "simd_target": "AVX2", "date": "d"}
        with tempfile.TemporaryDirectory() as d:
            return run_script("bench/attention-table.py", write_json(d, {"context": ctx, "benchmarks": b}))

    def test_medians_rooflines_and_speedups_computed_by_hand(self):
        out = self.bench_json()
        # memcpy moves 2 x 512 MiB: 1073741824 B / 0.1 s = 10.7 GB/s (median), 0.09 s: 11.9, 0.11 s: 9.8;
        # the aggregate row is ignored.
        self.assertIn("| memcpy (read+write) | 1 | 10.7 [9.8, 11.9] |", out)
        self.assertIn("| read (read only) | 1 | 10.7 [10.7, 10.7] |", out)
        # dense: median 3 ms [2, 7] (not the mean, 4); 10737418 B / 3 ms = 3.6 GB/s; roofline 10737418 B / 10.74 GB/s = 1 ms
        # for both kinds, so dense / roofline = 3.00.
        self.assertIn("| h9kv3d64 | 8192 | 1 | 3 [2, 7] | 3.6 | 1 / 1 | 3.00 / 3.00 |", out)
        # hash total median 1 ms [0.4, 1.5]: speedup 3 ms / 1 ms = 3.0x
        self.assertIn("| h9kv3d64 | 8192 | 1 | per_head | 1/16 | 0.5 [0.5, 0.5] | 1 [0.4, 1.5] | 3.0x |", out)

    def test_hash_row_without_its_total_is_left_out(self):
        self.assertNotIn("| per_head | 1/16 |", self.bench_json(with_total=False))


def load_bench_llamacpp():
    spec = importlib.util.spec_from_file_location("bench_llamacpp", os.path.join(ROOT, "scripts", "bench-llamacpp.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class BenchLlamacppParsing(unittest.TestCase):
    def setUp(self):
        self.mod = load_bench_llamacpp()
        self.calls = []

    def fake_sh(self, stdout="", stderr="", code=0):
        def sh(cmd, **kw):
            self.calls.append(cmd)
            if cmd[-1].endswith(".json") and os.path.isfile(cmd[-1]):  # the llama.cpp child's configuration
                with open(cmd[-1]) as f:
                    self.child_cfg = json.load(f)
            return subprocess.CompletedProcess(cmd, code, stdout, stderr)
        self.mod.sh = sh

    def test_hashattn_closing_line(self):
        with open(os.path.join(DATA, "hashattn-generate.stderr")) as f:
            stderr = f.read()
        self.fake_sh(stderr=stderr)
        r = self.mod.run_hashattn("hashattn", "m.gguf", [1, 2, 3], 2, 1024, 8, ("--attn", "dense"))
        # the recorded line: "prompt 600 tokens, 43.3 tokens/s | decode 9 tokens, 1.3 tokens/s (779.99 ms/token)"
        self.assertAlmostEqual(r["prefill_s"], 600 / 43.3, places=9)
        self.assertAlmostEqual(r["decode_ms"], 779.99, places=9)
        cmd = self.calls[0]
        self.assertEqual(cmd[:3], ["hashattn", "generate", "-m"])
        self.assertEqual(cmd[cmd.index("-n") + 1], "9")  # n_decode + 1 (the first token comes from the prefill)
        self.assertEqual(cmd[cmd.index("-t") + 1], "2")
        self.assertEqual(cmd[-2:], ["--attn", "dense"])
        r = self.mod.run_hashattn("hashattn", "m.gguf", [1], 2, 1024, 0)
        self.assertNotIn("decode_ms", r)

    def test_hashattn_without_the_line_stops_with_its_stderr(self):
        self.fake_sh(stderr="hashattn: error: something\n", code=1)
        err = io.StringIO()
        with self.assertRaises(SystemExit) as e, contextlib.redirect_stderr(err):
            self.mod.run_hashattn("hashattn", "m.gguf", [1], 2, 1024, 4)
        self.assertIn("hashattn: error: something", str(e.exception.code))

    def test_hash_without_a_decode_case_is_refused_before_the_peers(self):
        # The usage error comes first: require_peers (which may re-run the script or exit naming an
        # install command) must not be reached.
        self.mod.require_peers = lambda: self.fail("require_peers reached before the argument check")
        argv = sys.argv
        sys.argv = ["bench-llamacpp.py", "--hash", "h.gguf", "--only", "prefill512"]
        try:
            with self.assertRaises(SystemExit) as e:
                self.mod.main()
        finally:
            sys.argv = argv
        self.assertIn("need a decode case", str(e.exception.code))

    def test_kv_read_bytes_sliding_window(self):
        # Gemma 3 270M's layout: 1 KV head of 256 (K + V, fp16: 1024 B per token and layer), window 512
        # on all layers but 5, 11, 17.
        layout = (1024, [0 if (l + 1) % 6 == 0 else 512 for l in range(18)])
        self.assertEqual(self.mod.kv_read_bytes(layout, 300), 18 * 300 * 1024)  # inside the window: all
        self.assertEqual(self.mod.kv_read_bytes(layout, 32000), (3 * 32000 + 15 * 512) * 1024)
        self.assertEqual(self.mod.kv_read_bytes(layout, 32000, full_window=True), 18 * 32000 * 1024)
        self.assertEqual(self.mod.kv_read_bytes((2304, [0] * 30), 1000), 30 * 1000 * 2304)  # all global

    def test_llama_child_json_line(self):
        # The child prints llama.cpp's own lines first, then one JSON line (LLAMA_CHILD).
        self.fake_sh(stdout='llama_model_loader: noise\n{"prefill_s": 0.25, "decode_s": 0.64}\n')
        r = self.mod.run_llama("m.gguf", [5, 6, 7], 2, 1024, 32)
        self.assertEqual(r["prefill_s"], 0.25)
        self.assertAlmostEqual(r["decode_ms"], 20.0, places=12)  # 1e3 * 0.64 / 32
        cfg = self.child_cfg  # passed in a file (removed after the call)
        self.assertFalse(os.path.exists(self.calls[0][-1]))
        self.assertEqual((cfg["tokens"], cfg["threads"], cfg["ctx"], cfg["n_decode"], cfg["decode_token"]),
                         ([5, 6, 7], 2, 1024, 32, 7))


if __name__ == "__main__":
    unittest.main()
