"""``workdir/config.json``: the config a run was trained with, so evaluate, predict and
a resume rebuild its model from the workdir alone."""

from __future__ import annotations

import json
from typing import Optional

import ml_collections

from csra_jax.run.paths import RunDir, write_bytes


def save_run_config(workdir, config: ml_collections.ConfigDict) -> str:
    """Writes ``workdir/config.json`` whole (a crash never truncates it); returns its path."""
    path = RunDir(workdir).config
    write_bytes(path, config.to_json_best_effort(indent=2, sort_keys=True).encode())
    return str(path)


def read_saved(workdir) -> Optional[dict]:
    """The raw values of ``workdir/config.json`` (None when absent); ValueError when it
    is not JSON."""
    path = RunDir(workdir).config
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); restore it from a backup, or "
                         "use a new --workdir.") from None


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _merge(target: ml_collections.ConfigDict, values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(target.get(key), ml_collections.ConfigDict):
            _merge(target[key], value)
            continue
        with target.unlocked():  # a field this version does not know is kept, not fatal
            target[key] = _tuples(value)


def load_run_config(workdir) -> Optional[ml_collections.ConfigDict]:
    """``workdir/config.json`` over the default config (fields added since the run keep
    their defaults), or None when the run has none."""
    values = read_saved(workdir)
    if values is None:
        return None
    from csra_jax.config import base_config  # the schema: plain ml_collections
    config = base_config()
    _merge(config, values)
    return config
