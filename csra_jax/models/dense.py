"""A dense layer whose weight gradient XLA:CPU computes without transposing the
output gradient.

For ``y = x @ W`` over a (batch, tokens, in) input, autodiff writes the weight gradient
as ``xᵀ dy`` (contracting the batch and token axes of both). XLA:CPU's layout assignment
then copies ``dy`` into an (out, batch * tokens) transposed buffer before the dot, one full read and write of
the largest gradient of the layer. Written as ``(dyᵀ x)ᵀ``, the same contraction with
the operands swapped, the dot reads both in their row-major layout and its (out, in)
result is transposed into the kernel's layout by the dot itself. ``python
bench/dense_backward.py`` times both on a ViT MLP block's two layers and counts the
copies.

``weight_grad="auto"`` uses the swapped form on the CPU backend only: GPU/TPU keep XLA's
own gradient (their GEMMs take transposed operands for free). The values are the same
contraction, so the gradients agree with autodiff's to float rounding. The swapped one
is a ``jax.custom_vjp``: ``grad``/``vjp`` differentiate it, forward-mode ``jvp`` does
not; ``weight_grad="autodiff"`` keeps JAX's own derivative. (A ``custom_jvp`` with the
swapped contraction as its tangent would allow both, but XLA:CPU folds the swap back and
copies again.)

All three of its dots accumulate in float32 and round once to the operands' dtype. For
float32 that is what they did anyway; for bfloat16 it is what lets XLA:CPU use the
CPU's bf16 dot instructions (AVX512-BF16): a dot with a bfloat16 result runs a slower
kernel, below the float32 rate (``python bench/gemm_rates.py`` prints both).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from csra_jax.models.backend_choice import resolve_per_backend


def _dot_last(x, kernel):
    return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


def accumulating_dot(a, b, dimension_numbers):
    """``lax.dot_general`` accumulated in float32 and rounded once to ``a``'s dtype."""
    return lax.dot_general(a, b, dimension_numbers,
                           preferred_element_type=jnp.float32).astype(a.dtype)


def _accumulating_dot_last(x, kernel):
    return accumulating_dot(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


@jax.custom_vjp
def dense_dot(x, kernel):
    """``x @ kernel`` over the last axis of ``x``, with the swapped weight gradient."""
    return _accumulating_dot_last(x, kernel)


def _forward(x, kernel):
    return _accumulating_dot_last(x, kernel), (x, kernel)


def _backward(residuals, d_y):
    x, kernel = residuals
    d_y = d_y.astype(x.dtype)
    d_x = accumulating_dot(d_y, kernel.astype(x.dtype), (((d_y.ndim - 1,), (1,)), ((), ())))
    d_kernel_t = accumulating_dot(d_y.reshape(-1, d_y.shape[-1]), x.reshape(-1, x.shape[-1]),
                                  (((0,), (0,)), ((), ())))
    return d_x, d_kernel_t.T.astype(kernel.dtype)


dense_dot.defvjp(_forward, _backward)


WEIGHT_GRADS = ("auto", "swapped", "autodiff")


def resolve_weight_grad(weight_grad: str) -> str:
    return resolve_per_backend("weight_grad", weight_grad, WEIGHT_GRADS, on_cpu="swapped",
                               elsewhere="autodiff")


class Dense(nn.Module):
    """``nn.Dense`` (same ``kernel`` (in, out) and ``bias`` parameters, initialisers and
    dtype promotion) whose weight gradient is :func:`dense_dot`'s (``weight_grad``, above)."""

    features: int
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()
    weight_grad: str = "auto"

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features),
                            self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        dot = dense_dot if resolve_weight_grad(self.weight_grad) == "swapped" else _dot_last
        return dot(x, kernel) + bias
