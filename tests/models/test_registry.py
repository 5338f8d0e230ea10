"""Every registered backbone x head, at its family's test size: builds, declares its stage
strides and BatchNorm truthfully, runs one jitted train step, draws its class maps (which
are what the head pools), and converts strictly from its PyTorch twin, whose logits our
``gap`` head then reproduces. A new backbone or head is tested here without a new test.

Cost: one train-step and one forward compile per pair, XLA's CPU optimisations off
(``model_fixtures.jit_once``); no ``model.init`` compile (random templates)."""

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from csra_jax import create_model
from csra_jax.data.transforms import NORMALIZATIONS
from csra_jax.models import registry
from csra_jax.train.state import TrainState
from csra_jax.train.steps import batch_sharding, make_mesh, make_train_step, replicated
from csra_jax.visualize import attention_grid
from model_fixtures import random_variables

SIZE, NUM_CLASSES, BATCH = 64, 3, 2
FAMILIES = sorted(registry.families())
HEADS = registry.available_heads()
NO_OPT = {"xla_backend_optimization_level": 0}


def _images(seed=0):
    return np.asarray(jax.random.uniform(jax.random.key(seed), (BATCH, SIZE, SIZE, 3)))


@functools.lru_cache(maxsize=None)
def _torch_twin(family):
    """(state_dict as numpy, logits on ``_images()``) of the family's random PyTorch twin
    with random BatchNorm statistics, or None without a twin."""
    spec = registry.families()[family]
    if spec.torch_twin is None:
        return None
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    pytest.importorskip("timm")
    from torch_reference import randomize_bn, to_nchw
    torch.manual_seed(0)
    net = randomize_bn(spec.torch_twin(spec.tiny, SIZE, NUM_CLASSES)).eval()
    with torch.no_grad():
        logits = net(to_nchw(_images())).numpy()
    return {k: v.numpy() for k, v in net.state_dict().items()}, logits


def test_the_registries_hold_every_family_and_head():
    assert {"resnet", "vit", "mobilenet_v2", "efficientnet", "small_cnn"} <= set(FAMILIES)
    assert HEADS[:3] == ["csra", "gap", "attend_rectify"]
    assert not any(a.endswith(registry.TINY) for a in registry.available_archs())


@pytest.mark.parametrize("family", FAMILIES)
def test_backbone_declares_its_strides_and_batch_norm(family):
    spec = registry.families()[family]
    model = create_model(spec.tiny_arch, NUM_CLASSES, head="attend_rectify", img_size=SIZE,
                         attention_depth=1)
    x = jnp.zeros((1, SIZE, SIZE, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    stages = jax.eval_shape(functools.partial(model.apply, method="features"), variables, x)
    strides = spec.stage_strides(spec.tiny)
    assert [s.shape[1:3] for s in stages] == [(SIZE // r, SIZE // r) for r in strides]
    assert ("backbone" in variables.get("batch_stats", {})) == spec.has_batch_norm
    assert spec.normalization in NORMALIZATIONS


def _train_step(model, variables, batch):
    """One real train step (the library's), compiled once."""
    mesh = make_mesh(jax.devices()[:1])
    tx = optax.sgd(0.1)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                       batch_stats=variables.get("batch_stats", {}),
                       opt_state=tx.init(variables["params"]), rng=jax.random.key_data(
                           jax.random.key(0)), nonfinite=jnp.zeros((), jnp.int32))
    state = jax.device_put(state, replicated(mesh))
    batch = jax.device_put(batch, batch_sharding(mesh))
    step = make_train_step(model, tx, mesh, {"head": optax.constant_schedule(0.1)})
    return step.lower(state, batch).compile(NO_OPT)(state, batch)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_backbone_and_head_trains_draws_and_converts(family, head):
    spec = registry.families()[family]
    model = create_model(spec.tiny_arch, NUM_CLASSES, head=head, img_size=SIZE)
    variables = random_variables(model, SIZE)
    twin = _torch_twin(family)
    if twin is not None:
        from csra_jax.convert.torch_to_flax import convert_state_dict
        variables, report = convert_state_dict(twin[0], model, spec.torch_source,
                                               init_variables=variables)
        assert not report.errors() and len(report.loaded) > 10
        takes_fc = {f"{spec.torch_classifier}.weight", f"{spec.torch_classifier}.bias"}
        assert takes_fc <= set(report.loaded) if model.head.torch_classifier else not (
            takes_fc & set(report.loaded))

    # Maps: the ones the head pools (checked against its logits), drawable.
    images = _images()
    t0 = time.time()
    logits, maps = jax.jit(functools.partial(model.apply, method="logits_and_maps")).lower(
        variables, images).compile(NO_OPT)(variables, images)
    # A head maps at the output stride, or at one of the stages it reads.
    grid = maps.scores.shape[1]
    strides = spec.stage_strides(spec.tiny)
    assert SIZE // grid in (strides if registry.head_spec(head).reads_stages else strides[-1:])
    assert maps.scores.shape == (BATCH, grid, grid, NUM_CLASSES)
    assert maps.attention.shape == (BATCH, NUM_CLASSES, grid, grid)
    assert np.isfinite(np.asarray(maps.attention)).all()
    scores = np.asarray(maps.scores).reshape(BATCH, -1, NUM_CLASSES)
    att = np.asarray(maps.attention).reshape(BATCH, NUM_CLASSES, -1).transpose(0, 2, 1)
    if head == "csra":  # H=1, T=1: base + lam * sum_k att_k score_k
        np.testing.assert_allclose(logits, scores.mean(1) + 0.1 * (att * scores).sum(1),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(att.sum(1), 1.0, rtol=1e-5)
    if head == "gap":
        np.testing.assert_allclose(logits, scores.mean(1), rtol=1e-4, atol=1e-5)
    if head == "gap" and twin is not None:  # the twin's forward = backbone + classifier
        from torch_reference import max_rel_diff
        assert max_rel_diff(logits, twin[1]) <= 1e-4
    picture = attention_grid((images[0] * 255).astype(np.uint8), list(maps.attention[0]),
                             [f"class {i}" for i in range(NUM_CLASSES)], tile=32)
    assert picture.size[0] == 32 * (1 + NUM_CLASSES)

    # One jitted train step moves the weights; a head that sows a loss (attend-and-
    # rectify's regulariser) adds it.
    labels = np.eye(NUM_CLASSES, dtype=np.float32)[[0, 2]]
    batch = {"image": images, "labels": labels, "ignore": np.zeros_like(labels),
             "mask": np.ones((BATCH,), np.float32)}
    _, sown = jax.eval_shape(functools.partial(model.apply, train=True,
                                               mutable=["losses", "batch_stats"]),
                             variables, images)
    before = jax.device_get(variables["params"]["head"])  # the step donates its state
    new_state, metrics = _train_step(model, variables, batch)
    assert np.isfinite(float(metrics["loss"])) and int(metrics["nonfinite"]) == 0
    assert (float(metrics["aux_loss"]) > 0) == bool(sown.get("losses"))
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), new_state.params["head"],
                         before)
    assert max(jax.tree.leaves(moved)) > 0
    print(f"{family}/{head}: {time.time() - t0:.1f}s")
