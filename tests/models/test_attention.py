"""The heads-major attention (``attention_impl="cpu"``) against torch's
``scaled_dot_product_attention`` and its autograd, and against
``jax.nn.dot_product_attention`` inside a ViT train step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from csra_jax import create_model
from csra_jax.models.attention import multi_head_attention, resolve_attention_impl
from worker_process import run_worker

# ViT-B's token count with the class token (not a multiple of anything), fewer heads.
SHAPE = (2, 197, 3, 64)


def _qkv_and_cotangent(seed=0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) * s for s in (2.0, 2.0, 1.0, 1.0)]


def _torch_attention_and_grads(q, k, v, d_out):
    """torch's own kernel on (B, heads, N, d): the layout it takes, transposed back."""
    to_torch = lambda a: torch.from_numpy(a.transpose(0, 2, 1, 3).copy()).requires_grad_(True)
    tq, tk, tv = to_torch(q), to_torch(k), to_torch(v)
    out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv)
    out.backward(torch.from_numpy(d_out.transpose(0, 2, 1, 3).copy()))
    back = lambda t: t.detach().numpy().transpose(0, 2, 1, 3)
    return back(out), [back(t.grad) for t in (tq, tk, tv)]


@pytest.mark.parametrize("impl", ["cpu", "jax"])
def test_output_and_gradients_match_torch_sdpa(impl):
    q, k, v, d_out = _qkv_and_cotangent()
    out_ref, grads_ref = _torch_attention_and_grads(q, k, v, d_out)
    out, vjp = jax.vjp(lambda *a: multi_head_attention(*a, impl=impl), q, k, v)
    for name, g, g_ref in [("out", out, out_ref)] + list(zip("qkv", vjp(jnp.asarray(d_out)),
                                                              grads_ref)):
        scale = np.abs(g_ref).max()
        assert np.abs(np.asarray(g) - g_ref).max() <= 1e-5 * scale, name


def test_jitted_inference_path_matches_the_differentiated_one():
    """Without grad the cpu path divides the output by the softmax's sum; under grad it
    normalises the weights first: the two agree to float rounding."""
    q, k, v, _ = _qkv_and_cotangent(seed=1)
    plain = jax.jit(lambda *a: multi_head_attention(*a, impl="cpu"))(q, k, v)
    differentiated, _ = jax.vjp(lambda *a: multi_head_attention(*a, impl="cpu"), q, k, v)
    np.testing.assert_allclose(plain, differentiated, atol=1e-6, rtol=1e-6)


def test_low_precision_inputs_keep_their_dtype_and_softmax_runs_in_float32():
    q, k, v, d_out = _qkv_and_cotangent(seed=2)
    bf16 = [jnp.asarray(a, jnp.bfloat16) for a in (q, k, v)]
    out, vjp = jax.vjp(lambda *a: multi_head_attention(*a, impl="cpu"), *bf16)
    grads = vjp(jnp.asarray(d_out, jnp.bfloat16))
    assert out.dtype == jnp.bfloat16 and all(g.dtype == jnp.bfloat16 for g in grads)
    ref = multi_head_attention(*[a.astype(jnp.float32) for a in bf16], impl="jax")
    # bf16 has 8 mantissa bits: a few parts in a thousand of the output's scale.
    assert float(jnp.abs(out.astype(jnp.float32) - ref).max()) <= 2e-2 * float(jnp.abs(ref).max())


def test_auto_resolves_per_backend_and_bad_names_raise():
    assert resolve_attention_impl("auto") == ("cpu" if jax.default_backend() == "cpu" else "jax")
    assert resolve_attention_impl("jax") == "jax"
    with pytest.raises(ValueError, match="attention_impl='flash'; valid: auto, jax, cpu"):
        resolve_attention_impl("flash")
    with pytest.raises(ValueError, match="batch, tokens, heads, head_dim"):
        multi_head_attention(*(jnp.zeros((2, 5, 8)),) * 3)
    with pytest.raises(ValueError, match="key tokens"):
        multi_head_attention(jnp.zeros((2, 5, 3, 8)), jnp.zeros((2, 7, 3, 8)),
                             jnp.zeros((2, 6, 3, 8)))


@pytest.mark.parametrize("impl", ["cpu", "jax"])
def test_keys_may_be_fewer_or_more_than_queries(impl):
    """Cross-attention shapes: N queries over M keys, against torch's kernel."""
    q, _, _, d_out = _qkv_and_cotangent(seed=3, shape=(2, 9, 3, 16))
    k, v, _, _ = _qkv_and_cotangent(seed=4, shape=(2, 13, 3, 16))
    out_ref, grads_ref = _torch_attention_and_grads(q, k, v, d_out)
    out, vjp = jax.vjp(lambda *a: multi_head_attention(*a, impl=impl), q, k, v)
    for name, g, g_ref in [("out", out, out_ref)] + list(zip("qkv", vjp(jnp.asarray(d_out)),
                                                              grads_ref)):
        assert np.abs(np.asarray(g) - g_ref).max() <= 1e-5 * np.abs(g_ref).max(), name


def test_vit_train_step_gradients_agree_between_implementations():
    """The whole ViT under grad: the cpu formulation's written-out backward gives the
    gradients XLA's autodiff of jax.nn.dot_product_attention gives."""
    images = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    labels = (jax.random.uniform(jax.random.key(1), (2, 5)) > 0.5).astype(jnp.float32)
    models = {impl: create_model("vit_tiny", 5, img_size=32, attention_impl=impl)
              for impl in ("cpu", "jax")}
    params = models["jax"].init(jax.random.key(2), images)["params"]

    def grads(model):
        def loss(p):
            logits = model.apply({"params": p}, images, train=True)
            return jnp.mean(jnp.logaddexp(0.0, logits) - labels * logits)
        return jax.jit(jax.grad(loss))(params)

    flat = {impl: jax.tree_util.tree_leaves_with_path(grads(m)) for impl, m in models.items()}
    for (path, g_cpu), (_, g_jax) in zip(flat["cpu"], flat["jax"]):
        scale = float(jnp.abs(g_jax).max()) + 1e-12
        assert float(jnp.abs(g_cpu - g_jax).max()) <= 1e-4 * scale, jax.tree_util.keystr(path)


def test_forward_mode_needs_the_jax_implementation():
    """The CPU formulations (attention, Dense weight gradient) are custom_vjps: jvp fails
    through them; attention_impl="jax" keeps JAX's own derivatives for the whole ViT."""
    images = jax.random.normal(jax.random.key(0), (1, 32, 32, 3))
    tangent = jnp.ones_like(images)
    variables = create_model("vit_tiny", 3, img_size=32, attention_impl="jax").init(
        jax.random.key(1), images)
    outs = {}
    for impl in ("jax", "cpu"):
        model = create_model("vit_tiny", 3, img_size=32, attention_impl=impl)
        f = lambda x, model=model: model.apply(variables, x)  # noqa: E731
        if impl == "cpu":
            with pytest.raises(TypeError, match="custom_vjp"):
                jax.jvp(f, (images,), (tangent,))
        outs[impl] = f(images)
        if impl == "jax":
            _, jvp_out = jax.jvp(f, (images,), (tangent,))
            _, vjp = jax.vjp(f, images)  # the same derivative, by reverse mode
            cot = jax.random.normal(jax.random.key(2), jvp_out.shape)
            np.testing.assert_allclose(jnp.sum(jvp_out * cot), jnp.sum(vjp(cot)[0] * tangent),
                                       rtol=1e-4)
    np.testing.assert_allclose(outs["cpu"], outs["jax"], atol=1e-5)


def test_vit_gradients_with_the_batch_sharded_over_devices():
    """8 simulated CPU devices, one image each: the custom_vjp backward passes partition
    like the rest of the step (same gradients as on one device)."""
    stdout = run_worker("vit_sharded_grads.py", devices=8)
    devices, worst = stdout.split()[1], float(stdout.split()[3])
    assert devices == "8" and worst <= 1e-5, stdout
