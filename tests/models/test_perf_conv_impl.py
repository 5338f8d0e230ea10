"""ResNet convolutions as GEMMs (``conv_impl="gemm"``: 1x1 as dots; ``"gemm_vjp"``: also the
3x3/7x7 weight gradients; ``"winograd"``, the single-CPU default: also the wide
stride-1 3x3 convs by Winograd) vs XLA convs: same parameters, same outputs and
gradients, all equal to torchvision."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from csra_jax import create_model
from csra_jax.convert import load_torch_weights
from csra_jax.models import resnet as resnet_lib
from csra_jax.models import winograd as winograd_lib
from torch_reference import max_rel_diff, randomize_bn, to_nchw

TOL = 1e-4


def _images(size, batch=2, seed=0):
    return np.asarray(jax.random.uniform(jax.random.key(seed), (batch, size, size, 3)))


def test_auto_resolves_by_backend_and_rejects_unknown():
    cpu = "winograd" if jax.device_count() == 1 else "gemm"
    assert resnet_lib.resolve_conv_impl("auto") == (
        cpu if jax.default_backend() == "cpu" else "xla")
    assert resnet_lib.resolve_conv_impl("xla") == "xla"
    with pytest.raises(ValueError, match="conv_impl"):
        create_model("resnet18", 5, img_size=32, conv_impl="fft").init(
            jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


def force_winograd_tile(monkeypatch, tile):
    """Every 3x3 stride-1 conv of >= 128 channels by F(tile x tile): at the tiny test
    sizes the shape rule would run them all directly."""
    monkeypatch.setattr(winograd_lib, "winograd_tile", lambda *shape, dtype=None: tile * (
        min(shape[3:5]) >= 128))


@pytest.mark.parametrize("conv_impl,tile", [("xla", 0), ("gemm", 0), ("gemm_vjp", 0),
                                            ("winograd", 2), ("winograd", 4)])
def test_each_conv_impl_matches_torchvision(conv_impl, tile, monkeypatch):
    """resnet50 (bottleneck 1x1s and strided 1x1 downsamples) in eval and train mode."""
    force_winograd_tile(monkeypatch, tile)
    torch.manual_seed(0)
    ref = randomize_bn(torchvision.models.resnet50(weights=None))
    images = _images(64)
    model = create_model("resnet50", 1000, head="gap", img_size=64, conv_impl=conv_impl)
    variables = load_torch_weights(ref.state_dict(), model, "torchvision")
    with torch.no_grad():
        logits_eval = ref.eval()(to_nchw(images)).numpy()
        logits_train = ref.train()(to_nchw(images)).numpy()
    assert max_rel_diff(model.apply(variables, images), logits_eval) <= TOL
    logits, _ = model.apply(variables, images, train=True, mutable=["batch_stats"])
    assert max_rel_diff(logits, logits_train) <= TOL


def test_gemm_impls_and_xla_share_params_and_gradients():
    images = jnp.asarray(_images(64, batch=4, seed=1))
    models = {i: create_model("resnet50", 7, num_heads=2, lam=0.3, img_size=64, conv_impl=i)
              for i in ("xla", "gemm", "gemm_vjp", "winograd")}
    shapes = {i: jax.tree.map(jnp.shape, jax.eval_shape(m.init, jax.random.key(0), images))
              for i, m in models.items()}
    # names and shapes: converters work for all
    assert shapes["xla"] == shapes["gemm"] == shapes["gemm_vjp"] == shapes["winograd"]
    variables = jax.jit(models["xla"].init)(jax.random.key(0), images)

    # Gradients with frozen BN statistics: train-mode gradients of this tiny config
    # (layer4 BN over 4 x 2 x 2 values) are ill-conditioned, both impls differ from a
    # float64 reference by 2-3% there, so they cannot be compared tightly.
    def grads(model):
        def loss(params):
            return jnp.mean(jax.nn.log_sigmoid(model.apply({**variables, "params": params},
                                                           images)))
        return jax.jit(jax.grad(loss))(variables["params"])

    # ("winograd" rounds differently: test_conv_winograd.py compares it to float64.)
    g_xla = jax.tree.leaves(grads(models["xla"]))
    for impl in ("gemm", "gemm_vjp"):
        for a, b in zip(g_xla, jax.tree.leaves(grads(models[impl]))):
            assert max_rel_diff(b, a) <= 1e-4, impl
