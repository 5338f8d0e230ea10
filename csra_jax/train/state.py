"""Train state and pretrained-weight initialisation (the model comes from
``csra_jax.models.model_from_config``)."""

from __future__ import annotations

import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import traverse_util

from csra_jax.models.classifier import Classifier
from csra_jax.models.from_config import model_from_config  # noqa: F401  (tests import it here)


@flax.struct.dataclass
class TrainState:
    step: jax.Array          # optimizer micro-steps taken (int32 scalar)
    params: Any
    batch_stats: Any         # {} for models without BatchNorm
    opt_state: Any
    rng: jax.Array           # raw uint32 key; per-step keys are fold_in(rng, step)
    nonfinite: jax.Array     # steps skipped for a non-finite loss/gradient (int32)


def _merge_pretrained(init: dict, pretrained: dict, path: str):
    """Takes every pretrained leaf whose path and shape match ``init``; the backbone
    must match completely. Returns the merged tree and the head leaves that did not fit
    (they keep their initialisation), as ``"path: checkpoint shape -> model shape"``."""
    flat_init = traverse_util.flatten_dict(init)
    flat_pre = traverse_util.flatten_dict(pretrained)
    out, bad, fresh = dict(flat_init), [], []
    for key, value in flat_init.items():
        if key in flat_pre and flat_pre[key].shape == value.shape:
            out[key] = flat_pre[key]
        elif key[1] == "backbone":
            bad.append("/".join(key))
        else:
            had = tuple(flat_pre[key].shape) if key in flat_pre else "absent"
            fresh.append(f"{'/'.join(key)}: {had} -> {tuple(value.shape)}")
    if bad:
        raise ValueError(f"pretrained checkpoint {path!r} does not fit the model's backbone: "
                         f"{len(bad)} missing or mis-shaped leaves, e.g. {bad[:5]}. Was it "
                         "converted for another arch?")
    return traverse_util.unflatten_dict(out), fresh


def _report_fresh_head(config: ml_collections.ConfigDict, path: str, fresh: list) -> None:
    """A head that does not fit is fine to fine-tune (a new class count) but would make an
    evaluation measure an untrained head: refuse that, and say it in one line otherwise."""
    what = (f"init_checkpoint {path!r}: {len(fresh)} head leaves do not fit the model's head "
            f"(e.g. {'; '.join(fresh[:3])})")
    if config.mode in ("evaluate", "lambda_sweep"):
        raise ValueError(f"{what}, so evaluating would measure an untrained head. Set "
                         "config.model (head, num_heads, num_classes of the data) to the "
                         "converted model's; its model.json lists them.")
    if jax.process_index() == 0:
        print(f"note: {what}; they keep their initialisation.", flush=True)


def load_pretrained(config: ml_collections.ConfigDict, model: Classifier,
                    variables: dict) -> dict:
    """Returns ``variables`` with the config's pretrained weights loaded (if any)."""
    path = os.path.expanduser(config.init_checkpoint)
    if not path:
        return variables
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"init_checkpoint {path!r} does not exist; download the pretrained weights "
            "(README: 'Pretrained weights') or fix --config.init_checkpoint.")
    from csra_jax.convert import load_converted, load_torch_weights
    if config.get("init_checkpoint_sha256"):
        from csra_jax.convert.sha256 import check_sha256
        check_sha256(path, config.init_checkpoint_sha256)
    if config.init_source == "converted":
        _, pretrained = load_converted(path)
        merged, fresh = _merge_pretrained(variables, pretrained, path)
        if fresh:
            _report_fresh_head(config, path, fresh)
        return merged
    return load_torch_weights(path, model, config.init_source, init_variables=variables)


def create_train_state(config: ml_collections.ConfigDict, model: Classifier,
                       tx: optax.GradientTransformation, rng: jax.Array,
                       pretrained: bool = True) -> TrainState:
    """Initialises on the host (then loads pretrained weights); the caller shards it."""
    size = config.data.image_size
    init_rng, train_rng = jax.random.split(rng)
    variables = jax.jit(model.init)(init_rng, jnp.zeros((1, size, size, 3), jnp.float32))
    if pretrained:
        variables = load_pretrained(config, model, variables)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}),
                      opt_state=tx.init(params), rng=train_rng,
                      nonfinite=jnp.zeros((), jnp.int32))


def abstract_train_state(config, model, tx, rng) -> TrainState:
    """Shapes/dtypes only, for restoring checkpoints without initialising twice."""
    return jax.eval_shape(lambda r: create_train_state(config, model, tx, r, pretrained=False),
                          rng)


def state_variables(state: TrainState) -> dict:
    variables = {"params": state.params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return variables
