"""A ViT MLP block's gradient, with autodiff's Dense weight gradient and with the
swapped one (``csra_jax.models.dense``), timed apart.

  python bench/dense_backward.py            # vit_b16@224 b8: (8, 197, 768 -> 3072 -> 768)
  python bench/dense_backward.py --quick    # smoke: small shapes, 2 rounds

The gradient of sum(sin(fc2(gelu(fc1(sin(x)))))) with respect to both kernels and x
(the sines make the layers' inputs and output gradients intermediates whose layout XLA
chooses, as in a network), jitted, the two variants round-robin in one process. ``autodiff`` is ``x @ W`` differentiated by JAX
(what ``nn.Dense`` does), ``swapped`` is ``dense_dot``. Prints median milliseconds,
their ratio, the number of transposed copies of a (features, tokens) gradient in each
compiled step, and the largest difference between the two kernel gradients.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp

import common  # bench/common.py (sets up sys.path for csra_jax)

from csra_jax.models.dense import _dot_last, dense_dot  # noqa: E402
from csra_jax.models.vit import gelu_erf  # noqa: E402


def _grad_fn(dot):
    def loss(w1, w2, x):
        return jnp.sum(jnp.sin(dot(gelu_erf(dot(jnp.sin(x), w1)), w2)))
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


def main(argv=None):
    p = common.doc_parser(__doc__)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tokens", type=int, default=197)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--hidden", type=int, default=3072)
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--quick", action="store_true", help="smoke: small shapes, 2 rounds")
    a = p.parse_args(argv)
    b, n, d, h, rounds = ((2, 12, 16, 64, 2) if a.quick else
                          (a.batch, a.tokens, a.dim, a.hidden, a.rounds))
    print(f"# {common.describe_machine()}")
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (b, n, d))  # (batch, tokens, dim), as in the ViT
    w1 = jax.random.normal(keys[1], (d, h)) * 0.02
    w2 = jax.random.normal(keys[2], (h, d)) * 0.02
    fns = {"autodiff": _grad_fn(_dot_last), "swapped": _grad_fn(dense_dot)}
    grads = {k: f(w1, w2, x) for k, f in fns.items()}
    copies = {k: len(re.findall(rf"= f32\[\d+,{b * n}\]\{{1,0\}} (?:copy|bitcast|fusion)\(",
                                f.lower(w1, w2, x).compile().as_text()))
              for k, f in fns.items()}
    times = common.interleaved({k: (lambda f=f: f(w1, w2, x)) for k, f in fns.items()}, rounds)
    diff = max(float(jnp.abs(a - b).max()) for a, b in zip(grads["autodiff"], grads["swapped"]))
    ms = {k: 1e3 * common.median(t) for k, t in times.items()}
    print(f"# ({b}, {n}, {d} -> {h} -> {d}), medians of {rounds} interleaved rounds")
    print(common.markdown_table(
        ["variant", "ms", "ratio", "spread", "transposed gradient copies", "max |diff|"],
        [[k, f"{ms[k]:.1f}", f"{ms[k] / ms['autodiff']:.3f}", common.spread(times[k]),
          copies[k], f"{diff:.1e}" if k == "swapped" else "-"] for k in fns]))


if __name__ == "__main__":
    main()
