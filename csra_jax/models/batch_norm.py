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

In training mode the backward pass is written out (``jax.custom_vjp``), as torch's is:
autodiff of the forward above would keep both the input and the centred input
``x - mean`` alive from the forward to the backward pass (the E[x^2] term needs the
first, the normalisation the second); the written-out backward keeps only the input and
recomputes the centred one, one activation-sized buffer less per BatchNorm layer.
The forward is unchanged, bit for bit.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


def _batch_moments(x):
    """float32 (mean, variance, raw E[x^2] - E[x]^2) over every axis but the last, as
    flax computes them (the variance is the raw one clipped at 0)."""
    axes = tuple(range(x.ndim - 1))
    xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = xf.mean(axes)
    raw = jnp.square(xf).mean(axes) - jnp.square(mean)
    return mean, jnp.maximum(0.0, raw), raw


def _normalize(x, mean, var, scale, bias, epsilon):
    return (x - mean) * (jax.lax.rsqrt(var + epsilon) * scale) + bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def normalize_with_batch_stats(x, scale, bias, epsilon: float):
    """Training-mode BatchNorm over every axis but the last: (y, batch mean, batch var)."""
    return _normalize_fwd(x, scale, bias, epsilon)[0]


def _normalize_fwd(x, scale, bias, epsilon):
    mean, var, raw = _batch_moments(x)
    y = _normalize(x, mean, var, scale, bias, epsilon)
    # Only x of activation size: the centred input is recomputed in the backward pass.
    return (y, mean, var), (x, mean, var, raw > 0, scale, bias)


def _normalize_bwd(epsilon, res, cts):
    x, mean, var, unclipped, scale, bias = res
    g_y, g_mean, g_var = cts
    axes = tuple(range(x.ndim - 1))
    n = math.prod(x.shape[:-1])
    f32 = jnp.promote_types(x.dtype, jnp.float32)
    g = g_y.astype(f32)
    xc = x.astype(f32) - mean
    inv = jax.lax.rsqrt(var + epsilon)
    g_bias = g.sum(axes)
    g_xc = (g * xc).sum(axes)
    # y = (x - mean) * inv * scale + bias, mean = E[x], var = max(0, E[x^2] - E[x]^2);
    # d var / d x_i = 2 (x_i - mean) / n, d mean / d x_i = 1 / n.
    d_mean = g_mean - inv * scale * g_bias
    d_var = g_var + jnp.where(unclipped, -0.5 * inv ** 3 * scale * g_xc, 0.0)
    g_x = (inv * scale) * g + d_mean / n + (2.0 / n) * d_var * xc
    return (g_x.astype(x.dtype), (g_xc * inv).astype(scale.dtype),
            g_bias.astype(bias.dtype))


normalize_with_batch_stats.defvjp(_normalize_fwd, _normalize_bwd)


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
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        scale = self.param("scale", nn.initializers.ones, (c,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (c,), self.param_dtype)
        if use_running_average:
            y = _normalize(x, ra_mean.value, ra_var.value, scale, bias, self.epsilon)
        else:
            y, mean, var = normalize_with_batch_stats(x, scale, bias, self.epsilon)
            if not self.is_initializing():
                n = math.prod(x.shape[:-1])
                if n < 2:
                    raise ValueError(
                        f"BatchNorm in training mode needs more than one value per channel, "
                        f"got input shape {x.shape}; use a batch size of at least 2.")
                folded = var * (n / (n - 1)) if self.unbiased_running_var else var
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * folded
        return jnp.asarray(y, nn.dtypes.canonicalize_dtype(x, scale, bias, dtype=self.dtype))
