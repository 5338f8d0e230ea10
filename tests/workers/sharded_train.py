"""Runs a few real train steps of a small ResNet on a fixed global batch and saves the
final params; run under 1 device, 8 simulated devices, or several processes.

    python sharded_train.py OUT.npz [--process-id I --num-processes N --port P]
"""

import argparse
import sys

import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--process-id", type=int, default=0)
    p.add_argument("--num-processes", type=int, default=1)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()

    import jax
    if args.num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"localhost:{args.port}",
                                   num_processes=args.num_processes, process_id=args.process_id)
    import jax.numpy as jnp
    from flax import traverse_util

    from csra_jax import create_model
    from csra_jax.train.optimizer import create_optimizer
    from csra_jax.train.state import TrainState
    from csra_jax.train.steps import batch_sharding, make_mesh, make_train_step, replicated

    mesh = make_mesh()
    model = create_model("resnet18", 5, num_heads=2, lam=0.5, img_size=32)
    tx, schedules = create_optimizer(dict(lr_backbone=0.01, lr_head=0.1, num_epochs=3,
                                          lr_step_epochs=1, warmup_epochs=0), 1)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    state = TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                       batch_stats=variables["batch_stats"], opt_state=tx.init(variables["params"]),
                       rng=jax.random.PRNGKey(1), nonfinite=jnp.zeros((), jnp.int32))
    init_conv1 = np.array(variables["params"]["backbone"]["conv1"]["kernel"])  # before donation
    state = jax.device_put(state, replicated(mesh))
    step_fn = make_train_step(model, tx, mesh, schedules)

    rng = np.random.default_rng(0)
    global_batch = 8
    per_proc = global_batch // jax.process_count()
    lo = jax.process_index() * per_proc
    sharding = batch_sharding(mesh)
    for _ in range(args.steps):
        full = {"image": rng.random((global_batch, 32, 32, 3), dtype=np.float32),
                "labels": (rng.random((global_batch, 5)) < 0.3).astype(np.int8),
                "ignore": np.zeros((global_batch, 5), np.int8),
                "mask": np.ones((global_batch,), np.float32),
                "index": np.arange(global_batch, dtype=np.int32)}
        batch = {k: jax.make_array_from_process_local_data(sharding, v[lo:lo + per_proc])
                 for k, v in full.items()}
        state, metrics = step_fn(state, batch)
    flat = traverse_util.flatten_dict(jax.device_get({"params": state.params,
                                                      "batch_stats": state.batch_stats}),
                                      sep="/")
    if jax.process_index() == 0:
        np.savez(args.out, loss=np.asarray(jax.device_get(metrics["loss"])), init_conv1=init_conv1,
                 devices=jax.device_count(), **flat)
    print("done", jax.process_index(), jax.device_count(), flush=True)


if __name__ == "__main__":
    sys.exit(main())
