"""XLA flags the command-line tools set before JAX starts its backends.

XLA:CPU's default scheduler orders a compiled step for concurrency: it starts
independent work early (weight gradients, the backward pass's centring of BatchNorm
inputs), which keeps forward activations alive much longer than the data flow needs.
Its memory-minimising scheduler, ``--xla_cpu_enable_concurrency_optimized_scheduler=
false``, gives the compiled train step less temp memory at the same speed or faster
(``bench/process_ab.py``; figures in ``bench/RESULTS.md``).
XLA reads ``XLA_FLAGS`` once, when the first backend starts, and ignores the flag as a
per-compilation option, so it is set in the environment, before any JAX computation.
It only concerns the CPU backend; GPU/TPU compilation is unchanged.
"""

from __future__ import annotations

import os
from typing import MutableMapping, Optional

CPU_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"


def prefer_cpu_memory_scheduler(environ: Optional[MutableMapping[str, str]] = None) -> bool:
    """Appends ``--xla_cpu_enable_concurrency_optimized_scheduler=false`` to ``XLA_FLAGS``.

    Leaves ``XLA_FLAGS`` alone where it already sets that flag (either value: the user's
    choice wins) or where a JAX backend has already started (the flag would not be read).
    Returns whether the flag was added.
    """
    environ = os.environ if environ is None else environ
    current = environ.get("XLA_FLAGS", "")
    if CPU_SCHEDULER_FLAG in current:
        return False
    if backends_started():
        return False
    environ["XLA_FLAGS"] = f"{current} {CPU_SCHEDULER_FLAG}=false".strip()
    return True


def backends_started() -> bool:
    """Whether JAX has started a backend (after which XLA_FLAGS and malloc settings are late)."""
    try:  # a private JAX helper (present since 0.4); without it, add the flag anyway:
        from jax._src.xla_bridge import backends_are_initialized  # noqa: PLC0415
    except ImportError:  # a flag XLA does not read is harmless
        return False
    return backends_are_initialized()
