"""The ResNet blocks' output ReLU as a select (``resnet.residual_relu``): the same values
and derivative as ``relu`` (torch's and JAX's), and the reason it exists: XLA:CPU then
materialises each block's output once instead of folding the whole chain of earlier
blocks' BN + add + ReLU into every later block's fusion."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from csra_jax import create_model
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


def _largest_loop_fusion(fn, *args):
    """Operand count of the widest elementwise (kLoop) fusion XLA compiled for fn."""
    hlo = jax.jit(fn).lower(*args).compile().as_text()
    operands = [len(re.split(r",\s*(?![^()]*\))", m.group(1)))
                for m in re.finditer(r"= [^=]*? fusion\((.*?)\), kind=kLoop", hlo)]
    assert operands, "no loop fusion found: the HLO text format changed"
    return max(operands)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's fusion heuristics")
def test_block_outputs_are_not_recomputed_down_the_chain():
    """resnet50@64, eval and train: with ``max(s, 0)`` the last layer3 block's fusion
    took every earlier block's conv output (35 operands in eval, 30 in the gradient);
    with the select no elementwise fusion reads more than one block's worth."""
    model = create_model("resnet50", 5, head="gap", img_size=64)
    images = jnp.zeros((2, 64, 64, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), images)

    def train_grad(v, x):
        loss = lambda p: model.apply({**v, "params": p}, x, train=True,
                                     mutable=["batch_stats"])[0].sum()
        return jax.grad(loss)(v["params"])

    assert _largest_loop_fusion(model.apply, variables, images) <= 16
    assert _largest_loop_fusion(train_grad, variables, images) <= 16
