"""The ResNet blocks' output ReLU as a select (``resnet.residual_relu``): the same values
and derivative as ``relu``, torch's and JAX's (why it is a select:
test_cpu_hlo_structure.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import torch

from csra_jax.models.resnet import residual_relu

POINTS = np.array([-3.0, -1e-30, -0.0, 0.0, 1e-30, 2.5, np.inf, -np.inf, np.nan], np.float32)


def test_values_and_derivative_match_relu():
    x = jnp.asarray(POINTS)
    np.testing.assert_array_equal(residual_relu(x), jax.nn.relu(x))  # NaN where relu's
    ours = jax.grad(lambda v: jnp.sum(residual_relu(v) * jnp.arange(1.0, 10.0)))(x)
    xt = torch.tensor(POINTS, requires_grad=True)
    (torch.relu(xt) * torch.arange(1.0, 10.0)).sum().backward()
    # 0 at 0, as torch's (at NaN torch passes the gradient through, JAX's relu gives 0)
    np.testing.assert_array_equal(ours[:-1], xt.grad.numpy()[:-1])
    np.testing.assert_array_equal(ours, jax.grad(
        lambda v: jnp.sum(jax.nn.relu(v) * jnp.arange(1.0, 10.0)))(x))
