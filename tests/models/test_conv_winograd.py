"""The Winograd F(2x2, 3x3) and F(4x4, 3x3) convolutions (``conv_impl="winograd"``)
against torch's ``F.conv2d`` and its autograd: same forward, input and weight gradients
up to float rounding, on even, odd and one-pixel maps; the per-shape tile rule and the
ResNet wiring (which convs use which tile)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from csra_jax import create_model
from csra_jax.models import resnet as resnet_lib
from csra_jax.models import winograd as winograd_lib
from csra_jax.models.winograd import conv3x3_winograd, winograd_tile
from test_perf_conv_impl import force_winograd_tile


@pytest.mark.parametrize("wino", [2, 4])
@pytest.mark.parametrize("shape,tile", [
    ((3, 8, 8, 5), 2),     # even map, batch not a multiple of the weight-gradient tile
    ((2, 7, 9, 4), 1),     # odd height and width: the last tile row/column is cropped
    ((2, 6, 10, 3), 2),    # a multiple of 2 that is not one of 4
    ((2, 1, 1, 3), 2),     # a one-pixel map (layer4 at small inputs)
])
def test_forward_and_gradients_match_torch(shape, tile, wino):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((3, 3, shape[-1], 6)) * 0.2).astype(np.float32)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(w.transpose(3, 2, 0, 1), requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, padding=1)
    ct = rng.standard_normal(yt.shape).astype(np.float32)
    (yt * torch.tensor(ct)).sum().backward()
    ct = ct.transpose(0, 2, 3, 1)
    y, vjp = jax.vjp(jax.jit(lambda x, w: conv3x3_winograd(x, w, tile, wino)), x, w)
    dx, dw = vjp(ct)
    # F(4x4)'s transforms (entries up to 8 and 1/24) round about 10x coarser than F(2x2)'s
    atol = {2: 2e-6, 4: 2e-5}[wino]
    for ours, ref in ((y, yt.detach().numpy().transpose(0, 2, 3, 1)),
                      (dx, xt.grad.numpy().transpose(0, 2, 3, 1)),
                      (dw, wt.grad.numpy().transpose(2, 3, 1, 0))):
        assert ours.shape == ref.shape and ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=atol * np.abs(ref).max())


def test_rejects_a_kernel_that_is_not_3x3_or_mismatched_channels():
    x = jnp.zeros((1, 8, 8, 4))
    with pytest.raises(ValueError, match=r"\(3, 3, C_in, C_out\).*kernel \(5, 5, 4, 2\)"):
        conv3x3_winograd(x, jnp.zeros((5, 5, 4, 2)))
    with pytest.raises(ValueError, match="C_in"):
        conv3x3_winograd(x, jnp.zeros((3, 3, 3, 2)))
    with pytest.raises(ValueError, match="tile=3; valid: 2, 4"):
        conv3x3_winograd(x, jnp.zeros((3, 3, 4, 2)), 2, 3)


@pytest.mark.parametrize("shape,dtype,tile", [
    ((4, 56, 56, 128, 128), jnp.float32, 4),   # resnet101 layer2 at 448: 784 tiles of 4x4
    ((4, 28, 28, 256, 256), jnp.float32, 2),   # layer3: 196 tiles of 4x4 < 256 channels
    ((4, 14, 14, 512, 512), jnp.float32, 0),   # layer4: 196 tiles of 2x2 < 512 channels
    ((8, 7, 7, 512, 512), jnp.float32, 0),     # layer4 at 224
    ((8, 56, 56, 64, 64), jnp.float32, 0),     # layer1: under 128 channels
    ((4, 56, 56, 128, 256), jnp.float32, 4),   # the smaller of C_in, C_out counts
    ((4, 56, 56, 128, 128), jnp.bfloat16, 2),  # F(4x4) is float32 only
])
def test_tile_rule(shape, dtype, tile):
    assert winograd_tile(*shape, dtype=dtype) == tile


def test_resnet_uses_the_tile_the_rule_picks(monkeypatch):
    """resnet50@448, batch 2: layer2's three stride-1 3x3 convs (56x56x128) by F(4x4),
    layer3's five (28x28x256) by F(2x2), layer1 and layer4 and the stride-2 ones directly
    (gemm_vjp); the parameter tree is the same as with XLA's convs."""
    images = jnp.zeros((2, 448, 448, 3))
    model = create_model("resnet50", 5, head="gap", img_size=448, conv_impl="winograd")
    xla_shapes = jax.eval_shape(create_model("resnet50", 5, head="gap", img_size=448,
                                             conv_impl="xla").init, jax.random.key(0), images)
    shapes = jax.eval_shape(model.init, jax.random.key(0), images)
    assert jax.tree.map(jnp.shape, shapes) == jax.tree.map(jnp.shape, xla_shapes)
    calls = []
    real = winograd_lib.conv3x3_winograd
    monkeypatch.setattr(winograd_lib, "conv3x3_winograd", lambda x, w, bt, tile: (
        calls.append((x.shape[1:], tile)), real(x, w, bt, tile))[1])
    jaxpr = str(jax.make_jaxpr(model.apply)(shapes, images))
    assert calls == [((56, 56, 128), 4)] * 3 + [((28, 28, 256), 2)] * 5
    assert len(re.findall(r"conv2d_gemm_vjp", jaxpr)) == 1 + 3 + 1 + 1 + 3


@pytest.mark.parametrize("tile,bound", [(2, 1.5), (4, 3.0)])
def test_resnet_gradients_are_as_close_to_float64_as_xlas(tile, bound, monkeypatch):
    """Winograd's transforms round differently from a direct convolution, so on an
    ill-conditioned tiny config (resnet50@64, layer4 BN over 4 x 2 x 2 values) its f32
    gradients differ from XLA's f32 ones by more than float rounding of one conv; the
    fair check is against a float64 reference: about as close to it as XLA's own (every
    conv of >= 128 channels forced through the tile)."""
    force_winograd_tile(monkeypatch, tile)
    images = jax.random.uniform(jax.random.key(1), (4, 64, 64, 3))
    make = lambda impl, dtype=jnp.float32: create_model(
        "resnet50", 7, num_heads=2, lam=0.3, img_size=64, conv_impl=impl, dtype=dtype,
        param_dtype=dtype)
    variables = jax.jit(make("xla").init)(jax.random.key(0), images)

    def grads(impl, dtype):
        v = jax.tree.map(lambda a: a.astype(dtype), variables)
        model = make(impl, dtype)

        def loss(params):
            return jnp.mean(jax.nn.log_sigmoid(model.apply({**v, "params": params},
                                                           images.astype(dtype))))
        g = jax.jit(jax.grad(loss))(v["params"])
        return [np.asarray(leaf, np.float64) for leaf in jax.tree.leaves(g)]

    with jax.enable_x64(True):
        ref = grads("xla", jnp.float64)

    def worst(gs):
        return max(float(np.max(np.abs(g - r)) / np.max(np.abs(r))) for g, r in zip(gs, ref))

    xla, wino = worst(grads("xla", jnp.float32)), worst(grads("winograd", jnp.float32))
    assert 0 < xla < 1e-2
    assert wino <= bound * xla, (wino, xla)
