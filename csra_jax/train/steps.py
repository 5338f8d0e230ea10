"""The jitted train / eval steps, sharded over a 1-D ``data`` mesh.

Batches are sharded over ``data``, the state is replicated; BatchNorm reduces over the
global batch because the whole step is one SPMD program (no pmap, no axis names). The
state buffers are donated. A step whose loss or gradients are not finite leaves the
state unchanged and raises the ``nonfinite`` flag, so the host can stop with the last
good state and checkpoint intact, without a host round-trip per step.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from csra_jax.models.classifier import Classifier
from csra_jax.tasks import Task, get_task
from csra_jax.train.optimizer import learning_rates
from csra_jax.train.state import TrainState, state_variables


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``data`` over all (global) devices.

    The axis is ``Auto``: shardings are fixed at the step's inputs and outputs and XLA
    propagates them inside (with ``Explicit`` axes, the default of ``jax.make_mesh``
    since 0.7, ops mixing replicated params and sharded activations such as the ViT's
    class-token concat would need per-op sharding annotations).
    """
    devices = jax.devices() if devices is None else devices
    return jax.make_mesh((len(devices),), ("data",), devices=devices,
                         axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def outputs_log_probs(model: Classifier) -> bool:
    """Whether the model outputs log-probabilities (attend-and-rectify, single-label)."""
    return bool(model.head.outputs_log_probs)


def compute_loss(task: str | Task, logits, batch, log_probs: bool = False):
    """The task's loss (``task``: a name of ``csra_jax.tasks.TASKS`` or a ``Task``)."""
    return get_task(task).loss(logits, batch, log_probs)


def _layer_order(path) -> tuple:
    """A leaf's path as a sort key in model order: ``layer3_10`` after ``layer3_9``."""
    key = []
    for part in map(str, path):
        key += [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", part)]
    return tuple(key)


def _all_finite(grads) -> jax.Array:
    """True iff no gradient holds inf/nan: one sum of squares over all leaves instead of a
    per-leaf isfinite/all (which doubled resnet101's train-step compile time on CPU).

    The sum runs over the layers last to first, the order in which the backward pass
    produces their gradients, so each weight gradient is reduced (and its inputs freed)
    as soon as it exists. In tree order (first layer first) the whole sum waits for the
    last gradient, and XLA:CPU's memory-minimising scheduler then keeps every layer's
    weight-gradient inputs alive to the end of the step (``bench/process_ab.py``; figures
    in ``bench/RESULTS.md``). A sum that overflows float32 (an entry around 1e19) also
    counts as non-finite."""
    leaves = [g for _, g in sorted(jax.tree_util.tree_flatten_with_path(grads)[0],
                                   key=lambda pg: _layer_order(pg[0]), reverse=True)]
    total = sum((jnp.sum(jnp.square(g.astype(jnp.float32))) for g in leaves),
                jnp.zeros((), jnp.float32))
    return jnp.isfinite(total)


def make_train_step(model: Classifier, tx: optax.GradientTransformation, mesh: Mesh,
                    schedules: Mapping[str, optax.Schedule], task: str | Task = "multi_label",
                    grad_accum_steps: int = 1) -> Callable:
    """Returns jitted ``(state, batch) -> (state, metrics)``; ``state`` is donated.

    The loss is the task loss plus every auxiliary loss the model sows into its
    ``losses`` collection (the attend-and-rectify regulariser; 0 for other heads).
    """
    log_probs = outputs_log_probs(model)
    task = get_task(task)

    def step(state: TrainState, batch):
        rng = jax.random.fold_in(state.rng, state.step)

        def loss_fn(params):
            variables = state_variables(state.replace(params=params))
            logits, updates = model.apply(variables, batch["image"], train=True,
                                          mutable=["batch_stats", "losses"], rngs={"dropout": rng})
            aux = sum(jax.tree.leaves(updates.get("losses", {})), jnp.zeros((), jnp.float32))
            loss = compute_loss(task, logits, batch, log_probs) + aux
            return loss, (updates.get("batch_stats", {}), aux)

        (loss, (batch_stats, aux_loss)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ok = jnp.isfinite(loss) & _all_finite(grads)
        # One conditional for the whole state, not a select per leaf: XLA fuses the scalar
        # ``ok``, and with it the whole sum above, into every per-leaf select (resnet101:
        # 8x the optimised HLO, 90 s instead of 14 s to compile, 2.7 GiB more host memory).
        kept = jax.lax.cond(ok, lambda: (params, batch_stats, opt_state),
                            lambda: (state.params, state.batch_stats, state.opt_state))
        new_state = state.replace(
            step=state.step + 1, params=kept[0], batch_stats=kept[1], opt_state=kept[2],
            nonfinite=state.nonfinite + (~ok).astype(jnp.int32))
        update_step = state.step // grad_accum_steps
        metrics = {"loss": loss, "aux_loss": aux_loss, "nonfinite": new_state.nonfinite,
                   **{f"lr_{k}": v for k, v in learning_rates(schedules, update_step).items()}}
        return new_state, metrics

    return jax.jit(step, in_shardings=(replicated(mesh), batch_sharding(mesh)),
                   out_shardings=(replicated(mesh), replicated(mesh)), donate_argnums=(0,))


def make_eval_step(model: Classifier, mesh: Mesh) -> Callable:
    """Returns jitted ``(variables, batch) -> outputs`` replicated on every process, so
    each host can read the global batch's logits, labels and masks."""

    def step(variables, batch):
        logits = model.apply(variables, batch["image"], train=False)
        return {"logits": logits, "labels": batch["labels"], "ignore": batch["ignore"],
                "mask": batch["mask"], "index": batch["index"]}

    return jax.jit(step, in_shardings=(replicated(mesh), batch_sharding(mesh)),
                   out_shardings=replicated(mesh))


def make_sweep_step(model: Classifier, mesh: Mesh) -> Callable:
    """Per-image mean and max of the head's class score maps (for a ``gap`` model
    s_k = W^T x_k + b), so mean + lam * max is scored for every lam from one pass."""

    def step(variables, batch):
        scores = model.apply(variables, batch["image"], method="class_maps").scores
        return {"mean": scores.mean(axis=(1, 2)), "max": scores.max(axis=(1, 2)),
                "labels": batch["labels"], "ignore": batch["ignore"], "mask": batch["mask"],
                "index": batch["index"]}

    return jax.jit(step, in_shardings=(replicated(mesh), batch_sharding(mesh)),
                   out_shardings=replicated(mesh))
