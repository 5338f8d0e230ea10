"""CSRAHead for Flax NNX code, through ``flax.nnx.bridge`` (one implementation, two APIs)."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx
from flax.nnx import bridge

from csra_jax.models.csra import CSRAHead


def csra_head_nnx(in_features: int, num_classes: int, *, rngs: nnx.Rngs, **kwargs) -> nnx.Module:
    """An initialised NNX module wrapping ``CSRAHead(num_classes, **kwargs)``.

    Call it on (B, h, w, in_features) maps or (B, N, in_features) tokens; its parameter
    is ``.kernel`` of shape (H, in_features, num_classes), an ``nnx.Param``.
    """
    head = bridge.ToNNX(CSRAHead(num_classes, **kwargs), rngs=rngs)
    bridge.lazy_init(head, jnp.zeros((1, 1, in_features), kwargs.get("param_dtype", jnp.float32)))
    return head
