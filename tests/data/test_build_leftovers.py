"""A dataset build killed half-way leaves tfds' ``incomplete.*`` directory; the next build
removes it, says so, and finishes."""

import glob
import os
import signal
import subprocess
import sys
import time

from repo_root import ROOT
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)


def _build(data_dir, num_train):
    return [sys.executable, "-m", "csra_jax.data.build", "synthetic_shapes", "--data_dir",
            str(data_dir), "--name", "killed", "--set", f"num_train={num_train}", "--set",
            "num_test=10", "--set", "image_size=64"]


def test_leftovers_of_a_killed_build_are_removed_by_the_next_build(tmp_path):
    pattern = str(tmp_path / "synthetic_shapes" / "killed" / "incomplete.*")
    proc = subprocess.Popen(_build(tmp_path, 5000), env=ENV, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not glob.glob(pattern) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftovers = glob.glob(pattern)
    assert leftovers, "the build finished before it was killed"

    done = subprocess.run(_build(tmp_path, 20), env=ENV, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "removed 1 unfinished build output(s) of synthetic_shapes left by an interrupted " \
           "build: " + leftovers[0] in done.stdout, done.stdout
    assert "built synthetic_shapes (killed)" in done.stdout
    assert not glob.glob(pattern)
