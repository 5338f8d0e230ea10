"""BatchNorm with PyTorch's running-statistics update, for the torch-ported models.

Training-mode BatchNorm normalises with the *biased* batch variance in both frameworks,
but ``torch.nn.BatchNorm{1,2}d`` folds the *unbiased* one (times n / (n - 1), n the
number of values per channel) into ``running_var``, while ``flax.linen.BatchNorm`` folds
the biased one. A model fine-tuned from torch weights therefore drifts from the torch
run in its running variances, which evaluation then uses. ``BatchNorm`` here is
``flax.linen.BatchNorm``'s computation (float32 statistics, E[x^2] - E[x]^2 clipped at
0, the same normalisation order) with the torch update; its variables have flax's
names (params ``scale``/``bias``, ``batch_stats`` ``mean``/``var``), so converted
checkpoints load unchanged.

Under ``jax.jit`` with a batch sharded over a mesh, the arrays seen here are global:
the mean runs over the global batch (XLA inserts the all-reduce) and n is the global
count, as torch's SyncBatchNorm. It has no ``axis_name``: inside ``pmap`` or
``shard_map`` the statistics (and n) would be per-device.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


class BatchNorm(nn.Module):
    """BatchNorm over every axis but the last (NHWC or (B, C) inputs).

    Attributes:
      use_running_average: normalise with the stored statistics (eval) instead of the
        batch's (train); may also be passed to ``__call__``.
      momentum: weight of the old running value (Flax convention: 0.9 == torch's 0.1).
      epsilon: added to the variance (torch's default 1e-5).
      unbiased_running_var: fold var * n / (n - 1) into ``var`` as torch does (default);
        False gives ``flax.linen.BatchNorm``'s update.
    """

    use_running_average: Optional[bool] = None
    momentum: float = 0.9
    epsilon: float = 1e-5
    unbiased_running_var: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: Optional[bool] = None) -> jax.Array:
        use_running_average = nn.merge_param("use_running_average", self.use_running_average,
                                             use_running_average)
        c = x.shape[-1]
        axes = tuple(range(x.ndim - 1))
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
            mean = xf.mean(axes)
            var = jnp.maximum(0.0, jnp.square(xf).mean(axes) - jnp.square(mean))
            if not self.is_initializing():
                n = math.prod(x.shape[:-1])
                if n < 2:
                    raise ValueError(
                        f"BatchNorm in training mode needs more than one value per channel, "
                        f"got input shape {x.shape}; use a batch size of at least 2.")
                folded = var * (n / (n - 1)) if self.unbiased_running_var else var
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * folded
        scale = self.param("scale", nn.initializers.ones, (c,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (c,), self.param_dtype)
        y = (x - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias
        return jnp.asarray(y, nn.dtypes.canonicalize_dtype(x, scale, bias, dtype=self.dtype))
