r"""Train and evaluate CSRA models.

    python -m csra_jax.main --config configs/demo.py --workdir /tmp/demo
    python -m csra_jax.main --config configs/coco_vit.py --workdir /mnt/runs/coco_vit \
        --config.batch_size=32 --config.mode=evaluate
    python -m csra_jax.main --config configs/coco_vit.py --workdir gs://bucket/runs/coco_vit

--config.mode: train | evaluate | train_and_evaluate (default) | lambda_sweep.
Any config field can be overridden with --config.<field>=<value>; unknown fields,
values of the wrong type, a missing config file and a workdir that cannot be written are
rejected with one `error:` line (exit 2) before anything is built or compiled
(csra_jax/cli_checks.py). A rerun with the same workdir resumes from its latest checkpoint. Multi-host: run the same command on every host
(jax.distributed.initialize() picks up TPU / SLURM / explicit coordinator settings).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from csra_jax.cli_checks import check_workdir, fail, parse_flags
from csra_jax.host_heap import configure_host_heap
from csra_jax.xla_flags import prefer_cpu_memory_scheduler

if __name__ == "__main__":
    # absl names the flags' module and the usage line after argv[0] (a file path under
    # `python -m`); name the tool as users type it. Set before the flags are defined.
    sys.argv[0] = "python -m csra_jax.main"

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file in configs/.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, predictions.")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "auto", ["auto", "on", "off"],
    "jax.distributed.initialize(): auto = when a cluster environment (TPU pod, SLURM, "
    "JAX_COORDINATOR_ADDRESS) is detected.")
flags.mark_flags_as_required(["config", "workdir"])


def _want_distributed() -> bool:
    if _DISTRIBUTED.value != "auto":
        return _DISTRIBUTED.value == "on"
    return any(v in os.environ for v in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS",
                                         "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS"))


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {' '.join(argv[1:])!r}: everything is a flag "
             "(--config, --workdir, --config.<field>=<value>)")
    try:
        check_workdir(_WORKDIR.value)
    except ValueError as e:
        fail(str(e))
    prefer_cpu_memory_scheduler()  # before any JAX computation starts a backend
    try:  # CSRA_JAX_HOST_HEAP, before XLA's threads take malloc arenas
        configure_host_heap()
    except ValueError as e:
        fail(str(e))
    import jax
    if _want_distributed():
        jax.distributed.initialize()
    from csra_jax.train.loop import NonFiniteLossError, run
    from csra_jax.data import DataError
    from csra_jax.train.disk_space import DiskFullError
    from csra_jax.run.lock import WorkdirLockedError
    logging.set_verbosity(logging.WARNING)
    try:
        run(_CONFIG.value, _WORKDIR.value)
    except (ValueError, FileNotFoundError, DataError, NonFiniteLossError, DiskFullError,
            WorkdirLockedError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
