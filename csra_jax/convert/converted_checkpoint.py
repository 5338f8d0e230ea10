"""A converted model on disk: orbax-saved variables plus the create_model arguments.

Layout of ``OUT_DIR``::

    model.json      {"arch": ..., "num_classes": ..., "head": ..., ...}  (create_model kwargs)
    variables/      orbax StandardCheckpointer tree {"params", ["batch_stats"]}
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Tuple

import jax
import orbax.checkpoint as ocp

from csra_jax.models.classifier import Classifier, create_model

MODEL_JSON = "model.json"
VARIABLES_DIR = "variables"


def save_converted(out_dir: str, variables: Dict[str, Any], model_kwargs: Dict[str, Any]) -> str:
    """Writes ``variables`` and the kwargs that rebuild the model; returns the dir."""
    out_dir = os.path.abspath(out_dir)
    target = os.path.join(out_dir, VARIABLES_DIR)
    if os.path.exists(target):
        raise FileExistsError(f"{target!r} already exists; choose an empty OUT_DIR.")
    os.makedirs(out_dir, exist_ok=True)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(target, variables)
    with open(os.path.join(out_dir, MODEL_JSON), "w") as f:
        json.dump(model_kwargs, f, indent=2, sort_keys=True)
    return out_dir


def load_converted(out_dir: str) -> Tuple[Classifier, Dict[str, Any]]:
    """Rebuilds the model from ``model.json`` and restores its variables."""
    out_dir = os.path.abspath(out_dir)
    meta = os.path.join(out_dir, MODEL_JSON)
    if not os.path.exists(meta):
        raise FileNotFoundError(
            f"{meta!r} not found: {out_dir!r} is not a directory written by "
            "`python -m csra_jax.convert`.")
    with open(meta) as f:
        model_kwargs = json.load(f)
    model = create_model(**model_kwargs)
    from csra_jax.convert.torch_to_flax import _example_input
    abstract = jax.eval_shape(model.init, jax.random.key(0), _example_input(model))
    with ocp.StandardCheckpointer() as ckptr:
        variables = ckptr.restore(os.path.join(out_dir, VARIABLES_DIR), abstract)
    return model, variables
