"""The max-pool backward pass, XLA's select-and-scatter vs the masked one, timed apart.

  python bench/pool_backward.py              # the demo's two pools and resnet's stem pool
  python bench/pool_backward.py --quick      # smoke: small shapes, 2 rounds

For each shape: the gradient of ``csra_jax.models.pooling.max_pool`` with ``impl="xla"``
and ``impl="masked"`` on the same ReLU'd input (so ties occur), jitted, timed round-robin;
prints the median milliseconds, their ratio and the largest difference between the two
gradients (0: bit-identical).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp

import common  # bench/common.py (sets up sys.path for csra_jax)
from conv_backward import interleaved

from csra_jax.models.pooling import max_pool  # noqa: E402  (after common's sys.path)

# (batch, height, width, channels, window, stride, pad)
SHAPES = [(32, 64, 64, 32, 2, 2, 0),    # small_cnn@128 b32, first pool
          (32, 32, 32, 64, 2, 2, 0),    # small_cnn@128 b32, second pool
          (4, 224, 224, 64, 3, 2, 1)]   # resnet stem pool at 448 px, batch 4
QUICK = [(2, 16, 16, 8, 2, 2, 0), (2, 17, 17, 8, 3, 2, 1)]


def main(argv=None):
    p = common.doc_parser(__doc__)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="smoke: small shapes, 2 rounds")
    a = p.parse_args(argv)
    shapes, rounds = (QUICK, 2) if a.quick else (SHAPES, a.rounds)
    print(f"# {common.describe_machine()}")
    rows = []
    for b, h, w, c, k, s, pad in shapes:
        x = jax.nn.relu(jax.random.normal(jax.random.key(0), (b, h, w, c)))
        g = jax.random.normal(jax.random.key(1), max_pool(x, k, s, pad, "xla").shape)
        fns = {impl: jax.jit(lambda x, g, impl=impl: jax.vjp(
            lambda x: max_pool(x, k, s, pad, impl), x)[1](g)[0]) for impl in ("xla", "masked")}
        diff = float(jnp.max(jnp.abs(fns["masked"](x, g) - fns["xla"](x, g))))
        ts = interleaved(fns, (x, g), rounds)
        ms = {impl: 1e3 * common.median(t) for impl, t in ts.items()}
        rows.append([f"{b}x{h}x{w}x{c} {k}x{k} s{s} p{pad}", f"{ms['xla']:.1f}",
                     f"{ms['masked']:.1f}", f"{ms['masked'] / ms['xla']:.2f}", f"{diff:.1e}"])
    print(common.markdown_table(["input, window", "xla ms", "masked ms", "ratio",
                                 "max |diff|"], rows))


if __name__ == "__main__":
    main()
