"""A 3x3, stride-1, pad-1 convolution by Winograd's minimal filtering, F(m x m, 3x3).

Each m x m output tile is ``A^T [(G w G^T) * (B^T d B)] A`` over its (m+2) x (m+2) input
tile ``d``: (m+2)^2 GEMMs of (tiles x C_in) @ (C_in x C_out), one per point of the
transformed tile, in place of the direct convolution's 9 m^2 multiply-adds per tile and
channel pair: 2.25x fewer FLOPs for F(2x2, 3x3), 4x for F(4x4, 3x3), plus additions
that transform the input, the kernel and the output. On XLA:CPU the GEMMs run at its dot
speed and the transforms are memory passes, so it pays only where the GEMMs are large:
``winograd_tile`` picks m per convolution shape from timings on CPU
(``bench/conv_backward.py --forward_forms``).

The backward pass is written out: the input gradient of a stride-1, pad-1 3x3
convolution is the same kind of convolution of the output gradient with the flipped,
in/out-swapped kernel, so it runs through Winograd too; the weight gradient is
``conv.weight_grad`` (GEMMs over shifted windows, tiled over the batch). Results differ
from a direct convolution by float rounding only: about 1e-6 relative in float32 for
m = 2, 1e-5 for m = 4 (its transforms have entries up to 8 and 1/24).
"""

from __future__ import annotations

import functools
from typing import List, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from csra_jax.models.conv import weight_grad
from csra_jax.models.dense import accumulating_dot

# (B^T, G, A^T) of F(2x2, 3x3) and F(4x4, 3x3) (interpolation points 0, +-1 / 0, +-1, +-2).
_MATRICES = {
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
         [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}
TILES = tuple(_MATRICES)
# Below these sizes the transforms' memory passes outweigh the FLOPs saved (see
# winograd_tile): GEMMs with fewer rows (tiles) than channels, or under 128 channels.
MIN_CHANNELS = 128


def winograd_tile(batch: int, height: int, width: int, c_in: int, c_out: int,
                  dtype=jnp.float32) -> int:
    """The output tile m (4 or 2) to run this 3x3 stride-1 convolution with, 0: direct.

    Each of the (m+2)^2 GEMMs has batch * ceil(H/m) * ceil(W/m) rows (tiles) and the
    transformed kernel is (m+2)^2 C_in C_out values, rebuilt every call; once there are
    fewer rows than channels that kernel's memory pass costs more than the FLOPs saved
    (resnet layer4 at 7x7 or 14x14: 1.0-1.7x the direct time), and under 128 channels the
    GEMMs are too thin to run at dot speed. F(4x4) only in float32: its transforms'
    rounding (entries up to 8) is too coarse for bfloat16.
    """
    channels = min(c_in, c_out)
    if channels < MIN_CHANNELS:
        return 0
    for m in TILES[::-1]:
        if m == 4 and jnp.dtype(dtype) != jnp.float32:
            continue
        if batch * -(-height // m) * -(-width // m) >= channels:
            return m
    return 0


def _combine(parts: Sequence[jax.Array], matrix) -> List[jax.Array]:
    """``matrix @ parts`` for a small constant matrix, as scaled additions (an einsum
    lowers to transposes of the whole operand: 15x slower on the 512-channel kernel)."""
    out = []
    for row in matrix:
        terms = [p if c == 1 else -p if c == -1 else p * c for c, p in zip(row, parts) if c]
        out.append(functools.reduce(lambda a, b: a + b, terms))
    return out


def _tile_rows(a: jax.Array, axis: int, tiles: int, m: int) -> List[jax.Array]:
    """The m + 2 rows along ``axis`` (length m * (tiles + 1)) of every tile t: rows
    m t .. m t + m + 1, as m + 2 arrays with ``tiles`` along ``axis``."""
    groups = a.reshape(a.shape[:axis] + (tiles + 1, m) + a.shape[axis + 1:])
    lo = lax.slice_in_dim(groups, 0, tiles, axis=axis)       # rows m t .. m t + m - 1
    hi = lax.slice_in_dim(groups, 1, tiles + 1, axis=axis)   # rows m t + m, m t + m + 1
    return ([lax.index_in_dim(lo, k, axis + 1, keepdims=False) for k in range(m)]
            + [lax.index_in_dim(hi, k, axis + 1, keepdims=False) for k in range(2)])


def _winograd(x: jax.Array, w: jax.Array, m: int) -> jax.Array:
    bt, g, at = (np.asarray(a, np.float64) for a in _MATRICES[m])
    n, h, wd, c = x.shape
    p = m + 2
    th, tw = -(-h // m), -(-wd // m)
    xp = jnp.pad(x, ((0, 0), (1, m * (th + 1) - h - 1), (1, m * (tw + 1) - wd - 1), (0, 0)))
    v = jnp.stack([col for row in _combine(_tile_rows(xp, 1, th, m), bt)
                   for col in _combine(_tile_rows(row, 2, tw, m), bt)])
    u = jnp.stack([col for row in _combine([w[0], w[1], w[2]], g)
                   for col in _combine([row[0], row[1], row[2]], g)])
    prod = accumulating_dot(v.reshape(p * p, n * th * tw, c), u.reshape(p * p, c, -1),
                            (((2,), (1,)), ((0,), (0,))))
    prod = prod.reshape(p, p, n, th, tw, -1)
    # A^T prod A: rows, then columns, interleaved back into the (n, m th, m tw) map.
    rows = _combine([prod[i] for i in range(p)], at)
    y = jnp.stack([jnp.stack(_combine([r[i] for i in range(p)], at), 3) for r in rows], 2)
    return y.reshape(n, m * th, m * tw, -1)[:, :h, :wd]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv3x3_winograd(x: jax.Array, w: jax.Array, batch_tile: int = 2,
                     tile: int = 2) -> jax.Array:
    """NHWC x (3, 3, C_in, C_out) convolution, stride 1, padding 1, no bias, by
    F(tile x tile, 3x3); ``batch_tile``: the weight gradient's batch tile."""
    if w.shape[:2] != (3, 3) or x.ndim != 4 or x.shape[-1] != w.shape[2]:
        raise ValueError(f"conv3x3_winograd: needs NHWC x and a (3, 3, C_in, C_out) kernel "
                         f"with C_in = x's channels; got x {x.shape}, kernel {w.shape}")
    if tile not in _MATRICES:
        raise ValueError(f"conv3x3_winograd: tile={tile!r}; valid: {', '.join(map(str, TILES))}")
    return _winograd(x, w, tile)


def _fwd(x, w, batch_tile, tile):
    return conv3x3_winograd(x, w, batch_tile, tile), (x, w)


def _bwd(batch_tile, tile, res, g):
    x, w = res
    dx = _winograd(g, jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2), tile)
    dw = weight_grad(x, g, 3, 3, 1, 1, batch_tile)
    return dx.astype(x.dtype), dw.astype(w.dtype)


conv3x3_winograd.defvjp(_fwd, _bwd)
