"""One process of a 2-process job (jax.distributed over localhost) that starts a run on
a workdir: prints ``locked-out: <message>`` if the run refuses to start.

    python locked_run.py WORKDIR DATA_DIR --process-id I --num-processes N --port P
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("workdir")
    p.add_argument("data_dir")
    p.add_argument("--process-id", type=int, default=0)
    p.add_argument("--num-processes", type=int, default=1)
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()

    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"localhost:{args.port}",
                               num_processes=args.num_processes, process_id=args.process_id)
    from config_fixtures import tiny_config
    from csra_jax.train import loop
    from csra_jax.train.run_lock import WorkdirLockedError
    config = tiny_config(args.data_dir, "", mode="train", max_steps=2,
                         **{"model.arch": "small_cnn"})
    try:
        loop.run(config, args.workdir)
    except WorkdirLockedError as e:
        print(f"locked-out: {e}", flush=True)
        return
    print("trained", flush=True)


if __name__ == "__main__":
    main()
