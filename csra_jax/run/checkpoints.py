"""orbax checkpoints under the workdir: the last K (state + data-iterator state + meta)
in ``checkpoints/`` and the best by eval mAP in ``best/``.

Saves are asynchronous and atomic (orbax writes to a temporary directory and renames),
so a run killed at any moment restarts from the last finished checkpoint; the grain
iterator state makes the resumed run read the same batches it would have read.

Every step carries a sha256 manifest (``checksums``) written before its commit and
verified before it is restored: a damaged step is named in one warning line and the
newest step that verifies is used instead (``on_damaged_checkpoint="stop"`` stops).
Training moves a damaged step aside to ``<step>.damaged`` so the run can save that step
again. Temporary directories left by a kill during a save are removed at start-up, and
the steps whose ``best/`` save was lost are reported so the trainer can re-rate them.
On ``gs://`` orbax writes a step in place and commits it with ``commit_success.txt``
(object stores cannot rename a directory), so there an unfinished save is a step
directory without that file.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.sharding import NamedSharding

from csra_jax.run import checksums
from csra_jax.run.paths import BEST, CHECKPOINTS, is_cloud
from csra_jax.tasks.base import LEGACY_RATING_KEY

TMP_MARK = ".orbax-checkpoint-tmp"
COMMIT_FILE = "commit_success.txt"
_TMP_RE = re.compile(r"^(\d+)" + re.escape(TMP_MARK))
ON_DAMAGED = ("fallback", "stop")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (one line: which step, what is wrong, what to do)."""


def _is_main() -> bool:
    return jax.process_index() == 0


def _say(msg: str) -> None:
    if _is_main():
        print(msg, flush=True)


def _abstract_with_sharding(abstract_tree, sharding):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                        abstract_tree)


def handler_registry(items: Sequence[str], partial_state: bool = False
                     ) -> ocp.handlers.DefaultCheckpointHandlerRegistry:
    """Which handler saves and restores each item of a step; ``partial_state``: the state
    is read in part (inference: no optimizer state), through orbax's PyTree handler."""
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    if "state" in items and partial_state:
        registry.add("state", ocp.args.PyTreeRestore)
    elif "state" in items:
        registry.add("state", ocp.args.StandardSave)
        registry.add("state", ocp.args.StandardRestore)
    if "data" in items:
        handler = grain.checkpoint.CheckpointHandler()
        registry.add("data", grain.checkpoint.CheckpointSave, handler)
        registry.add("data", grain.checkpoint.CheckpointRestore, handler)
    if "meta" in items:
        registry.add("meta", ocp.args.JsonSave)
        registry.add("meta", ocp.args.JsonRestore)
    return registry


def make_manager(directory, items: Sequence[str], policy=None, reader: bool = False,
                 on_saved: Optional[Callable[[], None]] = None) -> ocp.CheckpointManager:
    """A ``CheckpointManager`` over ``directory``, for training and evaluation, or, with
    ``reader``, for prediction (creates nothing, reads the state in part)."""
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, create=not reader, save_root_metadata=not reader,
        async_options=ocp.AsyncOptions(post_finalization_callback=on_saved)
        if on_saved else None)
    return ocp.CheckpointManager(epath.Path(directory), options=options,
                                 handler_registry=handler_registry(items, reader))


def remove_leftovers(root) -> List[int]:
    """Deletes ``<step>.orbax-checkpoint-tmp*`` directories (a save cut short by a kill)
    under ``root``; returns their steps. Process 0 only."""
    root = epath.Path(root)
    if not _is_main() or not root.is_dir():
        return []
    steps, cloud = [], is_cloud(root)
    for path in sorted(root.iterdir()):
        found = _TMP_RE.match(path.name) or (re.fullmatch(r"(\d+)", path.name) if cloud
                                             and not is_committed(path) else None)
        if found and path.is_dir():
            path.rmtree()
            steps.append(int(found.group(1)))
    if steps:
        _say(f"removed {len(steps)} unfinished save(s) of step(s) "
             f"{', '.join(map(str, steps))} in {root} (interrupted by a kill)")
    return steps


def is_committed(step: epath.Path) -> bool:
    """A step that orbax finished: on an object store its commit file is there."""
    return not is_cloud(step) or (step / COMMIT_FILE).exists()


def step_dir(mngr: ocp.CheckpointManager, step: int) -> epath.Path:
    return epath.Path(mngr.directory) / str(step)


def _set_aside(path: epath.Path) -> epath.Path:
    target, n = path.parent / f"{path.name}.damaged", 1
    while target.exists():
        n += 1
        target = path.parent / f"{path.name}.damaged{n}"
    path.rename(target)
    return target


def restore_verified(candidates: Sequence[Tuple[ocp.CheckpointManager, int]],
                     make_args: Callable[[ocp.CheckpointManager], Any], on_damaged: str,
                     action: str, set_aside: bool = False):
    """Restores the first candidate (manager, step) whose files verify.

    Returns ``(manager, step, restored)`` or None when there are no candidates. A damaged
    step is named in one warning line; ``on_damaged="stop"`` raises instead of falling back.
    A step saved before manifests were kept (none present) is restored unverified.
    """
    damaged = []
    for mngr, step in candidates:
        where = step_dir(mngr, step)
        problem = checksums.verify(where) if checksums.has_manifest(where) else None
        if problem is not None:
            if on_damaged == "stop":
                raise CheckpointError(
                    f"checkpoint {where} is damaged: {problem}. Rerun with "
                    "--config.on_damaged_checkpoint=fallback to use the newest step that "
                    "verifies, or put the original files back.")
            damaged.append((mngr, step, where, problem, True))
            continue
        try:
            restored = mngr.restore(step, args=make_args(mngr))
        except Exception as e:  # pylint: disable=broad-except
            if on_damaged == "stop":
                raise CheckpointError(f"cannot restore {where}: {_first_line(e)}") from None
            # Not set aside: the verified bytes may be fine and the reader the problem.
            damaged.append((mngr, step, where, f"unreadable ({_first_line(e)})", False))
            continue
        for d_mngr, d_step, d_where, d_problem, d_verified in damaged:
            note = ""
            if set_aside and d_verified and _is_main():
                note = f"; moved it to {_set_aside(d_where).name}"
            _say(f"warning: checkpoint {d_where} is damaged: {d_problem}{note}; "
                 f"{action} step {step} ({where.parent.name}/) instead")
        if set_aside and damaged:
            if jax.process_count() > 1:
                from jax.experimental import multihost_utils
                multihost_utils.sync_global_devices("damaged_steps_set_aside")
            for d_mngr in {id(d[0]): d[0] for d in damaged}.values():
                d_mngr.reload()
        return mngr, step, restored
    if damaged:
        mngr, step, where, problem, _ = damaged[0]
        raise CheckpointError(
            f"no checkpoint can be used: {where} is damaged ({problem})"
            + (f" and {len(damaged) - 1} older step(s) too" if len(damaged) > 1 else "")
            + "; put the files back, or train in a new --workdir.")
    return None


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__


class Checkpoints:
    def __init__(self, workdir, keep: int, best_metric: str = "mAP",
                 on_damaged: str = "fallback"):
        workdir = epath.Path(workdir)
        self.on_damaged = on_damaged
        self.interrupted_best = remove_leftovers(workdir / BEST)
        remove_leftovers(workdir / CHECKPOINTS)
        if jax.process_count() > 1:  # every process re-rates the same step, or none does
            import numpy as np
            from jax.experimental import multihost_utils
            last = multihost_utils.broadcast_one_to_all(
                np.int64(max(self.interrupted_best, default=-1)))
            self.interrupted_best = [int(last)] if int(last) >= 0 else []
        self._saving: Dict[str, Optional[int]] = {CHECKPOINTS: None, BEST: None}
        self.best_key = best_metric
        self.latest = make_manager(
            workdir / CHECKPOINTS, ("state", "data", "meta"),
            policy=ocp.checkpoint_managers.LatestN(n=keep),
            on_saved=lambda: self._write_manifest(CHECKPOINTS))
        self.best = make_manager(
            workdir / BEST, ("state", "meta"),
            policy=ocp.checkpoint_managers.BestN(
                get_metric_fn=self._rating, reverse=False, n=1,
                keep_checkpoints_without_metrics=False),
            on_saved=lambda: self._write_manifest(BEST))

    def _rating(self, metrics: dict) -> Optional[float]:
        """A step's rating: ``best_key``, or the key runs saved before it had its own name."""
        for key in (self.best_key, LEGACY_RATING_KEY):
            if metrics.get(key) is not None:
                return float(metrics[key])
        return None

    # ------------------------------------------------------------ saving
    def _write_manifest(self, name: str) -> None:
        """orbax's post-finalization callback: runs in the save thread before the commit."""
        step = self._saving[name]
        if step is None or not _is_main():
            return
        mngr = self.latest if name == CHECKPOINTS else self.best
        root = epath.Path(mngr.directory)
        tmp = sorted(root.glob(f"{step}{TMP_MARK}*"), key=lambda p: p.stat().mtime)
        checksums.write_manifest(tmp[-1] if tmp else root / str(step))

    def save(self, step: int, state, data_iter, meta: dict, force: bool = False) -> bool:
        self.latest.wait_until_finished()
        self._saving[CHECKPOINTS] = step
        return self.latest.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(data_iter),
            meta=ocp.args.JsonSave(meta)), force=force)

    def save_best(self, step: int, state, metrics: dict, meta: dict) -> None:
        if step in self.best.all_steps():
            return
        self.best.wait_until_finished()
        self._saving[BEST] = step
        rating = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        # orbax writes `metrics` to disk only for the deprecated `best_fn` option, not for
        # preservation policies; the rating also goes into the step's meta so that it
        # survives a restart.
        self.best.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            meta=ocp.args.JsonSave({**meta, "rating": rating})), metrics=rating)

    def best_metric(self) -> Optional[float]:
        """The rating of the step in ``best/`` (None when empty or never rated)."""
        step = self.best.latest_step()
        if step is None:
            return None
        metrics = self.best.metrics(step)
        if not metrics:  # after a restart: read from the step's meta
            meta = self.best.restore(step, args=ocp.args.Composite(
                meta=ocp.args.JsonRestore())).meta
            metrics = meta.get("rating") or {}
        return self._rating(metrics)

    # ---------------------------------------------------------- restoring
    def _state_args(self, abstract_state, sharding, data_iter=None):
        target = _abstract_with_sharding(abstract_state, sharding)

        def make(mngr):
            args = dict(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore())
            if data_iter is not None and mngr is self.latest:
                args["data"] = grain.checkpoint.CheckpointRestore(data_iter)
            return ocp.args.Composite(**args)
        return make

    def restore_latest(self, abstract_state, sharding: NamedSharding,
                       data_iter=None) -> Optional[Tuple[Any, dict]]:
        steps = sorted(self.latest.all_steps(), reverse=True)
        found = restore_verified([(self.latest, s) for s in steps],
                                 self._state_args(abstract_state, sharding, data_iter),
                                 self.on_damaged, "resuming from", set_aside=True)
        if found is None:
            return None
        _, _, restored = found
        return restored["state"], dict(restored["meta"])

    def restore_step(self, step: int, abstract_state, sharding) -> Optional[Any]:
        """``checkpoints/<step>``'s state if it is there and verifies, else None."""
        if step not in self.latest.all_steps():
            return None
        where = step_dir(self.latest, step)
        if checksums.has_manifest(where) and checksums.verify(where) is not None:
            return None
        restored = self.latest.restore(step, args=self._state_args(abstract_state, sharding)(
            self.latest))
        return restored["state"]

    def restore_for_eval(self, abstract_state, sharding: NamedSharding,
                         which: str = "best") -> Optional[Tuple[Any, dict, str]]:
        """The best checkpoint (or the latest if none was rated yet)."""
        order = (self.best, self.latest) if which == "best" else (self.latest, self.best)
        candidates = [(m, s) for m in order for s in sorted(m.all_steps(), reverse=True)]
        found = restore_verified(candidates, self._state_args(abstract_state, sharding),
                                 self.on_damaged, "evaluating")
        if found is None:
            return None
        mngr, step, restored = found
        return restored["state"], dict(restored["meta"]), str(step_dir(mngr, step))

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        """Closes both managers even when a save failed (that error is raised after), so
        no orbax thread outlives the run."""
        error = None
        for mngr in (self.latest, self.best):
            for _ in range(2):  # a failed save raises once from the wait inside close()
                try:
                    mngr.close()
                    break
                except Exception as e:  # pylint: disable=broad-except
                    error = error or e
        if error is not None:
            raise error
