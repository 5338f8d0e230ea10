"""Resuming a run with another config: compare it field by field with the run's
``config.json`` before anything is written.

A checkpoint only continues the run it came from: another arch, head or class count
cannot restore; another batch size, resolution, ``lam`` or seed restores but trains a
different model on different data, and a changed schedule changes what the saved steps
meant. Those stop with one message. Fields that only say how to run (paths, workers,
logging, mode) may change freely; a few (``num_epochs`` to extend a run, the optimizer,
augmentation) may change when named in ``allow_config_change``.
"""

from __future__ import annotations

import json
from typing import Dict, List, Sequence, Tuple

from etils import epath

from csra_jax.run.config_file import read_saved, save_run_config

# How to run, not what is trained: never checked.
FREE = (
    "mode", "allow_config_change", "on_damaged_checkpoint", "compilation_cache_dir",
    "data.data_dir", "data.manual_dir", "data.build_if_missing", "data.build_kwargs",
    "data.read_threads", "eval_batch_size", "checkpoint_every_steps", "keep_checkpoints",
    "log_every_steps", "threshold", "lambda_sweep_lams", "max_steps", "init_checkpoint",
    "init_source", "require_pretrained", "model.remat", "model.conv_impl",
    "model.pool_impl", "model.attention_impl",
    "data.num_workers",  # the batch order is the same; the data position converts
)
# What the schedule, the augmentation or the evaluation does from now on: may change when
# the user names the field in allow_config_change.
ALLOWABLE = (
    "num_epochs", "eval_every_epochs", "dtype", "optim", "data.crop_scale", "data.hflip",
    "data.randaugment", "data.eval_split",
)
# Under an ALLOWABLE prefix but never changeable: the saved optimizer state has another
# structure (SGD's momentum is not AdamW's two moments), so it cannot be restored.
REFUSED = ("optim.name",)
# Fields an evaluation of the saved weights depends on (evaluate / lambda_sweep modes).
MODEL = ("task", "model", "data.name", "data.builder_config", "data.image_size",
         "data.normalization")


def _under(field: str, prefixes: Sequence[str]) -> bool:
    return any(field == p or field.startswith(p + ".") for p in prefixes)


def _flatten(tree, prefix: str = "") -> Dict[str, object]:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and name != "data.build_kwargs":
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _as_json(config) -> dict:
    return json.loads(config.to_json_best_effort(sort_keys=True))


def changed_fields(saved: dict, config) -> List[Tuple[str, object, object]]:
    """(field, saved value, new value) for every field present in both that differs."""
    old, new = _flatten(saved), _flatten(_as_json(config))
    return [(k, old[k], new[k]) for k in sorted(old.keys() & new.keys()) if old[k] != new[k]]


def _show(value) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


def check_resume(workdir, config, training: bool) -> List[str]:
    """Raises ValueError (one line) when ``config`` may not continue ``workdir``'s run.

    Returns the changed fields accepted through ``allow_config_change``. ``training=False``
    (evaluate, lambda_sweep) only requires the fields that define the saved weights.
    """
    saved = read_saved(workdir)
    if saved is None:
        return []
    allowed = [f.strip() for f in str(config.get("allow_config_change", "") or "").split(",")
               if f.strip()]
    changes = changed_fields(saved, config)
    blocked, needs_flag, accepted = [], [], []
    for field, old, new in changes:
        if _under(field, FREE) or (not training and not _under(field, MODEL)):
            continue
        if _under(field, ALLOWABLE) and training and not _under(field, REFUSED):
            (accepted if _under(field, allowed) else needs_flag).append(field)
        else:
            blocked.append(field)
    if not blocked and not needs_flag:
        return accepted
    shown = {f: f"{f} {_show(o)} -> {_show(n)}" for f, o, n in changes}
    parts = []
    if blocked:
        parts.append(f"{', '.join(shown[f] for f in blocked)} change the model, the data or "
                     "the schedule of the saved run, so its checkpoints cannot continue: "
                     "use a new --workdir (or the saved values in config.json)")
    if needs_flag:
        parts.append(f"{', '.join(shown[f] for f in needs_flag)} may change only on purpose: "
                     f"add --config.allow_config_change={','.join(needs_flag)}")
    raise ValueError(f"resuming {epath.Path(workdir)} with another config: "
                     + "; ".join(parts) + ".")


def write_run_config(workdir, config) -> None:
    """``workdir/config.json``; the trainer calls it through this module."""
    save_run_config(workdir, config)
