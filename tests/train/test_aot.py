"""csra_jax.train.aot.compile_on_first_call: the step compiled before its first run, the
hook called in between, results and donation as with the plain jitted function."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csra_jax.train import aot


def _step():
    return jax.jit(lambda state, batch: (state + batch.sum(), batch * 2.0), donate_argnums=0)


def test_first_call_compiles_then_runs_the_executable():
    events = []
    jitted = _step()
    call = aot.compile_on_first_call(jitted, lambda: events.append("after_compile"))
    state = jnp.zeros(3)
    for i in range(3):
        batch = jnp.full((2, 4), float(i))
        want = (np.asarray(state) + 8.0 * i, 2.0 * np.asarray(batch))
        state, out = call(state, batch)
        np.testing.assert_array_equal(state, want[0])
        np.testing.assert_array_equal(out, want[1])
    assert events == ["after_compile"]  # once, after compiling, before anything ran
    assert jitted._cache_size() == 0  # every call ran the AOT executable, not jit's path


def test_the_state_is_still_donated():
    call = aot.compile_on_first_call(_step(), lambda: None)
    state = jnp.zeros(3)
    call(state, jnp.ones((2, 4)))
    assert state.is_deleted()


def test_arguments_of_another_shape_go_through_jit():
    jitted = _step()
    call = aot.compile_on_first_call(jitted, lambda: None)
    call(jnp.zeros(3), jnp.ones((2, 4)))
    state, out = call(jnp.zeros(3), jnp.ones((1, 4)))  # e.g. a smaller last batch
    np.testing.assert_array_equal(state, np.full(3, 4.0))
    assert out.shape == (1, 4) and jitted._cache_size() == 1


def test_other_errors_are_not_swallowed():
    def bad(x):
        raise TypeError("a bug in the step")
    call = aot.compile_on_first_call(jax.jit(bad), lambda: None)
    with pytest.raises(TypeError, match="a bug in the step"):
        call(jnp.zeros(3))
