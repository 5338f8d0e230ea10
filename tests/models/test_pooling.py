"""The masked max-pool backward (``pool_impl="masked"``) against torch's autograd of
``F.max_pool2d`` and jax.grad of Flax's ``nn.max_pool``: same forward, bit-identical input
gradients, ties included (the first maximum of the window takes the gradient)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from csra_jax import create_model
from csra_jax.models.pooling import max_pool, max_pool_masked_vjp, resolve_pool_impl


def _inputs(shape, ties, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    if ties:  # after ReLU, rounded: whole windows of zeros and repeated positive maxima
        x = np.maximum(np.round(x * 1.5), 0).astype(np.float32)
    return x


@pytest.mark.parametrize("shape,window,stride,pad", [
    ((2, 8, 8, 3), 2, 2, 0),     # small_cnn's pools
    ((2, 9, 9, 3), 2, 2, 0),     # odd size: the last row/column is dropped
    ((2, 12, 12, 4), 3, 2, 1),   # the ResNet stem's (overlapping windows)
    ((1, 11, 13, 2), 3, 2, 1),   # odd, non-square
])
@pytest.mark.parametrize("ties", [False, True])
def test_matches_torch_autograd_bitwise(shape, window, stride, pad, ties):
    x = _inputs(shape, ties)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, window, stride, pad)
    ct = np.random.default_rng(1).standard_normal(yt.shape).astype(np.float32)
    yt.backward(torch.tensor(ct))
    ct = ct.transpose(0, 2, 3, 1)
    y, vjp = jax.vjp(lambda x: max_pool_masked_vjp(x, window, stride, pad), jnp.asarray(x))
    np.testing.assert_array_equal(y, yt.detach().numpy().transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(jax.jit(vjp)(ct)[0], xt.grad.numpy().transpose(0, 2, 3, 1))


@pytest.mark.parametrize("window,stride,pad", [(2, 2, 0), (3, 2, 1)])
def test_matches_jax_grad_of_flax_max_pool_in_bfloat16(window, stride, pad):
    x = jnp.asarray(_inputs((2, 10, 10, 3), ties=True)).astype(jnp.bfloat16)
    ref = lambda x: nn.max_pool(x, (window, window), (stride, stride), ((pad, pad),) * 2)
    ct = jnp.ones(ref(x).shape, jnp.bfloat16) * 0.5
    ours = jax.vjp(lambda x: max_pool(x, window, stride, pad, "masked"), x)
    theirs = jax.vjp(ref, x)
    np.testing.assert_array_equal(ours[0], theirs[0])
    assert ours[1](ct)[0].dtype == jnp.bfloat16
    np.testing.assert_array_equal(ours[1](ct)[0], theirs[1](ct)[0])


def test_auto_resolves_by_backend_and_rejects_unknown():
    assert resolve_pool_impl("auto") == ("masked" if jax.default_backend() == "cpu" else "xla")
    assert resolve_pool_impl("xla") == "xla"
    with pytest.raises(ValueError, match="pool_impl"):
        create_model("small_cnn", 5, img_size=32, pool_impl="avg").init(
            jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


@pytest.mark.parametrize("arch,n_pools,size,conv_impl", [
    ("small_cnn", 2, 32, "xla"), ("resnet18", 1, 32, "xla"),
    # Here a maximum saved from the forward did not match the taps the backward sees
    # (XLA's fusion rounds the pool's input differently): the backward must retake it.
    ("resnet18", 1, 96, "gemm_vjp")])
def test_backbones_use_it_with_identical_outputs_and_gradients(arch, n_pools, size, conv_impl):
    images = jax.random.normal(jax.random.key(1), (2, size, size, 3))
    models = {i: create_model(arch, 5, img_size=size, conv_impl=conv_impl, pool_impl=i)
              for i in ("xla", "masked")}
    variables = jax.jit(models["xla"].init)(jax.random.key(0), images)
    jaxprs = {i: str(jax.make_jaxpr(m.apply)(variables, images)) for i, m in models.items()}
    count = {i: j.count("custom_vjp_call") for i, j in jaxprs.items()}
    assert count["masked"] - count["xla"] == n_pools  # gemm_vjp convs are custom_vjps too

    def grads(model):
        def loss(params):
            logits, _ = model.apply({**variables, "params": params}, images, train=True,
                                    mutable=["batch_stats"])
            return jnp.sum(logits ** 2)
        return jax.jit(jax.value_and_grad(loss))(variables["params"])

    (la, ga), (lb, gb) = grads(models["masked"]), grads(models["xla"])
    np.testing.assert_array_equal(la, lb)
    for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        np.testing.assert_array_equal(a, b)
