"""optim.name: "sgd" (default, unchanged) or "adamw"; validation and parity."""

import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from csra_jax.config import OPTIMIZERS, base_config, sibling_config, validate_config
from csra_jax.train.optimizer import create_optimizer, torch_sgd


def _config(**overrides):
    cfg = dict(lr_backbone=0.01, lr_head=0.1, momentum=0.9, weight_decay=1e-4,
               decay_bn_and_bias=True, warmup_epochs=1, schedule="cosine",
               lr_step_epochs=4, lr_gamma=0.1, num_epochs=3)
    cfg.update(overrides)
    return types.SimpleNamespace(**cfg)


def _params(seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(rng.normal(size=s).astype(np.float32))
    return {"backbone": {"conv": {"kernel": f(3, 3, 2, 4)}, "bn": {"scale": f(4), "bias": f(4)}},
            "head": {"kernel": f(4, 5)}}


def _grads(params, t):
    # deterministic, step-dependent "gradients"
    return jax.tree_util.tree_map(lambda p: jnp.sin(p * (t + 1.0)) + 0.1 * p, params)


def _run(tx, params, steps):
    state = tx.init(params)
    for t in range(steps):
        updates, state = tx.update(_grads(params, t), state, params)
        params = optax.apply_updates(params, updates)
    return params


def _lr(base, t, spe=4, warm=1, total_epochs=3):
    w, total = warm * spe, total_epochs * spe
    if t < w:
        return base * t / w
    return 0.5 * base * (1 + np.cos(np.pi * min(t - w, total - w) / (total - w)))


def test_default_is_sgd_and_bit_identical_to_the_chain():
    assert base_config().optim.name == "sgd"
    params = _params()
    steps = 9
    a = _run(create_optimizer(_config(), 4)[0], params, steps)
    b = _run(create_optimizer(_config(name="sgd"), 4)[0], params, steps)
    sched_b = create_optimizer(_config(), 4)[1]
    ref = optax.multi_transform(
        {"backbone": torch_sgd(sched_b["backbone"], 0.9, 1e-4),
         "head": torch_sgd(sched_b["head"], 0.9, 1e-4)},
        lambda p: {"backbone": jax.tree_util.tree_map(lambda _: "backbone", p["backbone"]),
                   "head": jax.tree_util.tree_map(lambda _: "head", p["head"])})
    c = _run(ref, params, steps)
    for x, y, z in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b),
                       jax.tree_util.tree_leaves(c)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        np.testing.assert_array_equal(np.asarray(x), np.asarray(z))


def _numpy_adamw(params, steps, lrs, b1=0.9, b2=0.999, eps=1e-8, wd=0.05, decay=lambda path: True):
    """torch.optim.AdamW's update, written out (decoupled decay, bias-corrected moments)."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    ps = [np.asarray(v, np.float64) for _, v in flat]
    m = [np.zeros_like(p) for p in ps]
    v = [np.zeros_like(p) for p in ps]
    paths = [tuple(getattr(k, "key", k) for k in path) for path, _ in flat]
    for t in range(steps):
        g_tree = _grads(jax.tree_util.tree_unflatten(treedef, [jnp.asarray(p, jnp.float32) for p in ps]), t)
        gs = [np.asarray(g, np.float64) for g in jax.tree_util.tree_leaves(g_tree)]
        for i, (path, g) in enumerate(zip(paths, gs)):
            lr = _lr(lrs[path[0]], t)
            if decay(path):
                ps[i] = ps[i] - lr * wd * ps[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            mh, vh = m[i] / (1 - b1 ** (t + 1)), v[i] / (1 - b2 ** (t + 1))
            ps[i] = ps[i] - lr * mh / (np.sqrt(vh) + eps)
    return ps


@pytest.mark.parametrize("decay_bn_and_bias", [True, False])
def test_adamw_matches_the_torch_adamw_update(decay_bn_and_bias):
    params = _params(1)
    cfg = _config(name="adamw", lr_backbone=0.002, lr_head=0.02, weight_decay=0.05,
                  decay_bn_and_bias=decay_bn_and_bias)
    tx, schedules = create_optimizer(cfg, steps_per_epoch=4)
    got = _run(tx, params, 12)
    decay = (lambda path: True) if decay_bn_and_bias else (lambda path: path[-1] == "kernel")
    want = _numpy_adamw(params, 12, {"backbone": 0.002, "head": 0.02}, decay=decay)
    for g, w in zip(jax.tree_util.tree_leaves(got), want):
        np.testing.assert_allclose(np.asarray(g), w, rtol=2e-5, atol=2e-6)
    assert float(schedules["head"](4)) == pytest.approx(0.02)


def test_adamw_matches_torch_when_available():
    torch = pytest.importorskip("torch")
    params = _params(2)
    cfg = _config(name="adamw", lr_backbone=0.003, lr_head=0.003, weight_decay=0.05,
                  warmup_epochs=0, schedule="step", lr_step_epochs=100)
    got = _run(create_optimizer(cfg, steps_per_epoch=4)[0], params, 6)
    leaves = jax.tree_util.tree_leaves(params)
    tp = [torch.nn.Parameter(torch.tensor(np.asarray(p), dtype=torch.float64)) for p in leaves]
    opt = torch.optim.AdamW(tp, lr=0.003, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
    treedef = jax.tree_util.tree_structure(params)
    for t in range(6):
        cur = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(p.detach().numpy(), jnp.float32) for p in tp])
        for p, g in zip(tp, jax.tree_util.tree_leaves(_grads(cur, t))):
            p.grad = torch.tensor(np.asarray(g), dtype=torch.float64)
        opt.step()
    for g, w in zip(jax.tree_util.tree_leaves(got), tp):
        np.testing.assert_allclose(np.asarray(g), w.detach().numpy(), rtol=2e-5, atol=2e-6)


_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "configs", "x.py")


def test_demo_configs_share_one_optimizer_recipe():
    """CSRA vs GAP (and attend-and-rectify) at the same budget: only the head differs."""
    demo = sibling_config(_CONFIGS, "demo")
    validate_config(demo, 1, 1)
    assert demo.optim.name == "adamw"
    for name in ("demo_gap", "demo_attend_rectify"):
        other = sibling_config(_CONFIGS, name)
        assert other.optim.to_dict() == demo.optim.to_dict(), name
        assert (other.num_epochs, other.batch_size) == (demo.num_epochs, demo.batch_size)


def test_unknown_optimizer_name_is_a_clear_error():
    c = sibling_config(_CONFIGS, "demo")
    c.optim.name = "lamb"
    with pytest.raises(ValueError, match=r"optim\.name='lamb'; valid: sgd, adamw"):
        validate_config(c, 1, 1)
    with pytest.raises(ValueError, match=r"optim\.name='lamb'; valid: sgd, adamw"):
        create_optimizer(_config(name="lamb"), 4)
    assert OPTIMIZERS == ("sgd", "adamw")


def test_adamw_rejects_nesterov():
    with pytest.raises(ValueError, match="nesterov"):
        create_optimizer(_config(name="adamw", nesterov=True), 4)
