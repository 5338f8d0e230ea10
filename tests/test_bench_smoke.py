"""The benchmarks still run (``--quick``: resnet18 at 64 px); they are not speed tests."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("script", ["head_overhead.py", "train_throughput.py"])
def test_bench_quick_mode_runs(script):
    out = subprocess.run([sys.executable, os.path.join("bench", script), "--quick"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert " failed: " not in out.stderr, out.stderr[-2000:]  # the benches keep going on errors
    rows = [l for l in out.stdout.splitlines() if l.startswith("| ") and "---" not in l]
    assert len(rows) >= 2, out.stdout  # header + at least one measured row
