r"""When does a small CNN trained from scratch leave the label prior? A fast in-memory probe.

    python bench/first_epoch_probe.py --variant heldout --steps 62 248
    python bench/first_epoch_probe.py --variant heldout --steps 62 248 --widths 64 128 256
    python bench/first_epoch_probe.py --variant heldout --steps 62 248 --stem_stride 1 --widths 16 32 64 128
    python bench/first_epoch_probe.py --quick                     # smoke, < 1 minute

``bench/from_scratch.py`` runs the library's whole training loop, so it can only try what
the config exposes. This probe renders a ``bench/small_object_sets.py`` variant straight
into memory (the same pixels its PNGs hold), trains the demo's network shape with knobs
the config does not have (widths, stem stride, extra 3x3 convs per stage, strided convs
instead of max-pools, per-image input normalisation) under the demo recipe's optimizer
(AdamW, linear warm-up then cosine over ``--total`` steps, decoupled weight decay), and
prints the test mAP and the mean training loss of the last 10 steps at each of
``--steps``, against the label-prior entropy H (a loss at H: the net predicts only the
label frequencies). The defaults are ``configs/demo.py``'s: SmallCNN widths 32/64/128,
stem stride 2, max-pools, BN momentum 0.1 (torch's convention), batch 32, lr 1e-3 with a
62-step (one-epoch) warm-up, 496 steps in all, weight decay 0.05, CSRA with one head
and lambda 0.1 or GAP, random horizontal flips; the random-resized crop is left out.
Two differences from the demo: the input is normalised with ImageNet's mean and std
(``--input_norm imagenet``; the demo's ``resnet`` normalisation is x / 255), and the 3x3
convolutions use XLA's own backward (``conv_impl="xla"``; the same maths).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.dirname(_HERE)]

import numpy as np  # noqa: E402


def render_split(variant, split: str, count: int):
    from small_object_sets import render
    pairs = [render(variant, split, i) for i in range(count)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]).astype(np.float32)


def normalise(x: np.ndarray, how: str) -> np.ndarray:
    """uint8 images -> float32: a ``data.normalization`` of the library, or ``"image"``."""
    from csra_jax.data.transforms import normalize, resolve_normalization
    if how != "image":
        return normalize(x, *resolve_normalization(how))
    x = x.astype(np.float32)
    mean, std = x.mean((1, 2, 3), keepdims=True), x.std((1, 2, 3), keepdims=True)
    return (x - mean) / (std + 1.0)  # each image to zero mean, unit variance


def make_model(a, num_classes: int):
    import flax.linen as nn
    from csra_jax.models.csra import CSRAHead
    from csra_jax.models.gap import GAPHead
    from csra_jax.models.resnet import _bn, _conv

    class Probe(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            kw = dict(dtype=x.dtype, param_dtype=x.dtype)
            conv = lambda w, s, name: _conv(w, 3, s, 1, name=name, **kw)  # noqa: E731
            bn = lambda name: _bn(train, name=name, **kw)  # noqa: E731
            x = nn.relu(bn("stem_bn")(conv(a.widths[0], a.stem_stride, "stem_conv")(x)))
            for i, width in enumerate(a.widths):
                if i:  # as SmallCNN: halve the map, then a conv to the new width
                    if a.downsample == "maxpool":
                        x = nn.max_pool(x, (2, 2), (2, 2))
                    stride = 2 if a.downsample == "stride" else 1
                    x = nn.relu(bn(f"stage{i}_bn0")(conv(width, stride, f"stage{i}_conv0")(x)))
                for j in range(1 + a.extra_convs):
                    x = nn.relu(bn(f"stage{i}_bn1_{j}")(conv(width, 1, f"stage{i}_conv1_{j}")(x)))
            if a.head == "gap":
                return GAPHead(num_classes=num_classes)(x)
            return CSRAHead(num_classes=num_classes, num_heads=1, lam=a.lam)(x)

    return Probe()


def run(a) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import optax
    from csra_jax.metrics import average_precision
    from csra_jax.train.stall import prior_entropy
    from small_object_sets import VARIANTS

    v = VARIANTS[a.variant]
    v = dataclasses.replace(v, num_train=a.num_train or v.num_train, num_test=a.num_test or v.num_test)
    xtr, ytr = render_split(v, "train", v.num_train)
    xte, yte = render_split(v, "test", v.num_test)
    xtr, xte = normalise(xtr, a.input_norm), normalise(xte, a.input_norm)
    model = make_model(a, ytr.shape[1])
    variables = model.init(jax.random.PRNGKey(a.seed), jnp.zeros((1,) + xtr.shape[1:]))
    params, stats = variables["params"], variables["batch_stats"]
    warm = min(a.warmup_steps, a.total)
    lr = optax.join_schedules([optax.linear_schedule(0.0, a.lr, warm),
                               optax.cosine_decay_schedule(a.lr, max(a.total - warm, 1))], [warm])
    tx = optax.adamw(lr, b1=0.9, weight_decay=a.weight_decay)
    opt = tx.init(params)

    @jax.jit
    def train_step(params, stats, opt, x, y):
        def loss_fn(p):
            logits, new = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                                      mutable=["batch_stats"])
            return optax.sigmoid_binary_cross_entropy(logits, y).mean(), new["batch_stats"]
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), stats, opt, loss

    eval_step = jax.jit(lambda p, s, x: model.apply({"params": p, "batch_stats": s}, x))
    rng = np.random.default_rng(a.seed)
    order, losses, rows, start = np.zeros(0, int), [], [], time.time()
    for step in range(1, max(a.steps) + 1):
        if len(order) < a.batch:  # epochs: fresh permutations, no image twice per epoch
            order = np.concatenate([order, rng.permutation(len(xtr))])
        idx, order = order[:a.batch], order[a.batch:]
        x = xtr[idx]
        flip = rng.random(a.batch) < 0.5
        x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
        params, stats, opt, loss = train_step(params, stats, opt, jnp.asarray(x), jnp.asarray(ytr[idx]))
        losses.append(float(loss))
        if step in a.steps:
            logits = np.concatenate([np.asarray(eval_step(params, stats, jnp.asarray(xte[i:i + 100])))
                                     for i in range(0, len(xte), 100)])
            rows.append({"step": step, "mAP": 100 * float(np.nanmean(average_precision(logits, yte))),
                         "loss": float(np.mean(losses[-10:])), "H": prior_entropy(yte.mean(0)),
                         "wall_s": time.time() - start})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", default="heldout", help="a bench/small_object_sets.py variant")
    p.add_argument("--num_train", type=int, default=0, help="override the variant's train size")
    p.add_argument("--num_test", type=int, default=0)
    p.add_argument("--head", default="csra", choices=["csra", "gap"])
    p.add_argument("--lam", type=float, default=0.1)
    p.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--stem_stride", type=int, default=2)
    p.add_argument("--extra_convs", type=int, default=0, help="more 3x3 convs per stage")
    p.add_argument("--downsample", default="maxpool", choices=["maxpool", "stride"])
    p.add_argument("--input_norm", default="imagenet",
                   choices=["resnet", "vit", "imagenet", "image"],
                   help="the library's data.normalization names, or per-image; "
                        "configs/demo.py uses resnet ([0, 1])")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup_steps", type=int, default=62)
    p.add_argument("--weight_decay", type=float, default=0.05)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--total", type=int, default=496, help="steps of the lr schedule")
    p.add_argument("--steps", type=int, nargs="+", default=[62, 248], help="evaluate here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke: 64 images, 4 steps")
    a = p.parse_args(argv)
    if a.quick:
        a.num_train, a.num_test, a.steps, a.total, a.warmup_steps = 64, 32, [2, 4], 4, 2
    a.steps = sorted(set(a.steps))
    settings = {k: getattr(a, k) for k in ("variant", "head", "lam", "widths", "stem_stride",
                                           "extra_convs", "downsample", "input_norm", "lr",
                                           "warmup_steps", "weight_decay", "batch", "seed")}
    print(f"settings {settings}", flush=True)
    print("| step | mAP | loss (last 10 steps) | H | loss / H | wall s |")
    print("|---|---|---|---|---|---|")
    for r in run(a):
        print(f"| {r['step']} | {r['mAP']:.1f} | {r['loss']:.4f} | {r['H']:.4f} "
              f"| {r['loss'] / r['H']:.3f} | {r['wall_s']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
