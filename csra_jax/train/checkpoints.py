"""orbax checkpoints under the workdir: the last K (state + data-iterator state + meta)
in ``checkpoints/`` and the best by eval mAP in ``best/``.

Saves are asynchronous and atomic (orbax writes to a temporary directory and renames),
so a run killed at any moment restarts from the last finished checkpoint; the grain
iterator state makes the resumed run read the same batches it would have read.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Tuple

import grain
import jax
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding


def _abstract_with_sharding(abstract_tree, sharding: NamedSharding):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                        abstract_tree)


class Checkpoints:
    def __init__(self, workdir: str, keep: int, best_metric: str = "mAP"):
        workdir = os.path.abspath(os.path.expanduser(workdir))
        self.latest = ocp.CheckpointManager(
            os.path.join(workdir, "checkpoints"),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            item_names=("state", "data", "meta"))
        self.best = ocp.CheckpointManager(
            os.path.join(workdir, "best"),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1, best_fn=lambda m: m[best_metric], best_mode="max",
                keep_checkpoints_without_metrics=False, create=True),
            item_names=("state", "meta"))

    def save(self, step: int, state, data_iter, meta: dict, force: bool = False) -> bool:
        return self.latest.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(data_iter),
            meta=ocp.args.JsonSave(meta)), force=force)

    def save_best(self, step: int, state, metrics: dict, meta: dict) -> None:
        if step in self.best.all_steps():
            return
        self.best.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})

    def restore_latest(self, abstract_state, sharding: NamedSharding,
                       data_iter=None) -> Optional[Tuple[Any, dict]]:
        step = self.latest.latest_step()
        if step is None:
            return None
        args = dict(state=ocp.args.StandardRestore(_abstract_with_sharding(abstract_state, sharding)),
                    meta=ocp.args.JsonRestore())
        if data_iter is not None:
            args["data"] = grain.checkpoint.CheckpointRestore(data_iter)
        restored = self.latest.restore(step, args=ocp.args.Composite(**args))
        return restored["state"], dict(restored["meta"])

    def restore_for_eval(self, abstract_state, sharding: NamedSharding,
                         which: str = "best") -> Optional[Tuple[Any, dict, str]]:
        """The best checkpoint (or the latest if none was rated yet)."""
        order = (self.best, self.latest) if which == "best" else (self.latest, self.best)
        for mngr in order:
            step = mngr.best_step() if mngr is self.best else mngr.latest_step()
            if step is None:
                continue
            restored = mngr.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_abstract_with_sharding(abstract_state, sharding)),
                meta=ocp.args.JsonRestore()))
            return restored["state"], dict(restored["meta"]), str(mngr.directory / str(step))
        return None

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()
