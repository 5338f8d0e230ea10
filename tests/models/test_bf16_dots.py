"""bfloat16 models on CPU: every dot accumulates in float32 (a bf16-operand dot with an
f32 result), the form XLA:CPU runs on the CPU's bf16 dot instructions; a dot with a
bf16 result runs a slower kernel (bench/gemm_rates.py)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csra_jax import create_model
from csra_jax.models.resnet import Conv1x1

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu",
                                reason="the float32-accumulating dots are the CPU lowering")
DOT = re.compile(r"stablehlo\.dot_general .*?: \(tensor<[^>]*x(\w+)>, tensor<[^>]*x(\w+)>\)"
                 r" -> tensor<[^>]*x(\w+)>")


@pytest.mark.parametrize("arch,size", [("vit_b16", 32), ("resnet50", 64)])
def test_train_step_dots_take_bf16_operands_and_give_float32(arch, size):
    model = create_model(arch, 5, head="csra", num_heads=2, img_size=size,
                         dtype=jnp.bfloat16)
    images = jnp.zeros((2, size, size, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), images)

    def grads(v, x):
        loss = lambda p: model.apply({**v, "params": p}, x, train=True,
                                     mutable=["batch_stats"])[0].sum()
        return jax.grad(loss)(v["params"])
    dots = DOT.findall(jax.jit(grads).lower(variables, images).as_text())
    bf16 = [d for d in dots if d[:2] == ("bf16", "bf16")]
    assert len(bf16) > 100, dots  # forward and both backward dots of every layer
    assert all(result == "f32" for _, _, result in bf16), sorted(set(dots))


def test_bf16_conv1x1_matches_float32_within_bf16_rounding():
    """The low-precision 1x1 path (a float32-accumulating dot with its own backward)
    against the float32 layer on the same bf16-representable values."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 6, 6, 64)), jnp.bfloat16)
    d_y = jnp.asarray(rng.standard_normal((2, 3, 3, 32)), jnp.bfloat16)
    outs = {}
    for dtype in (jnp.float32, jnp.bfloat16):
        layer = Conv1x1(32, stride=2, dtype=dtype)
        params = layer.init(jax.random.key(1), x.astype(jnp.float32))
        params = jax.tree.map(lambda a: a.astype(jnp.bfloat16).astype(jnp.float32), params)
        y, vjp = jax.vjp(lambda p, x: layer.apply(p, x), params, x.astype(dtype))
        outs[dtype] = (y, *vjp(d_y.astype(dtype)))
    assert outs[jnp.bfloat16][0].dtype == jnp.bfloat16
    assert outs[jnp.bfloat16][2].dtype == jnp.bfloat16
    for ours, ref in zip(jax.tree.leaves(outs[jnp.bfloat16]), jax.tree.leaves(outs[jnp.float32])):
        ours, ref = np.asarray(ours, np.float32), np.asarray(ref, np.float32)
        # One rounding to bf16 (8 mantissa bits) of a float32-accumulated value.
        assert np.abs(ours - ref).max() <= 2 ** -8 * np.abs(ref).max(), (ours, ref)
