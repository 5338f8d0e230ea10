"""The train step's finiteness check: what it accepts, and the order it reduces in."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csra_jax import create_model
from csra_jax.train.steps import _all_finite, _layer_order


def _resnet101_grads_like():
    model = create_model("resnet101", 4, head="csra", img_size=32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    return jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), shapes["params"])


def test_layers_sort_in_model_order_not_string_order():
    paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(_resnet101_grads_like())[0]]
    names = [jax.tree_util.keystr(p) for p in sorted(paths, key=_layer_order)]
    blocks = [n.split("'")[3] for n in names if "layer3_" in n]
    order = list(dict.fromkeys(blocks))
    assert order == [f"layer3_{i}" for i in range(23)]  # string order: 0, 1, 10, 11, ...
    assert names.index("['backbone']['conv1']['kernel']") < names.index(
        "['backbone']['layer1_0']['conv1']['kernel']")


@pytest.mark.parametrize("bad", [None, np.inf, -np.inf, np.nan])
def test_any_inf_or_nan_gradient_is_caught(bad):
    grads = _resnet101_grads_like()
    if bad is not None:
        kernel = grads["backbone"]["layer3_17"]["conv2"]["kernel"]
        grads["backbone"]["layer3_17"]["conv2"]["kernel"] = kernel.at[1, 2, 3, 4].set(bad)
    assert bool(jax.jit(_all_finite)(grads)) == (bad is None)


def test_a_sum_of_squares_beyond_float32_counts_as_nonfinite():
    grads = {"a": jnp.full((4,), 1e19, jnp.float32), "b": jnp.ones((2,), jnp.bfloat16)}
    assert not bool(_all_finite(grads))
    grads["a"] = jnp.full((4,), 1e18, jnp.float32)
    assert bool(_all_finite(grads))
