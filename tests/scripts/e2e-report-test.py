#!/usr/bin/env python3
"""bench/e2e-report.py on small hand-made JSON files (python3 stdlib unittest; run from ctest, label unit):
a target met exactly at its ratio (with float rounding) and one missed just below it; the anchor's
fastest variant is the one compared against; rows that did not fit, rows not run, an absent ours.json
and an absent anchor.json; rooflines at the anchor's copy bandwidth; the largest B x context that fits.
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPORT = os.path.join(ROOT, "bench", "e2e-report.py")
K = 1024


def row(impl, policy, B, ctx, ms=None, **extra):
    r = {"impl": impl, "policy": policy, "batch": B, "ctx": ctx, "fits": True}
    if ms is not None:
        r.update(ms=ms, ms_min=ms * 0.9, ms_max=ms * 1.2, ms_p10=ms * 0.95, ms_p90=ms * 1.1, reps=30,
                 tokens_per_s=B * 1000.0 / ms)
    r.update(extra)
    return r


def anchor_doc():
    return {"device": "GPU X", "torch": "2.11.0", "copy_gbps": 4000.0,
            "shape": {"layers": 32, "embd": 4096},
            "rows": [
                # two variants at B=1 32K: the report compares against the faster (5.81 ms)
                row("anchor", "dense", 1, 32 * K, 6.5, variant="flash-gqa-eager", bytes=4e9),
                row("anchor", "dense", 1, 32 * K, 5.81, variant="flash-gqa-graph", bytes=4e9),
                row("anchor", "dense", 1, 128 * K, 10.0, variant="flash-grouped-graph", bytes=8e9),
                row("anchor", "dense", 16, 32 * K, 20.0, variant="flash-gqa-graph", bytes=8e9),
                {"impl": "anchor", "policy": "dense", "batch": 16, "ctx": 128 * K, "fits": False,
                 "variant": "-", "bytes_needed": 291.2e9},
            ]}


def ours_doc(hash_32k=4.15, with_16=True):
    rows = [
        row("ours", "dense", 1, 32 * K, 5.81, bytes=4e9, attended=32 * K),       # 1.00x: met
        row("ours", "dense", 1, 128 * K, 12.5, bytes=8e9, attended=128 * K),    # 0.80x: missed
        row("ours", "dense", 16, 32 * K, 16.0, bytes=8e9, attended=32 * K),     # 1.25x: met
        row("ours", "dense", 16, 128 * K, 60.0, bytes=2e10, attended=128 * K),  # the anchor does not fit
        row("ours", "hash/group@1/32", 1, 32 * K, hash_32k, bytes=1e9, code_bytes=1e6, attended=1024),
        row("ours", "hash/group@1/32", 1, 128 * K, 5.01, bytes=2e9, attended=4096),   # 1.996x: missed
    ]
    if with_16:
        rows.append(row("ours", "hash/group@1/16", 1, 32 * K, 5.0, bytes=1.5e9, attended=2048))
    return {"device": "GPU X", "copy_gbps": 3000.0, "rows": rows}


def render(ours, anchor):
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for name, doc in (("ours.json", ours), ("anchor.json", anchor)):
            p = os.path.join(d, name)
            if doc is not None:
                with open(p, "w") as f:
                    json.dump(doc, f)
            paths.append(p)
        r = subprocess.run([sys.executable, REPORT, *paths], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"e2e-report.py exited {r.returncode}: {r.stderr}")
    return r.stdout


class E2eReport(unittest.TestCase):
    def test_targets_met_and_missed(self):
        out = render(ours_doc(), anchor_doc())
        # 5.81 / 4.15 = 1.3999999999999997 in floating point: the 1.4x target is met
        self.assertIn("| ours hash/group@1/32 >= 1.4x anchor, B=1 32K | 1.40x (anchor 5.81 ms, ours 4.15 ms) | met |", out)
        # 10 / 5.01 = 1.996: missed, and shown with enough decimals not to read as 2.00x
        self.assertIn("| ours hash/group@1/32 >= 2.0x anchor, B=1 128K | 1.9960x (anchor 10.00 ms, ours 5.01 ms) | MISSED |",
                      out)
        self.assertIn("| ours hash/group@1/32 >= 3.5x anchor, B=16 32K | ours not run | MISSED |", out)
        self.assertIn("| ours dense >= 1.0x anchor, B=1 32K | 1.00x (anchor 5.81 ms, ours 5.81 ms) | met |", out)
        self.assertIn("| ours dense >= 1.0x anchor, B=1 128K | 0.80x (anchor 10.00 ms, ours 12.50 ms) | MISSED |", out)
        self.assertIn("| ours dense >= 1.0x anchor, B=16 32K | 1.25x (anchor 20.00 ms, ours 16.00 ms) | met |", out)
        self.assertIn("| ours dense >= 1.0x anchor, B=16 128K | anchor does not fit; ours 60.00 ms | n/a |", out)
        self.assertIn("Ours dense >= 1.0x the anchor at every row: **MISSED** (2 of 3 rows).", out)

    def test_just_below_the_target_is_missed(self):
        out = render(ours_doc(hash_32k=5.81 / 1.39), anchor_doc())
        self.assertIn("| ours hash/group@1/32 >= 1.4x anchor, B=1 32K | 1.39x (anchor 5.81 ms, ours 4.18 ms) | MISSED |", out)

    def test_all_dense_rows_met(self):
        ours = ours_doc()
        ours["rows"][1]["ms"] = 9.0
        self.assertIn("Ours dense >= 1.0x the anchor at every row: **met** (3 of 3 rows).", render(ours, anchor_doc()))

    def test_table_rows(self):
        out = render(ours_doc(), anchor_doc())
        # the anchor's faster variant, its roofline at the anchor's copy bandwidth (4e9 B / 4000 GB/s = 1 ms)
        self.assertIn("| 1 | 32K | anchor | dense | flash-gqa-graph | 32,768 | 5.81 (5.52-6.39) | 172 | 1.00x | "
                      "4.00 | 1.00 | 0.17 |", out)
        self.assertIn("| 1 | 32K | ours | hash/group@1/32 | - | 1,024 | 4.15 (3.94-4.57) | 241 | 1.40x | 1.00 | 0.25 | 0.06 |",
                      out)
        self.assertIn("| 1 | 128K | ours | hash/group@1/16 | - | - | not run | - | - | - | - | - |", out)
        self.assertIn("| 16 | 128K | anchor | dense | - | - | does not fit (needs 291.2 GB) | - | - | - | - | - |", out)
        self.assertIn("| 16 | 128K | ours | dense | - | 131,072 | 60.00 (57.00-66.00) | 267 | - | 20.00 | 5.00 | 0.08 |",
                      out)
        self.assertIn("- anchor dense: B=16 x 32K (524,288 tokens of KV); does not fit: B=16 x 128K", out)
        self.assertIn("- ours dense: B=16 x 128K (2,097,152 tokens of KV)", out)
        self.assertIn("- ours hash/group@1/16: B=1 x 32K (32,768 tokens of KV)", out)

    def test_ours_missing(self):
        out = render(None, anchor_doc())
        self.assertIn("ours: no results (ours.json missing); anchor: GPU X, torch 2.11.0, copy 4000 GB/s", out)
        self.assertIn("| 1 | 32K | ours | dense | - | - | not run | - | - | - | - | - |", out)
        self.assertIn("| ours hash/group@1/32 >= 1.4x anchor, B=1 32K | ours not run | MISSED |", out)
        self.assertIn("- ours hash/group@1/32: none ran", out)
        self.assertIn("Ours dense >= 1.0x the anchor at every row: **MISSED** (0 of 3 rows).", out)

    def test_anchor_missing(self):
        out = render(ours_doc(), None)
        self.assertIn("anchor: no results (anchor.json missing)", out)
        # rooflines fall back to ours' copy bandwidth: 1e9 B / 3000 GB/s = 0.33 ms
        self.assertIn("| 1 | 32K | ours | hash/group@1/32 | - | 1,024 | 4.15 (3.94-4.57) | 241 | - | 1.00 | 0.33 | 0.08 |", out)
        self.assertIn("| ours hash/group@1/32 >= 1.4x anchor, B=1 32K | anchor not run | MISSED |", out)

    def test_usage(self):
        r = subprocess.run([sys.executable, REPORT], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("OURS.json ANCHOR.json", r.stderr)


if __name__ == "__main__":
    unittest.main()
