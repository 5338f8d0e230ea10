"""Run a script of tests/workers/ in a fresh process on simulated CPU devices (XLA reads
the device count once, at start-up) and return its stdout, failing with its stderr."""

import os
import subprocess
import sys

from repo_root import ROOT


def run_worker(name: str, devices: int = 8, timeout: int = 600) -> str:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "workers", name)],
                         env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout
