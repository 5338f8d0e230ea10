"""Keep freed host memory in the process heap, so XLA:CPU steps do not page-fault it back.

XLA:CPU allocates a compiled step's buffers with ``malloc`` on every call and frees them
at the end. glibc serves blocks that large with a fresh ``mmap`` (or from a per-thread
arena that it shrinks again on free), so every step touches its activations in newly
mapped pages: a vit_b16 train step at batch 8 takes ~430,000 page faults (1.7 GB zeroed
by the kernel per step). With one malloc arena, no ``mmap`` for large blocks and no
trimming, the freed blocks stay mapped and the next step reuses them: no page faults
after the first step.

It is opt-in, because the one arena is a cost too: every thread takes the same malloc
lock. Measured with ``bench/process_ab.py --envs system=,kept=CSRA_JAX_HOST_HEAP=kept``
(figures in ``bench/RESULTS.md``): the train step of the large models runs faster
(vit_b16@224 b8, resnet101@448 b4), the small CNN of the demo, with many small
operations, slower. Set ``CSRA_JAX_HOST_HEAP=kept`` for ``python -m csra_jax.main`` and
the benchmarks (they call :func:`configure_host_heap` before JAX starts), or call
:func:`keep_freed_host_memory` in your own script before the first JAX computation.

The settings are glibc's ``mallopt`` parameters, set at run time (``M_ARENA_MAX`` 1,
``M_MMAP_MAX`` 0, ``M_TRIM_THRESHOLD`` unlimited); the process keeps its peak heap until
it exits, and where other allocations split a freed block between steps the heap grows
by one step's buffers. Only glibc (Linux) is touched, and only where JAX will run on the CPU (no
GPU/TPU plugin or ``libtpu`` installed, or ``JAX_PLATFORMS`` starting with ``cpu``):
device buffers are not host ``malloc`` memory. ``GLIBC_TUNABLES`` malloc settings of
your own win.

:func:`release_freed_host_memory` is the other half, always on: the train loop calls it
after compiling a step (``csra_jax.train.aot``), so the compiler's freed memory is not
held on top of the step's buffers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata
import importlib.util
import os
import pkgutil
import platform
from typing import Mapping, Optional

from csra_jax.xla_flags import backends_started

ENV = "CSRA_JAX_HOST_HEAP"
CHOICES = ("system", "kept")  # glibc's defaults (the default) / keep_freed_host_memory()
# glibc's mallopt parameter numbers (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8


def configure_host_heap(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Applies ``CSRA_JAX_HOST_HEAP``: ``kept`` calls :func:`keep_freed_host_memory`,
    ``system`` or unset leaves malloc alone. Returns whether the heap was changed;
    raises ``ValueError`` naming the variable for any other value."""
    environ = os.environ if environ is None else environ
    value = environ.get(ENV, "").strip().lower() or "system"
    if value not in CHOICES:
        raise ValueError(f"{ENV}={environ.get(ENV)!r} is not one of {', '.join(CHOICES)}: "
                         "'kept' keeps freed host memory mapped (faster large-model steps "
                         "on CPU), 'system' keeps glibc's defaults")
    return value == "kept" and keep_freed_host_memory(environ)


def keep_freed_host_memory(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Sets glibc's malloc to keep freed memory mapped; returns whether it did.

    Does nothing (returns False) off glibc, where ``GLIBC_TUNABLES`` already sets malloc
    parameters, where JAX will run on an accelerator, or where a JAX backend has already
    started (its threads would keep the arenas they hold).
    """
    environ = os.environ if environ is None else environ
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return False
    if not jax_will_run_on_cpu(environ):
        return False
    libc = _glibc()
    if libc is None or backends_started():
        return False
    # -1 as size_t: no trimming at all. Arena cap first, so new threads share the heap.
    return all(libc.mallopt(p, v) == 1 for p, v in
               ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1)))


def release_freed_host_memory() -> bool:
    """Hands the heap's free pages back to the OS (glibc's ``malloc_trim(0)``), e.g. the
    few GiB XLA's compiler frees: glibc keeps them mapped while XLA:CPU's step buffers
    come from fresh ``mmap`` blocks, so they would add to the step's peak. Returns
    whether it ran (False off glibc). Cheap; nothing is lost, freed memory only."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def jax_will_run_on_cpu(environ: Mapping[str, str]) -> bool:
    """Whether JAX's default backend will be the CPU, judged without starting JAX."""
    platforms = environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms:
        return platforms.split(",")[0].strip() == "cpu"
    if importlib.util.find_spec("libtpu") is not None:
        return False
    if importlib.metadata.entry_points(group="jax_plugins"):
        return False  # e.g. jax_cuda12_plugin, jax_rocm plugins
    try:  # the namespace-package way of shipping a plugin
        import jax_plugins  # noqa: PLC0415
    except ImportError:
        return True
    return not any(True for _ in pkgutil.iter_modules(jax_plugins.__path__))


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc
