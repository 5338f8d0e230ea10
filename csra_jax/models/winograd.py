"""A 3x3, stride-1, pad-1 convolution by Winograd's minimal filtering, F(2x2, 3x3).

Each 2x2 output tile is ``A^T [(G w G^T) * (B^T d B)] A`` over its 4x4 input tile ``d``:
16 GEMMs of (tiles x C_in) @ (C_in x C_out), one per point of the transformed tile, in
place of the direct convolution's 36 multiply-adds per tile and channel pair (2.25x fewer
FLOPs), plus additions that transform the input, the kernel and the output. On XLA:CPU
the GEMMs run at its dot speed; the transforms are memory passes, so it only pays where
the maps are small and the channels many (``bench/conv_backward.py --forward_forms``).

The backward pass is written out: the input gradient of a stride-1, pad-1 3x3
convolution is the same kind of convolution of the output gradient with the flipped,
in/out-swapped kernel, so it runs through Winograd too; the weight gradient is
``conv.weight_grad`` (GEMMs over shifted windows, tiled over the batch). Results differ
from a direct convolution by float rounding only (about 1e-6 relative in float32).
"""

from __future__ import annotations

import functools
from typing import List

import jax
import jax.numpy as jnp
from jax import lax

from csra_jax.models.conv import weight_grad


def _data_transform(a: jax.Array, axis: int, tiles: int) -> List[jax.Array]:
    """``B^T d`` along ``axis`` (length 2 * tiles + 2): the 4 rows of every tile."""
    pairs = a.reshape(a.shape[:axis] + (tiles + 1, 2) + a.shape[axis + 1:])
    lo = lax.slice_in_dim(pairs, 0, tiles, axis=axis)       # rows 2t, 2t+1
    hi = lax.slice_in_dim(pairs, 1, tiles + 1, axis=axis)   # rows 2t+2, 2t+3
    d0, d1 = (lax.index_in_dim(lo, k, axis + 1, keepdims=False) for k in (0, 1))
    d2, d3 = (lax.index_in_dim(hi, k, axis + 1, keepdims=False) for k in (0, 1))
    return [d0 - d2, d1 + d2, d2 - d1, d1 - d3]


def _kernel_transform(w: jax.Array) -> List[jax.Array]:
    """``G w`` along the leading axis (written as additions: an einsum with the 4x3 G
    lowers to transposes of the whole kernel, 15x slower at 512 channels)."""
    return [w[0], (w[0] + w[1] + w[2]) * 0.5, (w[0] - w[1] + w[2]) * 0.5, w[2]]


def _winograd(x: jax.Array, w: jax.Array) -> jax.Array:
    n, h, wd, c = x.shape
    th, tw = (h + 1) // 2, (wd + 1) // 2
    xp = jnp.pad(x, ((0, 0), (1, 1 + 2 * th - h), (1, 1 + 2 * tw - wd), (0, 0)))
    v = jnp.stack([col for row in _data_transform(xp, 1, th)
                   for col in _data_transform(row, 2, tw)]).reshape(16, n * th * tw, c)
    u = jnp.stack([col for row in _kernel_transform(w)
                   for col in _kernel_transform(row)]).reshape(16, c, -1)
    m = lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))),
                        preferred_element_type=x.dtype).reshape(4, 4, n, th, tw, -1)
    # A^T m A: rows, then columns, interleaved back into the (n, 2*th, 2*tw) map.
    rows = [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]
    y = jnp.stack([jnp.stack([r[0] + r[1] + r[2], r[1] - r[2] - r[3]], 3) for r in rows], 2)
    return y.reshape(n, 2 * th, 2 * tw, -1)[:, :h, :wd]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv3x3_winograd(x: jax.Array, w: jax.Array, batch_tile: int = 2) -> jax.Array:
    """NHWC x (3, 3, C_in, C_out) convolution, stride 1, padding 1, no bias."""
    if w.shape[:2] != (3, 3) or x.ndim != 4 or x.shape[-1] != w.shape[2]:
        raise ValueError(f"conv3x3_winograd: needs NHWC x and a (3, 3, C_in, C_out) kernel "
                         f"with C_in = x's channels; got x {x.shape}, kernel {w.shape}")
    return _winograd(x, w)


def _fwd(x, w, batch_tile):
    return conv3x3_winograd(x, w, batch_tile), (x, w)


def _bwd(batch_tile, res, g):
    x, w = res
    dx = _winograd(g, jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2))
    dw = weight_grad(x, g, 3, 3, 1, 1, batch_tile)
    return dx.astype(x.dtype), dw.astype(w.dtype)


conv3x3_winograd.defvjp(_fwd, _bwd)
