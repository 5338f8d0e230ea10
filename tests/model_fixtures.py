"""Model variables for tests without paying for model.init's compile."""

import jax
import jax.numpy as jnp
import numpy as np


def random_variables(model, size, seed=0):
    """Small random weights, identity BatchNorm: model.init's cost without its compile."""
    abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
    rng = np.random.default_rng(seed)

    def leaf(path, x):
        name = path[-1].key
        if name in ("var", "scale"):
            return np.ones(x.shape, np.float32)
        if name in ("mean", "bias"):
            return np.zeros(x.shape, np.float32)
        fan_in = int(np.prod(x.shape[:-1]))
        return (rng.normal(size=x.shape) * np.sqrt(0.5 / fan_in)).astype(np.float32)
    return jax.tree_util.tree_map_with_path(leaf, abstract)


def jit_once(fn):
    """``jax.jit`` for a test's one-shot calls: XLA's CPU backend optimisations off halves
    the compile time (e.g. EfficientNet-B3 train step 5.2 s -> 2.7 s on 2 cores); the ops
    and their float32 results are the same up to fusion order."""
    return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0})
