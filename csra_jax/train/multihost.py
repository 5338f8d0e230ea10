"""Multi-host steps of the trainer's set-up: work done by process 0 alone whose failure
every process must share (else the others wait for it in a collective forever)."""

from __future__ import annotations

import jax
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from csra_jax.run.lock import RunLock, WorkdirLockedError


def is_main() -> bool:
    """Whether this is process 0 (the one that writes, prints and locks)."""
    return jax.process_index() == 0


class _NoLock:
    def release(self):
        pass


def on_main_then_share(fn, error_type, others_message: str):
    """Runs ``fn`` on process 0 only; if it raises, every other process raises
    ``error_type(others_message)`` instead of waiting for process 0 in a collective."""
    result, error = None, None
    if is_main():
        try:
            result = fn()
        except Exception as e:  # pylint: disable=broad-except
            error = e
    if jax.process_count() > 1:
        failed = int(multihost_utils.broadcast_one_to_all(np.int32(error is not None)))
        if failed and error is None:
            error = error_type(f"{others_message} (process 0's output says why).")
    if error is not None:
        raise error
    return result


def lock_workdir(workdir: str):
    """Process 0 takes ``workdir/run.lock``; the other processes learn whether it did."""
    def take():
        epath.Path(workdir).mkdir(parents=True, exist_ok=True)
        return RunLock(workdir).acquire()
    lock = on_main_then_share(take, WorkdirLockedError,
                               f"process 0 could not lock the workdir {workdir}")
    return lock if lock is not None else _NoLock()
