"""Shared helpers for the benchmarks: models, train states, the library's jitted steps,
compile timing and interleaved steady-state timing.

Benchmarks time the library's real steps (`csra_jax.train.steps.make_train_step` /
`make_eval_step`), compiled ahead of time with ``.lower(...).compile()`` so that the
compile time is measured separately and the timed calls never recompile.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

import timing  # bench/timing.py (jax-free)
from timing import median, spread  # noqa: F401  (re-exported for the scripts)

# Runnable as `python bench/<name>.py` from the repo root without installing.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import csra_jax  # noqa: E402
from csra_jax.train import optimizer as optimizer_lib  # noqa: E402
from csra_jax.train import steps as steps_lib  # noqa: E402
from csra_jax.train.state import TrainState  # noqa: E402

try:  # what `python -m csra_jax.main` sets, so benchmarks time the steps it runs
    from csra_jax.xla_flags import prefer_cpu_memory_scheduler  # noqa: E402
except ImportError:  # an older checkout, imported by process_ab.py --trees
    prefer_cpu_memory_scheduler = lambda: False  # noqa: E731
prefer_cpu_memory_scheduler()
try:  # likewise CSRA_JAX_HOST_HEAP (kept: freed host memory stays mapped)
    from csra_jax.host_heap import configure_host_heap  # noqa: E402
except ImportError:  # an older checkout
    configure_host_heap = lambda: False  # noqa: E731
configure_host_heap()
try:  # what the train loop does after compiling a step (csra_jax.train.aot)
    from csra_jax.host_heap import release_freed_host_memory  # noqa: E402
except ImportError:  # an older checkout
    release_freed_host_memory = lambda: False  # noqa: E731

DTYPES = {"float32": jnp.float32, "fp32": jnp.float32, "bfloat16": jnp.bfloat16,
          "bf16": jnp.bfloat16}
# The paper's sizes: ResNets at 448 (VOC/COCO), ViT-B16 at 224 (WIDER).
DEFAULT_SIZES = {"vit_b16": 224, "vit_l16": 448}


def default_size(arch: str) -> int:
    return DEFAULT_SIZES.get(arch, 448)


def on_cpu() -> bool:
    return jax.default_backend() == "cpu"


def default_batch(size: int) -> int:
    """Small on CPU (a resnet101@448 train step is ~10 s at batch 4), larger elsewhere."""
    if on_cpu():
        return 4 if size >= 448 else 8
    return 32 if size >= 448 else 128


def device_kind() -> str:
    d = jax.devices()[0]
    kind = getattr(d, "device_kind", "") or ""
    if d.platform == "cpu":
        kind = f"cpu {os.cpu_count()} cores"
    return f"{d.platform}:{kind} x{jax.device_count()}"


def describe_machine() -> str:
    return (f"{datetime.datetime.now().isoformat(timespec='seconds')}  "
            f"jax {jax.__version__}  backend {jax.default_backend()}  {device_kind()}  "
            f"python {platform.python_version()}  cpu cores {os.cpu_count()}")


def csv_list(text: str) -> List[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def doc_parser(doc: str) -> argparse.ArgumentParser:
    """A script's parser from its docstring: the first paragraph as the description, the
    rest (usage lines, what it prints) as the epilog, laid out as written."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=doc.split("\n\n", 1)[1])


# ----------------------------------------------------------------------------- setup


def make_model(arch: str, num_classes: int, head: str, num_heads: int, size: int,
               dtype, lam: float = 0.5):
    return csra_jax.create_model(arch, num_classes, head=head, num_heads=num_heads,
                                 lam=lam, img_size=size, dtype=dtype)


def init_variables(model, size: int, seed: int = 0) -> dict:
    return jax.jit(model.init)(jax.random.PRNGKey(seed),
                               jnp.zeros((1, size, size, 3), jnp.float32))


def make_optimizer(steps_per_epoch: int = 1000):
    """The paper's two-group SGD (lr 0.01 backbone / 0.1 head, warm-up + step decay)."""
    return optimizer_lib.create_optimizer(
        dict(lr_backbone=0.01, lr_head=0.1, num_epochs=30, lr_step_epochs=4),
        steps_per_epoch)


def make_train_state(variables: dict, tx, mesh, seed: int = 0) -> TrainState:
    """A replicated TrainState holding *copies* of ``variables`` (the train step donates
    its state, so the caller's variables stay valid)."""
    copy = lambda t: jax.tree.map(lambda x: jnp.array(x, copy=True), t)
    params = copy(variables["params"])
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                       batch_stats=copy(variables.get("batch_stats", {})),
                       opt_state=tx.init(params), rng=jax.random.PRNGKey(seed + 1),
                       nonfinite=jnp.zeros((), jnp.int32))
    return jax.device_put(state, steps_lib.replicated(mesh))


def synthetic_batch(batch: int, size: int, num_classes: int, mesh, seed: int = 0) -> dict:
    """A device-resident batch in the pipeline's layout (see csra_jax.data.pipeline)."""
    rng = np.random.default_rng(seed)
    host = {"image": rng.standard_normal((batch, size, size, 3), np.float32),
            "labels": (rng.random((batch, num_classes)) < 0.1).astype(np.int8),
            "ignore": np.zeros((batch, num_classes), np.int8),
            "mask": np.ones((batch,), np.float32),
            "index": np.arange(batch, dtype=np.int32)}
    return jax.device_put(host, steps_lib.batch_sharding(mesh))


def block(tree):
    return jax.block_until_ready(tree)


def aot_compile(jitted, *args):
    """(compiled, seconds): trace + lower + XLA compile, timed; then, as the train loop
    does, the compiler's freed host memory is handed back (not timed)."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    secs = time.perf_counter() - t0
    release_freed_host_memory()
    return compiled, secs


def flops_of(compiled) -> Optional[float]:
    """XLA's FLOP estimate of a compiled executable (None where unavailable)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # pylint: disable=broad-except
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost:
        return None
    return float(cost.get("flops", 0.0)) or None


# ----------------------------------------------------------------------------- runners


class TrainRunner:
    """Owns a train state and runs the library's compiled train step on a fixed batch."""

    def __init__(self, compiled, state, batch):
        self.compiled, self.state, self.batch = compiled, state, batch

    def __call__(self, batch=None):
        self.state, metrics = self.compiled(self.state, self.batch if batch is None else batch)
        return metrics


class EvalRunner:
    def __init__(self, compiled, variables, batch):
        self.compiled, self.variables, self.batch = compiled, variables, batch

    def __call__(self, batch=None):
        return self.compiled(self.variables, self.batch if batch is None else batch)


def build_train(model, variables, mesh, batch):
    """Compiles the library train step for ``model``; returns (runner, compile_s, flops)."""
    tx, schedules = make_optimizer()
    step = steps_lib.make_train_step(model, tx, mesh, schedules)
    state = make_train_state(variables, tx, mesh)
    compiled, secs = aot_compile(step, state, batch)
    return TrainRunner(compiled, state, batch), secs, flops_of(compiled)


def build_eval(model, variables, mesh, batch):
    """Compiles the library eval step; returns (runner, compile_s, flops)."""
    step = steps_lib.make_eval_step(model, mesh)
    variables = jax.device_put(variables, steps_lib.replicated(mesh))
    compiled, secs = aot_compile(step, variables, batch)
    return EvalRunner(compiled, variables, batch), secs, flops_of(compiled)


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    block(fn())
    return time.perf_counter() - t0


def interleaved(fns: Dict[str, Callable[[], Any]], repeats: int, warmup: int = 1,
                log: Optional[Callable[[str], None]] = None) -> Dict[str, List[float]]:
    """`timing.interleaved` with each call blocked until its arrays are ready."""
    return timing.interleaved(fns, repeats, warmup, log, timer=timed)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
