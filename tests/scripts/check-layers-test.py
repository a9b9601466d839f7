#!/usr/bin/env python3
"""scripts/check-layers: the project's own tree passes; planted violations (a kernel that includes the
policy module, ref that includes the CPU kernels, a cycle) fail with the file and line named."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHECK = os.path.join(ROOT, "scripts", "check-layers")


def run(root):
    return subprocess.run([sys.executable, CHECK, "--root", root], capture_output=True, text=True)


class CheckLayers(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        for d in ("src", "include"):
            shutil.copytree(os.path.join(ROOT, d), os.path.join(self.tmp, d))

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def plant(self, rel, line):
        with open(os.path.join(self.tmp, rel), "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def test_tree_passes(self):
        r = run(ROOT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("0 violations", r.stderr)

    def test_kernel_including_policy_fails(self):
        self.plant("src/cpu/select-topk.cpp", '#include "hashattn/policy.h"')
        r = run(self.tmp)
        self.assertEqual(r.returncode, 1)
        self.assertIn("src/cpu/select-topk.cpp", r.stderr)
        self.assertIn("cpu includes hashattn/policy.h (policy): not allowed", r.stderr)

    def test_ref_including_cpu_fails(self):
        self.plant("src/ref/hash-ref.cpp", '#include "cpu/cpu-kernels.h"')
        r = run(self.tmp)
        self.assertEqual(r.returncode, 1)
        self.assertIn("ref includes cpu/cpu-kernels.h (cpu): not allowed", r.stderr)

    def test_cycle_fails(self):
        self.plant("src/core/core.cpp", '#include "hashattn/gguf.h"')
        r = run(self.tmp)
        self.assertEqual(r.returncode, 1)
        self.assertIn("cycle: core -> gguf -> core", r.stderr)


if __name__ == "__main__":
    unittest.main()
