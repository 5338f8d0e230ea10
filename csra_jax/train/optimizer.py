"""SGD with per-group learning rates and the official CSRA warm-up + decay schedule.

The official recipe (``main.py`` of the CSRA release)::

    SGD([{'params': backbone, 'lr': lr}, {'params': classifier, 'lr': lr * 10}],
        momentum=0.9, weight_decay=1e-4)
    StepLR(step_size=4 (VOC) or 5 (COCO/WIDER), gamma=0.1)   # .step() after each epoch
    WarmUpLR(total_iters=2 * iters_per_epoch)                # .step() after each iteration
                                                             # during epochs 1 and 2

**Optimizer.** ``torch.optim.SGD`` with coupled weight decay is, per parameter,
``g += wd * p; buf = momentum * buf + g (buf = g on the first step); p -= lr * buf``.
``optax.chain(add_decayed_weights(wd), trace(momentum), scale_by_learning_rate(lr))``
is the same computation in the same order (optax's trace starts at zero, so its first
step is ``buf = g`` too); the tests check it against real ``torch.optim.SGD``. Decay
applies to *all* parameters, BatchNorm scale/bias and biases included, as in the
official code; ``decay_bn_and_bias=False`` excludes every parameter with ``ndim <= 1``
(BN scale/bias, LayerNorm, biases) -- note that ViT's ``pos_embedding``/``cls`` token are
not 1-D and stay decayed.

**AdamW** (``name="adamw"``, not in the paper; for training small nets from scratch):
``torch.optim.AdamW(betas=(momentum, 0.999), eps=1e-8, weight_decay)``, i.e.
``optax.adamw``: the Adam step ``m_hat / (sqrt(v_hat) + eps)`` plus *decoupled* decay
``wd * p``, both times the scheduled lr. The same groups, schedules, ``decay_bn_and_bias``
mask and gradient accumulation as SGD; ``momentum`` is beta1, ``nesterov`` must be off.
Note that a decoupled decay is scaled by the lr, so AdamW wants a larger
``weight_decay`` (1e-2 .. 5e-2) than SGD's coupled 1e-4.

**Groups.** Parameters are labelled ``"backbone"`` or ``"head"`` from their path:
by default a parameter is in the head group iff its first path key (after a leading
``"params"`` collection name, if any) is in ``head_param_names`` (default
``("head",)``). Models without a ``head`` subtree simply put everything in the
backbone group. Pass ``is_head=`` (a predicate on the path as a tuple of strings) for
anything else.

**Schedule** (``schedule="step"``), as a function of the optimizer step ``t`` (0-based
count of updates), ``W = warmup_epochs * steps_per_epoch``::

    lr(t) = base * t / W                                    if t < W
    lr(t) = base * gamma ** ((t // steps_per_epoch) // lr_step_epochs)   otherwise

This reproduces the official per-iteration lr: WarmUpLR's ``base * last_epoch /
(total_iters + 1e-8)`` starts at 0 on the very first iteration (that step only fills
the momentum buffer) and reaches ``base`` right after the warm-up; StepLR counts epochs
from the start of training, warm-up epochs included, so with step size 4 the lr drops
after epochs 4, 8, ... (epochs 1-based). Differences from the official run: the
``1e-8`` in the warm-up denominator (relative 1e-8 / W), and, only if ``warmup_epochs >
lr_step_epochs`` (never in the paper), the official code loses the decays that fall
inside the warm-up whereas this formula keeps them. ``schedule="cosine"``: the same
warm-up, then per-step cosine from ``base`` to ``base * cosine_final_fraction`` (default
0) at ``num_epochs * steps_per_epoch``.

**Gradient accumulation.** With ``grad_accum_steps = k > 1`` the optimizer is wrapped in
``optax.MultiSteps``: it averages k micro-batch gradients and updates every k-th call.
The schedule counts *optimizer updates*, not micro-batches, so ``steps_per_epoch``
passed to :func:`create_optimizer` must be optimizer updates per epoch
(``batches_per_epoch // k``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from csra_jax.config import OPTIMIZERS, SCHEDULES  # the one lists; config validation uses them too

__all__ = [
    "GROUPS",
    "create_optimizer",
    "head_label_fn",
    "learning_rates",
    "make_schedule",
    "torch_adamw",
    "torch_sgd",
    "warmup_cosine_schedule",
    "warmup_step_schedule",
]

GROUPS = ("backbone", "head")
_MISSING = object()


# ----------------------------------------------------------------------------- schedules


def _check_int(name: str, value: Any, minimum: int) -> int:
    is_whole_float = isinstance(value, float) and value.is_integer()
    if isinstance(value, bool) or not (isinstance(value, numbers.Integral) or is_whole_float):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def warmup_step_schedule(
    base_lr: float,
    steps_per_epoch: int,
    warmup_epochs: int,
    lr_step_epochs: int,
    lr_gamma: float = 0.1,
) -> optax.Schedule:
    """Official CSRA lr: per-step linear warm-up from 0, then x``lr_gamma`` every
    ``lr_step_epochs`` epochs counted from the start of training (see module doc)."""
    steps_per_epoch = _check_int("steps_per_epoch", steps_per_epoch, 1)
    warmup_steps = _check_int("warmup_epochs", warmup_epochs, 0) * steps_per_epoch
    lr_step_epochs = _check_int("lr_step_epochs", lr_step_epochs, 1)
    base_lr, lr_gamma = float(base_lr), float(lr_gamma)

    def schedule(step):
        step = jnp.asarray(step, jnp.int32)
        n_decays = (step // steps_per_epoch) // lr_step_epochs
        lr = base_lr * jnp.power(jnp.float32(lr_gamma), n_decays.astype(jnp.float32))
        if warmup_steps:
            warm = base_lr * step.astype(jnp.float32) / warmup_steps
            lr = jnp.where(step < warmup_steps, warm, lr)
        return lr.astype(jnp.float32)

    return schedule


def warmup_cosine_schedule(
    base_lr: float,
    steps_per_epoch: int,
    warmup_epochs: int,
    num_epochs: int,
    final_fraction: float = 0.0,
) -> optax.Schedule:
    """The same linear warm-up, then per-step cosine decay to ``base * final_fraction``
    at the end of training (held there afterwards)."""
    steps_per_epoch = _check_int("steps_per_epoch", steps_per_epoch, 1)
    warmup_steps = _check_int("warmup_epochs", warmup_epochs, 0) * steps_per_epoch
    total = _check_int("num_epochs", num_epochs, 1) * steps_per_epoch
    if total <= warmup_steps:
        raise ValueError(f"num_epochs ({num_epochs}) must exceed warmup_epochs ({warmup_epochs}) for a cosine schedule")
    decay_steps = total - warmup_steps
    base_lr, final_lr = float(base_lr), float(base_lr) * float(final_fraction)

    def schedule(step):
        step = jnp.asarray(step, jnp.int32)
        t = jnp.clip(step - warmup_steps, 0, decay_steps).astype(jnp.float32)
        lr = final_lr + (base_lr - final_lr) * 0.5 * (1.0 + jnp.cos(math.pi * t / decay_steps))
        if warmup_steps:
            warm = base_lr * step.astype(jnp.float32) / warmup_steps
            lr = jnp.where(step < warmup_steps, warm, lr)
        return lr.astype(jnp.float32)

    return schedule


def _get(config: Any, name: str, default: Any = _MISSING) -> Any:
    """Read a field from a ConfigDict, any attribute object, or a Mapping."""
    if isinstance(config, Mapping):
        value = config.get(name, default)
    else:
        try:
            value = getattr(config, name)
        except (AttributeError, KeyError):
            value = default
    if value is _MISSING:
        raise ValueError(f"optimizer config is missing required field {name!r}")
    return value


def make_schedule(config: Any, base_lr: float, steps_per_epoch: int) -> optax.Schedule:
    """Schedule named by ``config.schedule`` ("step" or "cosine") peaking at ``base_lr``."""
    name = _get(config, "schedule", "step")
    warmup_epochs = _get(config, "warmup_epochs", 2)
    if name == "step":
        return warmup_step_schedule(
            base_lr,
            steps_per_epoch,
            warmup_epochs,
            _get(config, "lr_step_epochs"),
            _get(config, "lr_gamma", 0.1),
        )
    if name == "cosine":
        return warmup_cosine_schedule(
            base_lr,
            steps_per_epoch,
            warmup_epochs,
            _get(config, "num_epochs"),
            _get(config, "cosine_final_fraction", 0.0),
        )
    raise ValueError(f"unknown schedule {name!r}; expected one of {SCHEDULES}")


# ----------------------------------------------------------------------------- groups


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _path_names(path) -> tuple[str, ...]:
    names = tuple(_key_name(k) for k in path)
    if len(names) > 1 and names[0] == "params":  # a Flax variables dict was passed
        names = names[1:]
    return names


def head_label_fn(
    head_param_names: Sequence[str] = ("head",),
    is_head: Callable[[tuple[str, ...]], bool] | None = None,
) -> Callable[[Any], Any]:
    """Returns ``params -> pytree of "backbone"/"head"`` for ``optax.multi_transform``.

    Default: head iff the first path key is in ``head_param_names``. ``is_head``, if
    given, replaces that rule; it receives the path as a tuple of strings (without a
    leading ``"params"``), e.g. ``("head", "classifier", "kernel")``.
    """
    if isinstance(head_param_names, str):
        head_param_names = (head_param_names,)
    names = frozenset(head_param_names)
    rule = is_head if is_head is not None else (lambda path: bool(path) and path[0] in names)

    def label(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: "head" if rule(_path_names(path)) else "backbone", params
        )

    return label


# ----------------------------------------------------------------------------- optimizer


def torch_sgd(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    nesterov: bool = False,
    decay_mask: Any = None,
) -> optax.GradientTransformation:
    """``torch.optim.SGD(momentum, weight_decay, dampening=0)`` as an optax chain."""
    parts = []
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
    if momentum:
        parts.append(optax.trace(decay=momentum, nesterov=nesterov))
    parts.append(optax.scale_by_learning_rate(learning_rate))
    return optax.chain(*parts)


def torch_adamw(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    decay_mask: Any = None,
) -> optax.GradientTransformation:
    """``torch.optim.AdamW(betas=(b1, b2), eps, weight_decay, amsgrad=False)`` as optax."""
    return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                       mask=decay_mask)


def _decay_mask(params):
    return jax.tree_util.tree_map(lambda p: jnp.ndim(p) > 1, params)


def create_optimizer(
    config: Any,
    steps_per_epoch: int,
    *,
    is_head: Callable[[tuple[str, ...]], bool] | None = None,
) -> tuple[optax.GradientTransformation, dict[str, optax.Schedule]]:
    """Builds the two-group optimizer (SGD or AdamW, ``name``) from a config; returns
    ``(tx, {"backbone": fn, "head": fn})``.

    ``config`` (``ml_collections.ConfigDict``, any attribute object, or a dict) fields:
    ``lr_backbone``, ``lr_head``, ``num_epochs`` and, for ``schedule="step"``,
    ``lr_step_epochs`` are required; defaults (the paper's) for the rest:
    ``name="sgd"``, ``momentum=0.9``, ``weight_decay=1e-4``, ``decay_bn_and_bias=True``,
    ``warmup_epochs=2``, ``schedule="step"``, ``lr_gamma=0.1``, ``nesterov=False``,
    ``grad_accum_steps=1``, ``head_param_names=("head",)``,
    ``cosine_final_fraction=0.0``. ``steps_per_epoch`` counts optimizer updates.
    """
    lrs = {"backbone": float(_get(config, "lr_backbone")), "head": float(_get(config, "lr_head"))}
    _check_int("num_epochs", _get(config, "num_epochs"), 1)
    schedules = {group: make_schedule(config, lr, steps_per_epoch) for group, lr in lrs.items()}
    momentum = float(_get(config, "momentum", 0.9))
    weight_decay = float(_get(config, "weight_decay", 1e-4))
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    decay_mask = None if _get(config, "decay_bn_and_bias", True) else _decay_mask
    nesterov = bool(_get(config, "nesterov", False))
    name = _get(config, "name", "sgd")
    if name not in OPTIMIZERS:
        raise ValueError(f"optim.name={name!r}; valid: {', '.join(OPTIMIZERS)}")
    if name == "sgd":
        def group_tx(lr):
            return torch_sgd(lr, momentum, weight_decay, nesterov, decay_mask)
    else:
        if nesterov:
            raise ValueError("optim.nesterov=True is an SGD option; optim.name='adamw' has none")

        def group_tx(lr):
            return torch_adamw(lr, b1=momentum, weight_decay=weight_decay, decay_mask=decay_mask)
    tx = optax.multi_transform(
        {group: group_tx(schedules[group]) for group in GROUPS},
        head_label_fn(_get(config, "head_param_names", ("head",)), is_head),
    )
    accum = _check_int("grad_accum_steps", _get(config, "grad_accum_steps", 1), 1)
    if accum > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accum).gradient_transformation()
    return tx, schedules


def learning_rates(schedules: Mapping[str, optax.Schedule], step) -> dict[str, jax.Array]:
    """Current lr per group at optimizer step ``step`` (jit-friendly), for logging.

    With gradient accumulation pass the optimizer step (``micro_step // k``).
    """
    return {group: fn(step) for group, fn in schedules.items()}
