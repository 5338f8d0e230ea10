"""CSRAHead: parity with a torch implementation of the paper's equations, properties, errors."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from csra_jax import PAPER_TEMPERATURES, CSRAHead, GAPHead
from torch_reference import TorchMHA, max_rel_diff

B, H_, W_, D, C = 3, 5, 6, 32, 7


def _features(seed=0, shape=(B, H_, W_, D)):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def _torch_logits(kernel, x, temperatures, lam, normalize):
    """kernel (H, d, C) -> the torch MHA's conv weights; x NHWC -> NCHW."""
    ref = TorchMHA(temperatures, lam, D, C, normalize)
    with torch.no_grad():
        for i, head in enumerate(ref.multi_head):
            head.head.weight.copy_(torch.from_numpy(np.array(kernel[i]).T[:, :, None, None].copy()))
        return ref(torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())).numpy()


@pytest.mark.parametrize("num_heads", [1, 2, 4, 6, 8])
@pytest.mark.parametrize("normalize", [True, False])
def test_parity_with_torch_equations(num_heads, normalize):
    lam = 0.3
    head = CSRAHead(C, num_heads=num_heads, lam=lam, normalize=normalize)
    x = _features(num_heads)
    variables = head.init(jax.random.key(1), x)
    ours = head.apply(variables, x)
    ref = _torch_logits(variables["params"]["kernel"], x, PAPER_TEMPERATURES[num_heads], lam,
                        normalize)
    assert ours.shape == (B, C) and ours.dtype == jnp.float32
    assert max_rel_diff(ours, ref) <= 1e-5


def test_default_temperatures_are_the_papers():
    assert PAPER_TEMPERATURES[1] == (1.0,)
    assert PAPER_TEMPERATURES[2] == (1.0, math.inf)
    assert PAPER_TEMPERATURES[4] == (1.0, 2.0, 4.0, math.inf)
    assert PAPER_TEMPERATURES[6] == (1.0, 2.0, 3.0, 4.0, 5.0, math.inf)
    assert PAPER_TEMPERATURES[8] == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, math.inf)


def test_kernel_is_stacked_over_heads():
    head = CSRAHead(C, num_heads=4)
    variables = head.init(jax.random.key(0), _features())
    assert jax.tree.map(jnp.shape, variables) == {"params": {"kernel": (4, D, C)}}


def test_lam_zero_is_gap_classifier_on_normalised_weights():
    x = _features()
    head = CSRAHead(C, lam=0.0)
    variables = head.init(jax.random.key(0), x)
    w = variables["params"]["kernel"][0]
    w_hat = w / jnp.linalg.norm(w, axis=0, keepdims=True)
    expected = jnp.mean(x, axis=(1, 2)) @ w_hat
    np.testing.assert_allclose(head.apply(variables, x), expected, rtol=1e-5, atol=1e-6)


def test_infinite_temperature_is_exact_max_pool():
    x = _features()
    head = CSRAHead(C, num_heads=1, lam=1.0, temperatures=[math.inf], normalize=False)
    variables = head.init(jax.random.key(0), x)
    score = jnp.einsum("bhwd,dc->bhwc", x, variables["params"]["kernel"][0])
    expected = score.mean(axis=(1, 2)) + score.max(axis=(1, 2))
    np.testing.assert_allclose(head.apply(variables, x), expected, rtol=1e-6, atol=1e-6)


def test_large_temperature_approaches_max():
    x = _features()
    inf_head = CSRAHead(C, lam=1.0, temperatures=[math.inf])
    variables = inf_head.init(jax.random.key(0), x)
    exact = inf_head.apply(variables, x)
    gaps = [float(jnp.abs(CSRAHead(C, lam=1.0, temperatures=[t]).apply(variables, x) - exact).max())
            for t in (1.0, 10.0, 100.0, 1000.0)]
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 1e-2


def test_heads_sum():
    x = _features()
    temps = [1.0, 3.0, math.inf]
    multi = CSRAHead(C, num_heads=3, lam=0.5, temperatures=temps)
    variables = multi.init(jax.random.key(0), x)
    kernel = variables["params"]["kernel"]
    singles = [CSRAHead(C, lam=0.5, temperatures=[t]).apply({"params": {"kernel": kernel[i:i + 1]}}, x)
               for i, t in enumerate(temps)]
    np.testing.assert_allclose(multi.apply(variables, x), sum(singles), rtol=1e-5, atol=1e-5)


def test_tokens_and_feature_map_agree():
    x = _features()
    head = CSRAHead(C, num_heads=2)
    variables = head.init(jax.random.key(0), x)
    tokens = x.reshape(B, H_ * W_, D)
    np.testing.assert_array_equal(head.apply(variables, x), head.apply(variables, tokens))


def test_jit_and_grad():
    x = _features()
    head = CSRAHead(C, num_heads=8, lam=1.0)
    variables = head.init(jax.random.key(0), x)

    @jax.jit
    def loss(params, x):
        return jnp.sum(head.apply({"params": params}, x) ** 2)

    grads = jax.grad(loss)(variables["params"], x)
    assert grads["kernel"].shape == (8, D, C)
    assert bool(jnp.all(jnp.isfinite(grads["kernel"]))) and float(jnp.abs(grads["kernel"]).sum()) > 0
    # Gradient w.r.t. the input matches finite differences along a random direction.
    v = _features(7)
    f = lambda t: loss(variables["params"], x + t * v)
    gx = jax.grad(lambda x: loss(variables["params"], x))(x)
    eps = 1e-2
    fd = (f(eps) - f(-eps)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(gx, v), fd, rtol=2e-2)


def test_batch_size_independence():
    x = _features(shape=(8, H_, W_, D))
    head = CSRAHead(C, num_heads=4, lam=0.5)
    variables = head.init(jax.random.key(0), x)
    full = head.apply(variables, x)
    parts = jnp.concatenate([head.apply(variables, x[i:i + 1]) for i in range(8)])
    np.testing.assert_allclose(full, parts, rtol=1e-5, atol=1e-6)


def test_bf16_compute_keeps_float32_params_and_logits():
    x = _features()
    head = CSRAHead(C, num_heads=4, dtype=jnp.bfloat16)
    variables = head.init(jax.random.key(0), x)
    assert variables["params"]["kernel"].dtype == jnp.float32
    out = head.apply(variables, x)
    assert out.dtype == jnp.float32
    ref = CSRAHead(C, num_heads=4).apply(variables, x)
    assert max_rel_diff(out, ref) < 3e-2


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_heads=3), "num_heads=3 has no default temperature set"),
    (dict(num_heads=5), "num_heads=5 has no default temperature set"),
    (dict(lam=-0.1), "lam must be >= 0"),
    (dict(num_heads=2, temperatures=[1.0, 0.0]), "temperature 0.0 is invalid"),
    (dict(num_heads=1, temperatures=[-2.0]), "temperature -2.0 is invalid"),
    (dict(num_heads=1, temperatures=[float("nan")]), "temperature nan is invalid"),
    (dict(num_heads=2, temperatures=[1.0]), "got 1 temperatures"),
    (dict(num_heads=0), "num_heads must be a positive int"),
])
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CSRAHead(C, **kwargs)


def test_invalid_input_rank():
    head = CSRAHead(C)
    with pytest.raises(ValueError, match="expected a feature map"):
        head.init(jax.random.key(0), jnp.ones((2, D)))


@pytest.mark.parametrize("temps", [[0.5, 2.0, math.inf], [math.inf, 1.0, 3.0, math.inf, 0.5]])
def test_explicit_temperatures_any_count_and_order(temps):
    x = _features()
    head = CSRAHead(C, num_heads=len(temps), temperatures=temps, lam=0.2)
    variables = head.init(jax.random.key(0), x)
    ref = _torch_logits(variables["params"]["kernel"], x, temps, 0.2, True)
    assert max_rel_diff(head.apply(variables, x), ref) <= 1e-5


def test_head_inside_a_users_linen_model():
    class MyModel(nn.Module):
        @nn.compact
        def __call__(self, images):
            x = nn.relu(nn.Conv(16, (3, 3), strides=(2, 2))(images))
            return CSRAHead(num_classes=5, num_heads=2, lam=0.2)(x)

    model = MyModel()
    images = jnp.ones((2, 16, 16, 3))
    variables = model.init(jax.random.key(0), images)
    assert model.apply(variables, images).shape == (2, 5)
    assert variables["params"]["CSRAHead_0"]["kernel"].shape == (2, 16, 5)


def test_gap_head_training_free_max_term():
    x = _features()
    gap = GAPHead(C)
    variables = gap.init(jax.random.key(0), x)
    k, b = variables["params"]["kernel"], variables["params"]["bias"]
    score_map = jnp.einsum("bhwd,dc->bhwc", x, k) + b
    np.testing.assert_allclose(gap.apply(variables, x), score_map.mean(axis=(1, 2)),
                               rtol=1e-5, atol=1e-5)
    out = GAPHead(C, max_lam=0.3).apply(variables, x)
    np.testing.assert_allclose(out, score_map.mean(axis=(1, 2)) + 0.3 * score_map.max(axis=(1, 2)),
                               rtol=1e-5, atol=1e-5)
