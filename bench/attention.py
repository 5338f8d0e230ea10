"""One ViT attention layer's core, our lowerings against PyTorch's, timed apart.

  python bench/attention.py                 # ViT-B/16 at 224 px, batch 8: (8, 197, 12, 64)
  python bench/attention.py --quick         # smoke: small shapes, 2 rounds

From a (B, N, 3 * heads * d) qkv tensor (what the ViT's qkv Dense gives) to the
(B, N, heads * d) input of its output projection, as in ``csra_jax.models.vit``:
``multi_head_attention`` with ``impl="jax"`` (``jax.nn.dot_product_attention``) and
``impl="cpu"`` (the heads-major formulation), jitted; and PyTorch's
``scaled_dot_product_attention`` on the same tensor, split as timm splits it. Each is
timed for the forward ("eval") and for the forward plus the gradient of the qkv tensor
("train"), all calls round-robin in one process. Prints median milliseconds, the ratio
to PyTorch and the largest difference of each output from PyTorch's.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import torch

import common  # bench/common.py (sets up sys.path for csra_jax)

from csra_jax.models.attention import multi_head_attention  # noqa: E402

IMPLS = ("jax", "cpu")


def _ours(impl, b, n, heads, d):
    def forward(qkv):
        t = qkv.reshape(b, n, 3, heads, d)
        return multi_head_attention(t[:, :, 0], t[:, :, 1], t[:, :, 2], impl).reshape(b, n, -1)
    train = jax.jit(lambda qkv, g: jax.vjp(forward, qkv)[1](g)[0])
    return jax.jit(forward), train


def _torch(b, n, heads, d):
    def forward(qkv):  # timm's Attention.forward, fused_attn path
        q, k, v = qkv.reshape(b, n, 3, heads, d).permute(2, 0, 3, 1, 4).unbind(0)
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return out.transpose(1, 2).reshape(b, n, heads * d)

    def eval_fn(qkv, g):
        with torch.no_grad():
            return forward(qkv)

    def train_fn(qkv, g):
        x = qkv.detach().requires_grad_(True)
        forward(x).backward(g)
        return x.grad
    return eval_fn, train_fn


def main(argv=None):
    p = common.doc_parser(__doc__)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tokens", type=int, default=197)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--head_dim", type=int, default=64)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="smoke: small shapes, 2 rounds")
    a = p.parse_args(argv)
    b, n, heads, d, rounds = ((2, 17, 2, 8, 2) if a.quick else
                              (a.batch, a.tokens, a.heads, a.head_dim, a.rounds))
    print(f"# {common.describe_machine()}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    rng = np.random.default_rng(0)
    qkv = rng.standard_normal((b, n, 3 * heads * d)).astype(np.float32)
    grad = rng.standard_normal((b, n, heads * d)).astype(np.float32)
    jx, tx = (jnp.asarray(qkv), jnp.asarray(grad)), (torch.from_numpy(qkv), torch.from_numpy(grad))
    fns, args = {}, {}
    for impl in IMPLS:
        fns[f"{impl} eval"], fns[f"{impl} train"] = _ours(impl, b, n, heads, d)
        args[f"{impl} eval"], args[f"{impl} train"] = jx[:1], jx
    fns["torch eval"], fns["torch train"] = _torch(b, n, heads, d)
    args["torch eval"] = args["torch train"] = tx
    results = {k: np.asarray(f(*args[k])) for k, f in fns.items()}  # compiles + warms
    times = common.interleaved({k: (lambda f=f, k=k: f(*args[k])) for k, f in fns.items()},
                               rounds)
    rows = []
    for impl in IMPLS + ("torch",):
        for step in ("eval", "train"):
            key, ref = f"{impl} {step}", f"torch {step}"
            ms, ms_ref = 1e3 * common.median(times[key]), 1e3 * common.median(times[ref])
            diff = float(np.abs(results[key] - results[ref]).max())
            rows.append([impl, step, f"{ms:.2f}", f"{ms_ref / ms:.2f}x", common.spread(times[key]),
                         f"{diff:.1e}"])
    print(f"# (B, N, heads, d) = ({b}, {n}, {heads}, {d}); medians of {rounds} "
          f"interleaved rounds; 'train' = forward + gradient of qkv")
    print(common.markdown_table(["impl", "step", "ms", "speed vs torch", "spread",
                                 "max |diff| vs torch"], rows))


if __name__ == "__main__":
    main()
