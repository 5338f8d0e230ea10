"""Optimizer and schedule tests, with parity against real torch.optim.SGD / lr_scheduler."""

import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from csra_jax.train.optimizer import (
    create_optimizer,
    head_label_fn,
    learning_rates,
    warmup_cosine_schedule,
    warmup_step_schedule,
)


def _config(**overrides):
    cfg = dict(
        lr_backbone=0.01,
        lr_head=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        decay_bn_and_bias=True,
        warmup_epochs=2,
        schedule="step",
        lr_step_epochs=4,
        lr_gamma=0.1,
        num_epochs=30,
    )
    cfg.update(overrides)
    return types.SimpleNamespace(**cfg)


def _params(seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(rng.normal(size=s).astype(np.float32))
    return {
        "backbone": {"conv": {"kernel": f(3, 3, 2, 4)}, "bn": {"scale": f(4), "bias": f(4)}},
        "head": {"classifier": {"kernel": f(4, 5), "bias": f(5)}},
    }


# ----------------------------------------------------------------------------- schedules


def test_step_schedule_values():
    fn = warmup_step_schedule(0.1, steps_per_epoch=10, warmup_epochs=2, lr_step_epochs=4, lr_gamma=0.1)
    expected = {
        0: 0.0,  # the official warm-up starts at exactly 0
        1: 0.1 * 1 / 20,
        10: 0.1 * 10 / 20,
        19: 0.1 * 19 / 20,
        20: 0.1,  # warm-up over
        39: 0.1,  # last step of epoch index 3 (the 4th epoch)
        40: 0.01,  # first decay after 4 epochs
        79: 0.01,
        80: 0.001,
        299: 0.1 * 0.1**7,
    }
    for step, lr in expected.items():
        assert float(fn(step)) == pytest.approx(lr, rel=1e-6), step
    no_warmup = warmup_step_schedule(0.1, 10, 0, 5)
    assert float(no_warmup(0)) == pytest.approx(0.1)
    assert float(no_warmup(50)) == pytest.approx(0.01)


class _OfficialWarmUpLR:
    """Reference: the official CSRA ``utils/warmUpLR.py`` (a torch _LRScheduler)."""

    @staticmethod
    def make(torch, optimizer, total_iters):
        class WarmUpLR(torch.optim.lr_scheduler._LRScheduler):
            def __init__(self, optimizer, total_iters, last_epoch=-1):
                self.total_iters = total_iters
                super().__init__(optimizer, last_epoch=last_epoch)

            def get_lr(self):
                return [b * self.last_epoch / (self.total_iters + 1e-8) for b in self.base_lrs]

        return WarmUpLR(optimizer, total_iters)


@pytest.mark.parametrize("warmup_epochs, step_size", [(2, 4), (2, 5), (0, 4), (1, 2)])
def test_step_schedule_matches_official_torch_loop(warmup_epochs, step_size):
    torch = pytest.importorskip("torch")
    ipe, epochs, lr = 3, 13, 0.01
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p1], "lr": lr}, {"params": [p2], "lr": lr * 10}], momentum=0.9, weight_decay=1e-4)
    # Same construction order and stepping as the official main.py.
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=0.1)
    warmup = _OfficialWarmUpLR.make(torch, opt, ipe * warmup_epochs) if warmup_epochs else None
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(1, epochs + 1):
            for _ in range(ipe):
                seen.append([g["lr"] for g in opt.param_groups])
                opt.step()
                if warmup and i <= warmup_epochs:
                    warmup.step()
            scheduler.step()
    seen = np.array(seen)
    ours_b = warmup_step_schedule(lr, ipe, warmup_epochs, step_size)
    ours_h = warmup_step_schedule(lr * 10, ipe, warmup_epochs, step_size)
    steps = jnp.arange(len(seen))
    np.testing.assert_allclose(np.asarray(jax.vmap(ours_b)(steps)), seen[:, 0], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(np.asarray(jax.vmap(ours_h)(steps)), seen[:, 1], rtol=1e-6, atol=1e-12)


def test_cosine_schedule_values():
    fn = warmup_cosine_schedule(0.1, steps_per_epoch=10, warmup_epochs=2, num_epochs=12)
    assert float(fn(0)) == 0.0
    assert float(fn(10)) == pytest.approx(0.05)
    assert float(fn(20)) == pytest.approx(0.1)
    assert float(fn(70)) == pytest.approx(0.05, rel=1e-5)  # half-way through the decay
    assert float(fn(120)) == pytest.approx(0.0, abs=1e-9)
    assert float(fn(500)) == pytest.approx(0.0, abs=1e-9)
    ref = optax.warmup_cosine_decay_schedule(0.0, 0.1, 20, 120, 0.0)
    for s in (5, 33, 61, 99, 119):
        assert float(fn(s)) == pytest.approx(float(ref(s)), rel=1e-5)


def test_schedule_via_config_and_learning_rates_jit():
    _, scheds = create_optimizer(_config(schedule="cosine", num_epochs=10), steps_per_epoch=5)
    lrs = jax.jit(lambda s: learning_rates(scheds, s))(jnp.int32(10))
    assert float(lrs["backbone"]) == pytest.approx(0.01)
    assert float(lrs["head"]) == pytest.approx(0.1)
    lrs = learning_rates(scheds, 5)
    assert float(lrs["head"]) == pytest.approx(0.05)


# ----------------------------------------------------------------------------- groups


def test_group_labels_by_path():
    label = head_label_fn()
    labels = label(_params())
    assert labels["head"]["classifier"]["kernel"] == "head"
    assert labels["backbone"]["bn"]["scale"] == "backbone"
    # A Flax variables dict ({"params": ...}) is labelled the same way.
    assert label({"params": _params()})["params"]["head"]["classifier"]["bias"] == "head"
    # No head subtree: everything is backbone.
    flat = label({"conv": {"kernel": jnp.zeros(3)}, "fc": {"kernel": jnp.zeros(3)}})
    assert set(jax.tree_util.tree_leaves(flat)) == {"backbone"}
    custom = head_label_fn(is_head=lambda path: path[-2] == "fc")(
        {"conv": {"kernel": jnp.zeros(3)}, "fc": {"kernel": jnp.zeros(3)}}
    )
    assert custom == {"conv": {"kernel": "backbone"}, "fc": {"kernel": "head"}}
    assert head_label_fn(["classifier"])({"classifier": {"w": 1}, "x": 2}) == {"classifier": {"w": "head"}, "x": "backbone"}


def test_model_without_head_uses_backbone_lr():
    tx, scheds = create_optimizer(_config(warmup_epochs=0, momentum=0.0, weight_decay=0.0), steps_per_epoch=4)
    params = {"conv": {"kernel": jnp.ones((2, 2))}}
    grads = {"conv": {"kernel": jnp.full((2, 2), 2.0)}}
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["conv"]["kernel"]), -0.01 * 2.0, rtol=1e-6)


# ----------------------------------------------------------------------------- torch parity


def _torch_groups(torch, tparams, lr_b, lr_h, wd, decay_bn_and_bias):
    groups = []
    for group, lr in (("backbone", lr_b), ("head", lr_h)):
        named = [(k, v) for k, v in tparams.items() if k[0] == group]
        if decay_bn_and_bias:
            groups.append({"params": [v for _, v in named], "lr": lr, "weight_decay": wd, "name": group})
        else:
            groups.append({"params": [v for _, v in named if v.ndim > 1], "lr": lr, "weight_decay": wd, "name": group})
            groups.append({"params": [v for _, v in named if v.ndim <= 1], "lr": lr, "weight_decay": 0.0, "name": group})
    return groups


@pytest.mark.parametrize(
    "decay_bn_and_bias, nesterov, weight_decay",
    [(True, False, 1e-4), (True, False, 0.05), (False, False, 0.05), (True, True, 0.05)],
)
def test_matches_torch_sgd_with_param_groups(decay_bn_and_bias, nesterov, weight_decay):
    torch = pytest.importorskip("torch")
    cfg = _config(
        warmup_epochs=1,
        lr_step_epochs=2,
        num_epochs=5,
        lr_backbone=0.05,
        lr_head=0.5,
        weight_decay=weight_decay,
        decay_bn_and_bias=decay_bn_and_bias,
        nesterov=nesterov,
    )
    spe, n_steps = 2, 10  # warm-up (lr 0 then half), full lr, then two decays
    tx, scheds = create_optimizer(cfg, steps_per_epoch=spe)
    params = _params()
    state = tx.init(params)
    update = jax.jit(tx.update)

    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = [tuple(k.key for k in path) for path, _ in flat]
    tparams = {k: torch.nn.Parameter(torch.tensor(np.asarray(v))) for k, (_, v) in zip(keys, flat)}
    topt = torch.optim.SGD(
        _torch_groups(torch, tparams, 0.05, 0.5, weight_decay, decay_bn_and_bias),
        lr=0.05,
        momentum=0.9,
        nesterov=nesterov,
    )

    rng = np.random.default_rng(1)
    lr_values = []
    for step in range(n_steps):
        grads_np = [rng.normal(size=np.shape(v)).astype(np.float32) for _, v in flat]
        grads = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(g) for g in grads_np])
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)

        lrs = learning_rates(scheds, step)
        lr_values.append(float(lrs["backbone"]))
        for g in topt.param_groups:
            g["lr"] = float(lrs[g["name"]])
        for k, g in zip(keys, grads_np):
            tparams[k].grad = torch.tensor(g)
        topt.step()

        for k, (_, v) in zip(keys, jax.tree_util.tree_flatten_with_path(params)[0]):
            np.testing.assert_allclose(np.asarray(v), tparams[k].detach().numpy(), atol=1e-6, rtol=0, err_msg=f"step {step} {k}")
    assert lr_values == pytest.approx([0.0, 0.025, 0.05, 0.05, 0.005, 0.005, 0.005, 0.005, 0.0005, 0.0005], rel=1e-6)


def test_decay_bn_and_bias_false_skips_1d_params():
    params = _params()
    zero = jax.tree_util.tree_map(jnp.zeros_like, params)
    cfg = dict(warmup_epochs=0, momentum=0.0, weight_decay=0.5)
    tx_all, _ = create_optimizer(_config(**cfg), 1)
    tx_nd, _ = create_optimizer(_config(decay_bn_and_bias=False, **cfg), 1)
    up_all, _ = tx_all.update(zero, tx_all.init(params), params)
    up_nd, _ = tx_nd.update(zero, tx_nd.init(params), params)
    np.testing.assert_allclose(up_all["backbone"]["bn"]["scale"], -0.01 * 0.5 * params["backbone"]["bn"]["scale"], rtol=1e-6)
    np.testing.assert_allclose(up_all["head"]["classifier"]["bias"], -0.1 * 0.5 * params["head"]["classifier"]["bias"], rtol=1e-6)
    assert np.all(np.asarray(up_nd["backbone"]["bn"]["scale"]) == 0)
    assert np.all(np.asarray(up_nd["head"]["classifier"]["bias"]) == 0)
    np.testing.assert_allclose(up_nd["backbone"]["conv"]["kernel"], up_all["backbone"]["conv"]["kernel"])


def test_grad_accumulation_counts_optimizer_steps():
    cfg = _config(warmup_epochs=1, lr_step_epochs=1, num_epochs=3)
    tx_plain, _ = create_optimizer(cfg, steps_per_epoch=2)
    tx_acc, _ = create_optimizer(_config(grad_accum_steps=2, **vars(cfg)), steps_per_epoch=2)
    p_plain = p_acc = _params()
    s_plain, s_acc = tx_plain.init(p_plain), tx_acc.init(p_acc)
    update_plain, update_acc = jax.jit(tx_plain.update), jax.jit(tx_acc.update)
    rng = np.random.default_rng(2)
    for _ in range(4):  # 4 optimizer steps = 8 micro-batches
        micro = [jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), p_acc) for _ in range(2)]
        for g in micro:
            u, s_acc = update_acc(g, s_acc, p_acc)
            p_acc = optax.apply_updates(p_acc, u)
        mean = jax.tree_util.tree_map(lambda a, b: (a + b) / 2, *micro)
        u, s_plain = update_plain(mean, s_plain, p_plain)
        p_plain = optax.apply_updates(p_plain, u)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), p_acc, p_plain)
    assert int(s_acc.gradient_step) == 4


# ----------------------------------------------------------------------------- config


def test_accepts_configdict_and_dict():
    ml_collections = pytest.importorskip("ml_collections")
    cfg = ml_collections.ConfigDict(vars(_config()))
    _, scheds = create_optimizer(cfg, steps_per_epoch=10)
    assert float(scheds["head"](20)) == pytest.approx(0.1)
    minimal = {"lr_backbone": 0.01, "lr_head": 0.1, "num_epochs": 30, "lr_step_epochs": 5}
    _, scheds = create_optimizer(minimal, steps_per_epoch=10)
    assert float(scheds["backbone"](10)) == pytest.approx(0.005)  # default 2-epoch warm-up
    assert float(scheds["backbone"](50)) == pytest.approx(0.001)


@pytest.mark.parametrize(
    "overrides, steps_per_epoch, match",
    [
        (dict(schedule="linear"), 10, "unknown schedule 'linear'"),
        (dict(lr_step_epochs=0), 10, "lr_step_epochs must be >= 1"),
        (dict(warmup_epochs=-1), 10, "warmup_epochs must be >= 0"),
        (dict(), 0, "steps_per_epoch must be >= 1"),
        (dict(), 2.5, "steps_per_epoch must be an integer"),
        (dict(momentum=1.5), 10, "momentum"),
        (dict(grad_accum_steps=0), 10, "grad_accum_steps"),
        (dict(schedule="cosine", num_epochs=2), 10, "must exceed warmup_epochs"),
    ],
)
def test_bad_config_raises(overrides, steps_per_epoch, match):
    with pytest.raises(ValueError, match=match):
        create_optimizer(_config(**overrides), steps_per_epoch)


def test_missing_field_is_named():
    with pytest.raises(ValueError, match="'lr_head'"):
        create_optimizer({"lr_backbone": 0.01, "num_epochs": 3, "lr_step_epochs": 1}, 10)
