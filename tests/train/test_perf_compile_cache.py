"""A restarted process reuses the persistent XLA cache set up by the train loop: its train
step is read from disk (a cache hit), not compiled again."""

import json
import os
import subprocess
import sys

from repo_root import ROOT

# Builds the library's train step for resnet18@32 exactly as the loop does (config ->
# setup_compilation_cache, model_from_config, make_train_step) and compiles it once.
DRIVER = r"""
import json, sys, time
import jax, jax.numpy as jnp
from jax import monitoring
events = []
monitoring.register_event_listener(lambda event, **kw: events.append(event))
from csra_jax import config as config_lib
from csra_jax.train import loop, optimizer, steps
from csra_jax.train.state import TrainState, model_from_config
c = config_lib.base_config()
c.model.arch, c.model.num_heads, c.data.image_size = "resnet18", 2, 32
c.compilation_cache_dir = sys.argv[1]
loop.setup_compilation_cache(c)
model = model_from_config(c, num_classes=5)
x = jnp.zeros((4, 32, 32, 3))
variables = model.init(jax.random.key(0), x[:1])
tx, schedules = optimizer.create_optimizer(dict(c.optim, num_epochs=c.num_epochs, grad_accum_steps=1), 10)
mesh = steps.make_mesh()
state = TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                   batch_stats=variables["batch_stats"], opt_state=tx.init(variables["params"]),
                   rng=jax.random.PRNGKey(1),
                   nonfinite=jnp.zeros((), jnp.int32))
batch = {"image": x, "labels": jnp.zeros((4, 5), jnp.int8), "ignore": jnp.zeros((4, 5), jnp.int8),
         "mask": jnp.ones((4,)), "index": jnp.arange(4)}
t0 = time.perf_counter()
steps.make_train_step(model, tx, mesh, schedules).lower(state, batch).compile()
print(json.dumps({"seconds": time.perf_counter() - t0,
                  "hits": events.count("/jax/compilation_cache/cache_hits"),
                  "misses": events.count("/jax/compilation_cache/cache_misses")}))
"""


def _run(cache_dir):
    out = subprocess.run([sys.executable, "-c", DRIVER, cache_dir], cwd=ROOT, timeout=300,
                         capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_restarted_process_hits_the_compilation_cache(tmp_path):
    cache_dir = str(tmp_path / "xla_cache")
    first = _run(cache_dir)
    assert first["hits"] == 0 and first["misses"] >= 1, first
    assert os.listdir(cache_dir), "nothing was written to the cache"
    second = _run(cache_dir)
    assert second["hits"] >= 1 and second["misses"] == 0, (first, second)
