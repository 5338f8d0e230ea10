"""Position-embedding resampling that matches PyTorch's F.interpolate bit for bit (f32).

timm resizes a ViT's position grid with ``F.interpolate(mode="bicubic", antialias=True)``
when a 224 checkpoint is loaded at another size. ``jax.image.resize`` uses a different
cubic (a=-0.5 Keys without PIL's edge renormalisation), so we build PyTorch's separable
weight matrices in numpy instead: the antialiased path follows PIL (a=-0.5, weights
renormalised at the borders), the plain path torch's classic cubic (a=-0.75, clamped
indices).
"""

from __future__ import annotations

import math

import numpy as np


def _cubic_aa(x: np.ndarray) -> np.ndarray:
    a = -0.5
    x = np.abs(x)
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def _cubic_torch(t: float, a: float = -0.75) -> list:
    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _weights_antialias(in_size: int, out_size: int) -> np.ndarray:
    scale = in_size / out_size
    support = 2.0 * scale if scale >= 1.0 else 2.0
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    w = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        taps = _cubic_aa((np.arange(xmin, xmax) - center + 0.5) * invscale)
        w[i, xmin:xmax] = taps / taps.sum()
    return w


def _weights_plain(in_size: int, out_size: int) -> np.ndarray:
    scale = in_size / out_size
    w = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        src = (i + 0.5) * scale - 0.5
        i0 = math.floor(src)
        for k, tap in enumerate(_cubic_torch(src - i0)):
            w[i, min(max(i0 - 1 + k, 0), in_size - 1)] += tap
    return w


def resize_bicubic(grid: np.ndarray, out_hw: tuple, antialias: bool = True) -> np.ndarray:
    """Resizes a (h, w, d) grid to (out_h, out_w, d) as torch's bicubic F.interpolate."""
    make = _weights_antialias if antialias else _weights_plain
    wh = make(grid.shape[0], out_hw[0])
    ww = make(grid.shape[1], out_hw[1])
    out = np.einsum("oh,hwd->owd", wh, grid.astype(np.float64))
    out = np.einsum("pw,owd->opd", ww, out)
    return out.astype(grid.dtype)


def resample_pos_embed(pos_embed: np.ndarray, num_tokens: int, num_prefix_tokens: int = 1,
                       antialias: bool = True) -> np.ndarray:
    """(1, prefix + g0*g0, d) -> (1, num_tokens, d), keeping the class token."""
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    g0 = math.isqrt(grid.shape[1])
    g1 = math.isqrt(num_tokens - num_prefix_tokens)
    if g0 * g0 != grid.shape[1] or g1 * g1 != num_tokens - num_prefix_tokens:
        raise ValueError(f"pos_embed grid is not square: {grid.shape[1]} tokens -> "
                         f"{num_tokens - num_prefix_tokens} tokens.")
    grid = resize_bicubic(grid[0].reshape(g0, g0, -1), (g1, g1), antialias=antialias)
    return np.concatenate([prefix, grid.reshape(1, g1 * g1, -1)], axis=1)
