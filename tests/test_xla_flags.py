"""The CLI's XLA flag: XLA:CPU's memory-minimising scheduler, set before JAX starts."""

import os
import subprocess
import sys
import types

import pytest

import csra_jax.main as cli
from csra_jax import xla_flags
from csra_jax.xla_flags import CPU_SCHEDULER_FLAG, prefer_cpu_memory_scheduler
from repo_root import ROOT

# Compiles a small_cnn train-mode gradient and prints XLA's temp bytes for it.
_WORKER = """
import jax, jax.numpy as jnp
from csra_jax import create_model
from csra_jax.xla_flags import prefer_cpu_memory_scheduler
print("ADDED", prefer_cpu_memory_scheduler())
model = create_model("small_cnn", 10, head="csra", img_size=128)
x = jnp.zeros((16, 128, 128, 3))
variables = jax.jit(model.init)(jax.random.key(0), x[:1])
def loss(params):
    out, _ = model.apply({**variables, "params": params}, x, train=True,
                         mutable=["batch_stats"])
    return out.sum()
compiled = jax.jit(jax.grad(loss)).lower(variables["params"]).compile()
print("TEMP", compiled.memory_analysis().temp_size_in_bytes)
"""


def test_flag_is_appended_once_and_a_users_setting_wins(monkeypatch):
    # As in a fresh process (this one's backend may already be up from other tests).
    monkeypatch.setattr(xla_flags, "backends_started", lambda: False)
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    assert prefer_cpu_memory_scheduler(env)
    assert env["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=8 "
                                f"{CPU_SCHEDULER_FLAG}=false")
    assert not prefer_cpu_memory_scheduler(env)  # already there: not added twice
    assert env["XLA_FLAGS"].count(CPU_SCHEDULER_FLAG) == 1
    for value in ("true", "false"):
        env = {"XLA_FLAGS": f"{CPU_SCHEDULER_FLAG}={value}"}
        assert not prefer_cpu_memory_scheduler(env)
        assert env["XLA_FLAGS"] == f"{CPU_SCHEDULER_FLAG}={value}"
    env = {}
    assert prefer_cpu_memory_scheduler(env) and env["XLA_FLAGS"] == f"{CPU_SCHEDULER_FLAG}=false"


def test_not_added_once_a_backend_has_started():
    import jax
    jax.devices()  # this test process's backend is up: the flag would not be read
    env = {}
    assert not prefer_cpu_memory_scheduler(env) and env == {}


def _temp_bytes(xla_flags):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    if xla_flags:
        env["XLA_FLAGS"] = xla_flags
    out = subprocess.run([sys.executable, "-c", _WORKER], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(l.split(" ", 1) for l in out.stdout.splitlines() if " " in l)
    return lines["ADDED"] == "True", int(lines["TEMP"])


def test_the_flag_takes_effect_and_shrinks_the_compiled_gradients_buffers():
    added, ours = _temp_bytes(None)
    kept, xla_default = _temp_bytes(f"{CPU_SCHEDULER_FLAG}=true")
    assert added and not kept
    assert ours < 0.9 * xla_default, (ours, xla_default)


def test_the_training_cli_sets_it_before_jax_starts(monkeypatch, tmp_path):
    calls = []

    class Stop(Exception):
        pass

    def record(name):
        def setter(environ=None):
            calls.append((name, environ))
            return True
        return setter

    def stop():
        raise Stop

    monkeypatch.setattr(cli, "prefer_cpu_memory_scheduler", record("xla_flags"))
    monkeypatch.setattr(cli, "configure_host_heap", record("host_heap"))
    monkeypatch.setattr(cli, "_want_distributed", stop)
    monkeypatch.setattr(cli, "_WORKDIR", types.SimpleNamespace(value=str(tmp_path)))
    with pytest.raises(Stop):
        cli.main(["python -m csra_jax.main"])
    # Both before jax.distributed / the first computation, on the process environment.
    assert calls == [("xla_flags", None), ("host_heap", None)]
