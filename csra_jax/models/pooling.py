"""Max pooling whose backward pass is written out as masks over the window taps.

XLA:CPU lowers the gradient of a max-pool (``select-and-scatter``) to a variadic
reduce-window that carries four full-size index tensors (built from ``iota``) and a
scatter over every output position, slow on CPU (``python bench/pool_backward.py``
times both). Here the backward pass recomputes, for each tap of the window in row-major
order, where the input equals the pooled maximum and no earlier tap has claimed it, and
routes the output gradient there. That is the same choice of tie as XLA's
select-and-scatter and torch's ``max_pool2d`` (the first maximum in the window), all in
elementwise ops XLA fuses.
The forward pass is Flax's own ``nn.max_pool`` computation, so outputs are identical.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from csra_jax.models.backend_choice import resolve_per_backend


def _forward(x, window, stride, pad):
    return nn.max_pool(x, (window, window), strides=(stride, stride),
                       padding=((pad, pad), (pad, pad)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool_masked_vjp(x, window: int, stride: int, pad: int = 0):
    """NHWC max-pool, square ``window``, ``stride``, symmetric ``pad`` (padding never wins)."""
    return _forward(x, window, stride, pad)


def _fwd(x, window, stride, pad):
    return _forward(x, window, stride, pad), x


def _bwd(window, stride, pad, x, g):
    b, ho, wo, c = g.shape
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-jnp.inf)
    hp, wp = xp.shape[1:3]
    span_h, span_w = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    windows = [(i, j, lax.slice(xp, (0, i, j, 0), (b, i + span_h, j + span_w, c),
                                (1, stride, stride, 1)))
               for i in range(window) for j in range(window)]
    # The maximum is taken again here from the same tap values rather than saved from the
    # forward pass: XLA may recompute x's producer (BN, ReLU) separately for the forward
    # and for this residual with different rounding, and a saved maximum that no tap
    # equals would drop that window's gradient.
    y = functools.reduce(jnp.maximum, [tap for _, _, tap in windows])
    zero = jnp.zeros((), g.dtype)
    claimed = jnp.zeros(g.shape, bool)
    taps = []
    for i, j, tap in windows:
        hit = (tap == y) & ~claimed
        claimed = claimed | hit
        taps.append((i, j, hit))
    # Where windows overlap, an input can receive several outputs' gradients; adding them
    # in reverse tap order adds them in the outputs' row-major order, as torch does, so
    # the sums are bit-identical too. (The transpose of a strided slice is an interior pad.)
    dxp = jnp.zeros(xp.shape, g.dtype)
    for i, j, hit in reversed(taps):
        dxp = dxp + lax.pad(jnp.where(hit, g, zero), zero, (
            (0, 0, 0), (i, hp - i - span_h, stride - 1), (j, wp - j - span_w, stride - 1),
            (0, 0, 0)))
    return (dxp[:, pad:hp - pad, pad:wp - pad, :],)


max_pool_masked_vjp.defvjp(_fwd, _bwd)


POOL_IMPLS = ("auto", "xla", "masked")


def resolve_pool_impl(pool_impl: str) -> str:
    """``"auto"``: the masked backward on CPU; XLA's own on GPU/TPU, whose select-and-scatter
    kernels are native (the expansion above is XLA:CPU's)."""
    return resolve_per_backend("pool_impl", pool_impl, POOL_IMPLS, on_cpu="masked",
                               elsewhere="xla")


def max_pool(x, window: int, stride: int, pad: int = 0, impl: str = "auto"):
    """``nn.max_pool`` with square windows; ``impl`` as :func:`resolve_pool_impl`."""
    if resolve_pool_impl(impl) == "xla":
        return _forward(x, window, stride, pad)
    return max_pool_masked_vjp(x, window, stride, pad)
