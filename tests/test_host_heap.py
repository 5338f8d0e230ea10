"""csra_jax.host_heap: freed host memory stays mapped, so reusing it takes no page faults.

Each case that changes malloc runs in a fresh interpreter, so the test session's own
heap is never touched.
"""

import json
import os
import platform
import subprocess
import sys
import types

import pytest

from csra_jax import host_heap
from csra_jax import main as cli

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
SIZE = 256 * 2 ** 20  # above glibc's largest dynamic mmap threshold (32 MiB)

# Allocates, touches and frees SIZE bytes twice from a worker thread (XLA allocates from
# its threads) and reports the page faults of the second round and glibc's heap counters.
PROBE = f"""
import ctypes, json, resource, sys, threading
from csra_jax.host_heap import keep_freed_host_memory
set_ = keep_freed_host_memory({{}}) if sys.argv[1] == "kept" else False
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
out = {{"set": set_}}
def work():
    for round_ in range(2):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        mmapped = libc.mallinfo2().hblks  # blocks mmapped earlier, e.g. at start-up
        p = libc.malloc({SIZE})
        assert p, "malloc failed"
        ctypes.memset(p, 1, {SIZE})
        if round_ == 0:
            out["mmapped_while_live"] = libc.mallinfo2().hblks - mmapped
        libc.free(p)
        out["faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
t = threading.Thread(target=work)
t.start(); t.join()
out["free_kept"] = libc.mallinfo2().fordblks
print(json.dumps(out))
"""


def _probe(mode):
    env = {k: v for k, v in os.environ.items()
           if k not in (host_heap.ENV, "GLIBC_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="glibc malloc only")
def test_freed_memory_is_reused_without_page_faults():
    default, kept = _probe("default"), _probe("kept")
    pages = SIZE // os.sysconf("SC_PAGE_SIZE")
    # glibc's default: a fresh mmap per allocation, every page faulted in again.
    assert default["mmapped_while_live"] >= 1 and default["faults"] > 0.9 * pages, default
    # kept: served from the heap, the freed block stays mapped and is reused.
    assert kept["set"] is True
    assert kept["mmapped_while_live"] == 0, kept
    assert kept["free_kept"] >= SIZE, kept
    assert kept["faults"] < 0.01 * pages, kept


@pytest.mark.parametrize("environ", [
    {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
    {"JAX_PLATFORMS": "cuda"},
    {"JAX_PLATFORMS": "tpu,cpu"},
])
def test_user_tunables_and_accelerators_leave_malloc_alone(environ):
    # Each returns before mallopt is called, so running in this process is safe.
    assert host_heap.keep_freed_host_memory(environ) is False
    assert host_heap.configure_host_heap(dict(environ, CSRA_JAX_HOST_HEAP="kept")) is False


@pytest.mark.parametrize("value", [None, "", "system", " System "])
def test_glibc_defaults_unless_asked(value, monkeypatch):
    calls = []
    monkeypatch.setattr(host_heap, "keep_freed_host_memory", lambda env: calls.append(env))
    environ = {} if value is None else {host_heap.ENV: value}
    assert host_heap.configure_host_heap(environ) is False and not calls


def test_kept_is_passed_on_and_a_typo_is_named(monkeypatch):
    monkeypatch.setattr(host_heap, "keep_freed_host_memory", lambda env: True)
    assert host_heap.configure_host_heap({host_heap.ENV: " Kept "}) is True
    with pytest.raises(ValueError, match=r"CSRA_JAX_HOST_HEAP='keep' is not one of system, kept"):
        host_heap.configure_host_heap({host_heap.ENV: "keep"})


def test_accelerator_runs_are_left_alone(monkeypatch):
    assert host_heap.jax_will_run_on_cpu({"JAX_PLATFORMS": "cpu"})
    assert host_heap.jax_will_run_on_cpu({"JAX_PLATFORMS": " CPU ,cuda"})
    assert not host_heap.jax_will_run_on_cpu({"JAX_PLATFORMS": "gpu"})
    real = host_heap.importlib.util.find_spec
    monkeypatch.setattr(host_heap.importlib.util, "find_spec",
                        lambda name, *a: object() if name == "libtpu" else real(name, *a))
    assert not host_heap.jax_will_run_on_cpu({})
    assert host_heap.jax_will_run_on_cpu({"JAX_PLATFORMS": "cpu"})


@pytest.mark.skipif(not GLIBC, reason="glibc malloc only")
def test_too_late_once_a_backend_has_started():
    code = ("import jax, jax.numpy as jnp; jnp.ones(1).block_until_ready();"
            "from csra_jax.host_heap import keep_freed_host_memory;"
            "print(keep_freed_host_memory({}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_the_training_cli_names_a_bad_value(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "prefer_cpu_memory_scheduler", lambda: False)
    monkeypatch.setattr(cli, "_WORKDIR", types.SimpleNamespace(value=str(tmp_path)))
    monkeypatch.setenv(host_heap.ENV, "on")
    with pytest.raises(SystemExit) as e:
        cli.main(["python -m csra_jax.main"])
    assert e.value.code == 2
    assert "CSRA_JAX_HOST_HEAP='on' is not one of system, kept" in capsys.readouterr().err


# Frees 256 MiB held in 64 KiB blocks (below the mmap threshold: glibc keeps them in its
# heap, as the compiler's leftovers) and reports the resident set before and after
# release_freed_host_memory().
RELEASE_PROBE = """
import ctypes, json, os
from csra_jax.host_heap import release_freed_host_memory
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
blocks = [libc.malloc(65536) for _ in range(4096)]
for p in blocks:
    ctypes.memset(p, 1, 65536)
keep = blocks.pop()  # the last one stays: free() alone cannot shrink the heap below it
for p in blocks:
    libc.free(p)
before = rss()
ran = release_freed_host_memory()
print(json.dumps({"ran": ran, "released": before - rss()}))
"""


@pytest.mark.skipif(not GLIBC, reason="glibc malloc only")
def test_release_hands_freed_heap_pages_back_to_the_os():
    out = subprocess.run([sys.executable, "-c", RELEASE_PROBE], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["ran"] is True
    assert got["released"] > 0.8 * 4096 * 65536, got


def test_release_is_a_no_op_off_glibc(monkeypatch):
    monkeypatch.setattr(host_heap, "_glibc", lambda: None)
    assert host_heap.release_freed_host_memory() is False
