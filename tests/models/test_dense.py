"""``csra_jax.models.dense.Dense`` (the swapped weight gradient) against ``nn.Dense`` and
against torch's ``linear`` and its autograd."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from csra_jax.models.dense import Dense, dense_dot


def _inputs(seed=0, shape=(2, 197, 48), features=80):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    d_y = rng.standard_normal(shape[:-1] + (features,)).astype(np.float32)
    return x, d_y


def test_same_parameters_as_nn_dense():
    x, _ = _inputs()
    init = nn.initializers.truncated_normal(0.02)
    ours = Dense(80, kernel_init=init).init(jax.random.key(0), x)
    flax = nn.Dense(80, kernel_init=init).init(jax.random.key(0), x)
    assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(flax)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(flax)):
        np.testing.assert_array_equal(a, b)


def test_output_and_gradients_match_torch_linear():
    x, d_y = _inputs(seed=1)
    params = Dense(80, bias_init=nn.initializers.normal(1.0)).init(jax.random.key(1), x)
    kernel = np.asarray(params["params"]["kernel"])
    bias = np.asarray(params["params"]["bias"])
    tx, tw, tb = (torch.from_numpy(a.copy()).requires_grad_(True)
                  for a in (x, kernel.T, bias))
    ty = torch.nn.functional.linear(tx, tw, tb)
    ty.backward(torch.from_numpy(d_y))
    y, vjp = jax.vjp(lambda p, x: Dense(80).apply(p, x), params, x)
    d_params, d_x = vjp(jnp.asarray(d_y))
    pairs = [("y", y, ty.detach().numpy()), ("x", d_x, tx.grad.numpy()),
             ("kernel", d_params["params"]["kernel"], tw.grad.numpy().T),
             ("bias", d_params["params"]["bias"], tb.grad.numpy())]
    for name, ours, ref in pairs:
        assert np.abs(np.asarray(ours) - ref).max() <= 1e-5 * np.abs(ref).max(), name


def test_low_precision_gradients_keep_the_operand_dtypes():
    x, d_y = _inputs(seed=2, shape=(3, 5, 8), features=4)
    w = jnp.asarray(np.random.default_rng(3).standard_normal((8, 4)), jnp.float32)
    _, vjp = jax.vjp(dense_dot, jnp.asarray(x, jnp.bfloat16), w.astype(jnp.bfloat16))
    d_x, d_w = vjp(jnp.asarray(d_y, jnp.bfloat16))
    assert d_x.dtype == jnp.bfloat16 and d_w.dtype == jnp.bfloat16
    assert d_x.shape == x.shape and d_w.shape == w.shape


def test_weight_grad_choices_give_the_same_gradients_and_bad_names_raise():
    x, d_y = _inputs(seed=4, shape=(2, 7, 8), features=5)
    grads = {}
    for choice in ("swapped", "autodiff"):
        layer = Dense(5, weight_grad=choice)
        params = layer.init(jax.random.key(0), x)
        grads[choice] = jax.vjp(lambda p: layer.apply(p, x), params)[1](jnp.asarray(d_y))[0]
    for a, b in zip(jax.tree_util.tree_leaves(grads["swapped"]),
                    jax.tree_util.tree_leaves(grads["autodiff"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="weight_grad='transposed'; valid: auto, swapped"):
        Dense(5, weight_grad="transposed").init(jax.random.key(0), x)
