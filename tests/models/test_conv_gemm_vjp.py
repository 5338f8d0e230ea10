"""The written-out convolution backward (``conv_impl="gemm_vjp"``) against jax.grad of
XLA's own ``lax.conv_general_dilated`` and against torch's autograd of ``F.conv2d``: same
forward, same input and weight gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax import lax

from csra_jax import create_model
from csra_jax.models.conv import conv2d_gemm_vjp


def _ref(x, w, stride, pad):
    return lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("shape,k,stride,pad,tile", [
    ((3, 9, 9, 5), 3, 1, 1, 2),    # batch not a multiple of the tile
    ((2, 11, 11, 3), 3, 2, 1, 1),  # odd size, stride 2
    ((2, 16, 16, 3), 7, 2, 3, 2),  # the ResNet stem
    ((2, 12, 12, 4), 3, 2, 1, 2),  # even size, stride 2: layer2_0..layer4_0's conv2
    ((1, 10, 13, 2), 3, 3, 1, 1),  # stride 3, non-square: phases of unequal length
    ((2, 9, 9, 3), 1, 2, 0, 1),    # 1x1 stride 2: three of four phases get no tap
])
def test_gradients_match_jax_grad_of_xla_conv(shape, k, stride, pad, tile):
    kx, kw, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, shape)
    w = jax.random.normal(kw, (k, k, shape[-1], 6)) * 0.2
    y_ref = _ref(x, w, stride, pad)
    ct = jax.random.normal(kg, y_ref.shape)
    ours = jax.jit(lambda x, w: conv2d_gemm_vjp(x, w, stride, pad, tile))
    np.testing.assert_array_equal(ours(x, w), y_ref)
    loss = lambda f: (lambda x, w: jnp.sum(f(x, w) * ct))
    g_ref = jax.grad(loss(lambda x, w: _ref(x, w, stride, pad)), (0, 1))(x, w)
    g_ours = jax.jit(jax.grad(loss(ours), (0, 1)))(x, w)
    for a, b in zip(g_ours, g_ref):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(b))))


def test_resnet_gemm_vjp_uses_it_with_the_same_params_and_outputs_as_xla():
    """Wiring only (the gradients are checked per conv above): same parameter tree, same
    eval output, and every 3x3/7x7 conv goes through the custom_vjp."""
    images = jax.random.uniform(jax.random.key(1), (1, 32, 32, 3))
    models = {i: create_model("resnet18", 5, head="gap", img_size=32, conv_impl=i,
                              pool_impl="xla")
              for i in ("xla", "gemm_vjp")}
    variables = jax.jit(models["xla"].init)(jax.random.key(0), images)
    assert (jax.tree.map(jnp.shape, jax.eval_shape(models["gemm_vjp"].init,
                                                    jax.random.key(0), images))
            == jax.tree.map(jnp.shape, variables))
    out = {i: jax.jit(m.apply)(variables, images) for i, m in models.items()}
    np.testing.assert_allclose(out["gemm_vjp"], out["xla"], rtol=1e-5, atol=1e-6)
    jaxpr = str(jax.make_jaxpr(models["gemm_vjp"].apply)(variables, images))
    assert jaxpr.count("custom_vjp_call") == 1 + 2 * 8  # stem + two 3x3 per basic block


@pytest.mark.parametrize("shape,stride,tile", [
    ((5, 12, 12, 4), 1, 2),   # two scanned tiles and a ragged one
    ((4, 13, 13, 3), 2, 1),   # stride 2, odd size, tile of one image
])
def test_gradients_match_torch_autograd(shape, stride, tile):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((3, 3, shape[-1], 7)) * 0.2).astype(np.float32)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(w.transpose(3, 2, 0, 1), requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, stride=stride, padding=1)
    ct = rng.standard_normal(yt.shape).astype(np.float32)
    (yt * torch.tensor(ct)).sum().backward()
    ct = ct.transpose(0, 2, 3, 1)
    dx, dw = jax.jit(jax.grad(lambda x, w: jnp.sum(conv2d_gemm_vjp(x, w, stride, 1, tile) * ct),
                              (0, 1)))(x, w)
    for ours, ref in ((dx, xt.grad.numpy().transpose(0, 2, 3, 1)),
                      (dw, wt.grad.numpy().transpose(2, 3, 1, 0))):
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_small_cnn_gemm_vjp_matches_xla_in_outputs_and_gradients():
    """The demo backbone takes the same option: same params and outputs, every conv
    through the custom_vjp, train-mode gradients equal to XLA's."""
    images = jax.random.uniform(jax.random.key(1), (4, 32, 32, 3))
    labels = (jax.random.uniform(jax.random.key(2), (4, 5)) < 0.3).astype(jnp.float32)
    models = {i: create_model("small_cnn", 5, img_size=32, conv_impl=i, pool_impl="xla")
              for i in ("xla", "gemm_vjp")}
    variables = jax.jit(models["xla"].init)(jax.random.key(0), images)
    np.testing.assert_array_equal(jax.jit(models["gemm_vjp"].apply)(variables, images),
                                  jax.jit(models["xla"].apply)(variables, images))
    jaxpr = str(jax.make_jaxpr(models["gemm_vjp"].apply)(variables, images))
    assert jaxpr.count("custom_vjp_call") == 6  # stem + 1 + 2 + 2 convs

    def grads(model):
        def loss(params):
            logits, _ = model.apply({**variables, "params": params}, images, train=True,
                                    mutable=["batch_stats"])
            return jnp.mean(jnp.logaddexp(0, logits) - labels * logits)
        return jax.tree.leaves(jax.jit(jax.grad(loss))(variables["params"]))

    for a, b in zip(grads(models["gemm_vjp"]), grads(models["xla"])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b))))


def test_forward_mode_needs_the_autodiff_lowerings():
    """The CPU defaults' written-out backward passes are custom_vjps (reverse mode only);
    conv_impl="gemm" with pool_impl="xla", as the README says, differentiate forward."""
    images = jax.random.uniform(jax.random.key(3), (1, 32, 32, 3))
    tangent = jnp.ones_like(images)
    variables = create_model("resnet_tiny", 3, img_size=32).init(jax.random.key(4), images)
    for kw, works in (({"conv_impl": "gemm_vjp", "pool_impl": "masked"}, False),
                      ({"conv_impl": "gemm", "pool_impl": "xla"}, True)):
        model = create_model("resnet_tiny", 3, img_size=32, **kw)
        f = lambda x, model=model: model.apply(variables, x)  # noqa: E731
        if not works:
            with pytest.raises(TypeError, match="custom_vjp"):
                jax.jvp(f, (images,), (tangent,))
            continue
        _, jvp_out = jax.jvp(f, (images,), (tangent,))
        cot = jax.random.normal(jax.random.key(5), jvp_out.shape)
        vjp_in = jax.vjp(f, images)[1](cot)[0]
        np.testing.assert_allclose(jnp.sum(jvp_out * cot), jnp.sum(vjp_in * tangent), rtol=1e-4)
