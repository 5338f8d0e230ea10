"""The baseline head: global average pooling + a linear classifier with bias.

It also runs the paper's training-free variant (Fig. 1, Table 1): apply the trained
classifier at every position, giving class score maps s_k = W^T x_k + b, and return

    mean_k s_k + max_lam * max_k s_k

``max_lam=0`` is exactly the GAP baseline (mean_k s_k = W^T mean_k x_k + b), so a trained
``gap`` model's variables can be re-scored for any lam without retraining. Its class maps
are s_k (``scores``; the lambda sweep reads their mean and max) and the class activation
map, s_k min-max normalised per class (``attention``).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from csra_jax.models.csra import flatten_positions
from csra_jax.models.head import ClassMaps, Head, min_max_per_class, spatial_shape
from csra_jax.models.registry import HeadSpec, register_head

# torch.nn.Linear's default init: U(-1/sqrt(d), 1/sqrt(d)) for weight and bias.
_torch_linear_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _torch_bias_init(fan_in):
    bound = 1.0 / fan_in ** 0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


class GAPHead(Head):
    """Average-pooled features -> Dense(num_classes) with bias (torchvision/timm style).

    Attributes:
      num_classes: number of classes.
      max_lam: weight of the training-free max term (0 = plain GAP baseline).
    """

    torch_classifier = True  # torchvision's fc / timm's head load into kernel and bias

    num_classes: int
    max_lam: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"GAPHead: num_classes must be a positive int, got {self.num_classes!r}.")
        if not self.max_lam >= 0:
            raise ValueError(f"GAPHead: max_lam must be >= 0, got {self.max_lam}.")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, with_maps: bool = False):
        del train
        grid = spatial_shape(x) if with_maps else None
        x = flatten_positions(x)
        d = x.shape[-1]
        kernel = self.param("kernel", _torch_linear_init, (d, self.num_classes), self.param_dtype)
        bias = self.param("bias", _torch_bias_init(d), (self.num_classes,), self.param_dtype)
        pooled = jnp.mean(x.astype(jnp.float32), axis=1).astype(self.dtype)
        logits = jnp.dot(pooled, kernel.astype(self.dtype),
                         preferred_element_type=jnp.float32) + bias
        if self.max_lam:
            score_map = class_score_map(x, kernel, bias, self.dtype)
            logits = logits + self.max_lam * jnp.max(score_map, axis=1)
        if not with_maps:
            return logits
        scores = class_score_map(x, kernel, bias).reshape(x.shape[0], *grid, self.num_classes)
        return logits, ClassMaps(scores=scores, attention=min_max_per_class(scores))


def class_score_map(x: jax.Array, kernel: jax.Array, bias: jax.Array,
                    dtype: Any = jnp.float32) -> jax.Array:
    """The GAP classifier applied at every position, s_k = W^T x_k + b.

    x: (B, h, w, d) or (B, N, d); kernel (d, C); bias (C,). Returns (B, N, C) float32.
    """
    return jnp.einsum("bnd,dc->bnc", flatten_positions(x).astype(dtype), kernel.astype(dtype),
                      preferred_element_type=jnp.float32) + bias


def _build(num_classes, num_heads, lam, dtype, param_dtype, **options):
    del num_heads, lam  # CSRA's; the training-free lam is ``max_lam``
    return GAPHead(num_classes, dtype=dtype, param_dtype=param_dtype, **options)


register_head(HeadSpec(name="gap", module=GAPHead, build=_build, options=("max_lam",),
                      sweepable=True))
