"""A k x k convolution whose backward pass is written out: the weight gradient as GEMMs
over shifted input windows, the input gradient as a forward convolution with the flipped
kernel.

XLA derives a convolution's backward pass itself (a weight-gradient convolution that
contracts over batch and space, with the batch as its innermost, contiguous axis, and an
input-gradient convolution); on CPU the weight-gradient one runs far below its GEMM path.
Here the weight gradient is ``sum_ij window_ij(x)^T @ g``, one (C_in x b*H*W) @
(b*H*W x C_out) GEMM per kernel tap, accumulated by a ``lax.scan`` over batch tiles of
``batch_tile`` images, so only one tile's windows are live at a time. The forward pass is
XLA's own convolution, so outputs are bit-identical to ``nn.Conv``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")


def _forward(x, w, stride, pad):
    return lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)),
                                    dimension_numbers=_DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d_gemm_vjp(x, w, stride: int, pad: int, batch_tile: int = 2):
    """NHWC x HWIO convolution, symmetric padding ``pad``, no bias."""
    return _forward(x, w, stride, pad)


def _fwd(x, w, stride, pad, batch_tile):
    return _forward(x, w, stride, pad), (x, w)


def _tile_weight_grad(xt, gt, kh, kw, stride, span_h, span_w):
    """One batch tile's ``dw[i, j] = window_ij(xt)^T @ gt``: a GEMM per kernel tap."""
    cin, cout = xt.shape[-1], gt.shape[-1]
    gt = gt.reshape(-1, cout)
    taps = [lax.dot_general(
        xt[:, i:i + span_h:stride, j:j + span_w:stride, :].reshape(-1, cin), gt,
        (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
        for i in range(kh) for j in range(kw)]
    return jnp.stack(taps).reshape(kh, kw, cin, cout)


def weight_grad(x, g, kh, kw, stride, pad, batch_tile):
    """dw of a (kh, kw) convolution of ``x`` whose output gradient is ``g``, as GEMMs."""
    b, ho, wo, cout = g.shape
    cin = x.shape[-1]
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    span_h, span_w = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    tile_grad = functools.partial(_tile_weight_grad, kh=kh, kw=kw, stride=stride,
                                  span_h=span_h, span_w=span_w)
    # A scan, not a Python loop over the tiles: XLA then runs the tiles one after the
    # other on one tile's windows (bounded memory, cache reuse) instead of scheduling
    # every tile's window copies at once.
    tile = max(1, min(batch_tile, b))
    n = b // tile
    body = lambda acc, xg: (acc + tile_grad(*xg), None)
    dw, _ = lax.scan(body, jnp.zeros((kh, kw, cin, cout), jnp.float32),
                     (xp[:n * tile].reshape(n, tile, *xp.shape[1:]),
                      g[:n * tile].reshape(n, tile, *g.shape[1:])))
    if n * tile < b:  # the ragged last tile
        dw = dw + tile_grad(xp[n * tile:], g[n * tile:])
    return dw


def _input_grad(g, w, x_shape, stride, pad):
    kh, kw = w.shape[:2]
    w_flipped = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)  # HW(out)(in)
    ho, wo = g.shape[1:3]
    lo_h, lo_w = kh - 1 - pad, kw - 1 - pad
    hi_h = x_shape[1] - (stride * (ho - 1) + 1) - lo_h + kh - 1
    hi_w = x_shape[2] - (stride * (wo - 1) + 1) - lo_w + kw - 1
    return lax.conv_general_dilated(g, w_flipped, (1, 1), ((lo_h, hi_h), (lo_w, hi_w)),
                                    lhs_dilation=(stride, stride), dimension_numbers=_DN)


def _bwd(stride, pad, batch_tile, res, g):
    x, w = res
    dw = weight_grad(x, g, w.shape[0], w.shape[1], stride, pad, batch_tile)
    return _input_grad(g, w, x.shape, stride, pad).astype(x.dtype), dw.astype(w.dtype)


conv2d_gemm_vjp.defvjp(_fwd, _bwd)


class ConvGemmVJP(nn.Module):
    """Drop-in for a bias-free, symmetric-padded ``nn.Conv``: same ``kernel`` parameter
    (k, k, in, out), same dtype promotion, same forward; backward as above."""

    features: int
    kernel_size: int
    stride: int = 1
    pad: int = 0
    batch_tile: int = 2
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Callable = nn.initializers.lecun_normal()
    # 3x3, stride-1, pad-1 convolutions by Winograd (``csra_jax.models.winograd``) where
    # its ``winograd_tile`` picks a tile for the shape.
    winograd: bool = False

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features),
                            self.param_dtype)
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        if self.winograd and (k, self.stride, self.pad) == (3, 1, 1) and x.ndim == 4:
            from csra_jax.models import winograd  # it imports this module
            tile = winograd.winograd_tile(*x.shape, self.features, dtype=x.dtype)
            if tile:
                return winograd.conv3x3_winograd(x, kernel, self.batch_tile, tile)
        return conv2d_gemm_vjp(x, kernel, self.stride, self.pad, self.batch_tile)
