r"""Train and evaluate CSRA models.

    python -m csra_jax.main --config configs/demo.py --workdir /tmp/demo
    python -m csra_jax.main --config configs/coco_vit.py --workdir /mnt/runs/coco_vit \
        --config.batch_size=32 --config.mode=evaluate

--config.mode: train | evaluate | train_and_evaluate (default) | lambda_sweep.
Any config field can be overridden with --config.<field>=<value>; unknown fields and
invalid values are rejected before anything is compiled. A rerun with the same workdir
resumes from its latest checkpoint. Multi-host: run the same command on every host
(jax.distributed.initialize() picks up TPU / SLURM / explicit coordinator settings).
"""

from __future__ import annotations

import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

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
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import jax
    if _want_distributed():
        jax.distributed.initialize()
    from csra_jax.train.loop import NonFiniteLossError, run
    from csra_jax.data import DataError
    from csra_jax.train.disk_space import DiskFullError
    from csra_jax.train.run_lock import WorkdirLockedError
    logging.set_verbosity(logging.WARNING)
    try:
        run(_CONFIG.value, _WORKDIR.value)
    except (ValueError, FileNotFoundError, DataError, NonFiniteLossError, DiskFullError,
            WorkdirLockedError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def _unknown_field_message(error: Exception) -> str:
    text = str(error.args[0] if error.args else error)
    found = re.search(r'instead of "([\w.]+)"|Key "([\w.]+)"', text)
    name = (found.group(1) or found.group(2)) if found else text.strip("'\"\\")
    hint = re.search(r'Did you mean "([\w.]+)"', text)
    return (f"unknown config field {name!r}" + (f"; did you mean {hint.group(1)!r}?" if hint else "")
            + " (the fields are in csra_jax/train/config.py)")


def _parse_flags(argv):
    """absl's parser, but a misspelt config field ends in one clear line (exit 2)."""
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:  # locked ConfigDict: unknown field
        print(f"error: {_unknown_field_message(e)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
