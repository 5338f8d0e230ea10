"""A 3x3 convolution's forward + backward, XLA's own derivative vs ``conv2d_gemm_vjp``
(weight gradient as per-tap GEMMs tiled over the batch), on resnet101@448 batch-4 shapes.

  python bench/conv_backward.py --rounds 8
  python bench/conv_backward.py --parts --shapes small_cnn   # XLA's fwd / dx / dw apart
  python bench/conv_backward.py --forward_forms              # the forward as GEMMs?

One process, calls interleaved round-robin (start rotates each round); prints the median
time of ``jax.grad`` of sum(conv(x, w)^2) w.r.t. (x, w), the median per-round ratio to
XLA's, and the largest gradient difference relative to XLA's. ``--parts`` instead times
XLA's forward, its input gradient alone and its weight gradient alone (each from a
fixed cotangent) and prints their GFLOP/s. ``--forward_forms`` times XLA's forward
against the same convolution written as GEMMs: one per kernel tap over the shifted input
window, summed, and one over the nine windows concatenated (im2col); and, for stride 1,
Winograd F(2x2, 3x3) and F(4x4, 3x3) (``csra_jax.models.winograd``, also timed in the
default mode with its written-out backward); each row names the tile ``winograd_tile``
picks for the shape (0: the direct convolution), the rule ``conv_impl="winograd"`` uses.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
from jax import lax

from csra_jax.models.conv import conv2d_gemm_vjp
from csra_jax.models.winograd import TILES, conv3x3_winograd, winograd_tile

# (batch, H, W, C_in, C_out, stride): the 3x3 convs of resnet101's four stages at 448.
SHAPES = {
    "resnet101": [(4, 112, 112, 64, 64, 1), (4, 112, 112, 128, 128, 2),
                  (4, 56, 56, 128, 128, 1), (4, 28, 28, 256, 256, 1), (4, 14, 14, 512, 512, 1)],
    # the same at 224, batch 8
    "resnet101_224": [(8, 56, 56, 64, 64, 1), (8, 28, 28, 128, 128, 1),
                      (8, 14, 14, 256, 256, 1), (8, 7, 7, 512, 512, 1)],
    # the demo's small_cnn at 128 px, batch 32 (its stem: 3 -> 32 channels, stride 2)
    "small_cnn": [(32, 128, 128, 3, 32, 2), (32, 64, 64, 32, 32, 1), (32, 32, 32, 32, 64, 1),
                  (32, 32, 32, 64, 64, 1), (32, 16, 16, 64, 128, 1),
                  (32, 16, 16, 128, 128, 1)],
}


def xla_conv(x, w, stride, pad):
    return lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def interleaved(fns, args, rounds):
    """Median seconds per call and per-round times of each fn, round-robin."""
    ts = {k: [] for k in fns}
    names = list(fns)
    for f in fns.values():  # compile + warm
        jax.block_until_ready(f(*args))
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            jax.block_until_ready(fns[k](*args))
            ts[k].append(time.perf_counter() - t0)
    return ts


def parts(shape, rounds):
    """XLA's forward, input gradient and weight gradient of one conv, timed apart."""
    b, h, wd, c, o, s = shape
    x = jax.random.normal(jax.random.key(0), (b, h, wd, c))
    w = jax.random.normal(jax.random.key(1), (3, 3, c, o)) * 0.05
    g = jax.random.normal(jax.random.key(2), xla_conv(x, w, s, 1).shape)
    fns = {"fwd": jax.jit(lambda x, w, g: xla_conv(x, w, s, 1)),
           "dx": jax.jit(lambda x, w, g: jax.vjp(lambda x: xla_conv(x, w, s, 1), x)[1](g)[0]),
           "dw": jax.jit(lambda x, w, g: jax.vjp(lambda w: xla_conv(x, w, s, 1), w)[1](g)[0])}
    ts = interleaved(fns, (x, w, g), rounds)
    gflop = 2 * g.size * 9 * c / 1e9
    cells = [f"{k} {1e3 * statistics.median(v):.1f} ms ({gflop / statistics.median(v):.0f} "
             "GFLOP/s)" for k, v in ts.items()]
    print(f"{b}x{h}x{wd}x{c}->{o} s{s} ({gflop:.2f} GFLOP each): " + ", ".join(cells), flush=True)


def _windows(x, stride):
    """The nine shifted (strided) windows of a 3x3, pad-1 convolution's input."""
    b, h, wd, _ = x.shape
    ho, wo = (h - 1) // stride + 1, (wd - 1) // stride + 1
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return [xp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            for i in range(3) for j in range(3)]


def forward_forms(shape, rounds):
    """XLA's 3x3 forward vs per-tap GEMMs vs one im2col GEMM, same inputs."""
    b, h, wd, c, o, s = shape
    x = jax.random.normal(jax.random.key(0), (b, h, wd, c))
    w = jax.random.normal(jax.random.key(1), (3, 3, c, o)) * 0.05
    taps = lambda x, w: sum(jnp.einsum("nhwc,co->nhwo", v, w[k // 3, k % 3])
                            for k, v in enumerate(_windows(x, s)))
    im2col = lambda x, w: jnp.einsum("nhwk,ko->nhwo", jnp.concatenate(_windows(x, s), -1),
                                     w.reshape(9 * c, o))
    fns = {"xla": jax.jit(lambda x, w: xla_conv(x, w, s, 1)), "taps": jax.jit(taps),
           "im2col": jax.jit(im2col)}
    if s == 1:
        fns.update({f"winograd{m}": jax.jit(functools.partial(conv3x3_winograd, tile=m))
                    for m in TILES})
    ref = fns["xla"](x, w)
    err = {k: float(jnp.max(jnp.abs(f(x, w) - ref)) / jnp.max(jnp.abs(ref)))
           for k, f in fns.items()}
    ts = interleaved(fns, (x, w), rounds)
    gflop = 2 * ref.size * 9 * c / 1e9
    cells = [f"{k} {1e3 * statistics.median(v):.1f} ms ({gflop / statistics.median(v):.0f} "
             f"GFLOP/s, ratio {statistics.median(a_ / b_ for a_, b_ in zip(v, ts['xla'])):.2f},"
             f" diff {err[k]:.0e})" for k, v in ts.items()]
    pick = f" (winograd_tile: {winograd_tile(b, h, wd, c, o)})" if s == 1 else ""
    print(f"{b}x{h}x{wd}x{c}->{o} s{s}{pick}: " + "; ".join(cells), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--tiles", default="2,1", help="batch tiles of the weight-gradient GEMMs")
    p.add_argument("--shapes", default="resnet101", choices=sorted(SHAPES))
    p.add_argument("--parts", action="store_true",
                   help="time XLA's forward, input gradient and weight gradient apart")
    p.add_argument("--forward_forms", action="store_true",
                   help="time XLA's forward against per-tap and im2col GEMMs")
    a = p.parse_args()
    if a.forward_forms:
        print(f"# {jax.devices()[0].platform}, {a.rounds} interleaved rounds; ratio = "
              "median per-round time / xla's (< 1: faster)")
        for shape in SHAPES[a.shapes]:
            forward_forms(shape, a.rounds)
        return
    if a.parts:
        print(f"# {jax.devices()[0].platform}, {a.rounds} interleaved rounds, XLA's own conv")
        for shape in SHAPES[a.shapes]:
            parts(shape, a.rounds)
        return
    variants = {"xla": xla_conv}
    for t in a.tiles.split(","):
        variants[f"gemm_vjp tile {t}"] = (
            lambda x, w, s, p, t=int(t): conv2d_gemm_vjp(x, w, s, p, t))
    print(f"# {jax.devices()[0].platform}, {a.rounds} interleaved rounds; "
          "ratio = median per-round time / xla's (< 1: faster)")
    for b, h, wd, c, o, s in SHAPES[a.shapes]:
        kx, kw = jax.random.split(jax.random.key(0))
        x = jax.random.normal(kx, (b, h, wd, c))
        w = jax.random.normal(kw, (3, 3, c, o)) * 0.05
        stride_variants = dict(variants)
        if s == 1:
            stride_variants.update({f"winograd{m}": lambda x, w, s, p, m=m: conv3x3_winograd(
                x, w, 2, m) for m in TILES})
        fns = {k: jax.jit(jax.grad(lambda x, w, f=f: jnp.sum(f(x, w, s, 1) ** 2), (0, 1)))
               for k, f in stride_variants.items()}
        ref = fns["xla"](x, w)
        err = {k: max(float(jnp.max(jnp.abs(u - v)) / jnp.max(jnp.abs(u)))
                      for u, v in zip(ref, f(x, w))) for k, f in fns.items()}
        ts = interleaved(fns, (x, w), a.rounds)
        cells = [f"{k} {1e3 * statistics.median(v):.0f} ms, ratio "
                 f"{statistics.median(a_ / b_ for a_, b_ in zip(v, ts['xla'])):.2f}, "
                 f"grad diff {err[k]:.0e}" for k, v in ts.items()]
        pick = f" (winograd_tile: {winograd_tile(b, h, wd, c, o)})" if s == 1 else ""
        print(f"{b}x{h}x{wd}x{c}->{o} s{s}{pick}: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
