"""The benchmarks still run (``--quick``: resnet18 at 64 px, small_cnn at 32 px); they are
not speed tests."""

import os
import platform
import subprocess
import sys

import pytest

from repo_root import ROOT


@pytest.mark.parametrize("script", ["head_overhead.py", "train_throughput.py",
                                    "conv_impl_ab.py", "pool_backward.py",
                                    "first_epoch_probe.py", "attention.py",
                                    "dense_backward.py", "gemm_rates.py"])
def test_bench_quick_mode_runs(script):
    out = subprocess.run([sys.executable, os.path.join("bench", script), "--quick"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert " failed: " not in out.stderr, out.stderr[-2000:]  # the benches keep going on errors
    rows = [l for l in out.stdout.splitlines() if l.startswith("| ") and "---" not in l]
    assert len(rows) >= 2, out.stdout  # header + at least one measured row


@pytest.mark.parametrize("processes,extra,steps", [
    ("separate", [], {(m, s) for m in ("resnet18/csra1", "vit_tiny/csra1")
                      for s in ("eval", "train")}),
    ("one", ["--models", "vit_tiny/csra1", "--no_train", "--calls_per_turn", "2"],
     {("vit_tiny/csra1", "eval")})])
def test_vs_torch_quick_mode_prints_both_frameworks(processes, extra, steps):
    """bench/vs_torch.py --quick: resnet18@64 and a 2-block ViT, ours vs PyTorch, each
    framework in its own worker process (the default; a worker stops if the other
    framework was imported in it) or both in one process."""
    out = subprocess.run([sys.executable, os.path.join("bench", "vs_torch.py"), "--quick",
                          "--processes", processes, *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "GEMM peak this run:" in out.stdout
    where = "in its own process" if processes == "separate" else "in one process"
    assert where in out.stdout.splitlines()[0], out.stdout
    rows = [l.split("|")[1:-1] for l in out.stdout.splitlines()
            if l.startswith("| ") and "---" not in l and not l.startswith("| model")]
    assert {(r[0].strip(), r[4].strip()) for r in rows} == steps, out.stdout
    assert "GEMM peak, highest seen this run: peak jax dot" in out.stdout
    assert ("2 calls per turn" in out.stdout) == ("--calls_per_turn" in extra)
    for r in rows:  # ours img/s, torch img/s and the ratio are positive numbers
        assert float(r[5]) > 0 and float(r[6]) > 0 and float(r[8].strip().rstrip("x")) > 0
        assert r[7].strip() in ("default", "channels_last")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_process_ab_envs_show_the_kept_heap_saves_page_faults():
    """process_ab.py --envs with two flag variants, one child per flag x environment: the
    library's heap setting (CSRA_JAX_HOST_HEAP=kept) takes fewer page faults per train
    step than glibc's default, which re-maps the step's buffers. small_cnn@128 b16, so
    that the buffers (60-100 MiB) are above glibc's largest mmap threshold (32 MiB): at
    the --quick size they are not, and a few hundred faults move run to run."""
    out = subprocess.run([sys.executable, os.path.join("bench", "process_ab.py"),
                          "--arch", "small_cnn", "--size", "128", "--batch", "16",
                          "--steps", "2", "--rounds", "1", "--variants",
                          "concurrency=--xla_cpu_enable_concurrency_optimized_scheduler=true,"
                          "default=", "--envs", "system=,kept=CSRA_JAX_HOST_HEAP=kept"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert " failed: " not in out.stderr, out.stderr[-2000:]
    rows = {r[0].strip(): r for r in (l.split("|")[1:-1] for l in out.stdout.splitlines()
                                      if l.startswith("| ") and "---" not in l
                                      and not l.startswith("| variant"))}
    flags = ("concurrency", "default")
    assert set(rows) == {f"{f}/{e}" for f in flags for e in ("system", "kept")}, out.stdout
    faults = {name: float(r[3]) for name, r in rows.items()}
    # Under the default flags; with the other one the kept heap sometimes grows by a
    # step's buffers during the timed steps (a freed block split between steps).
    assert faults["default/system"] > 2000, out.stdout  # the step maps fresh buffers
    assert faults["default/kept"] < 0.5 * faults["default/system"], out.stdout
