"""Reading a trained step for serving (predict, inference): the step ``--workdir``
means, its class count and its variables without the optimizer state, through the
trainer's checkpoint manager and after checking the step's checksums."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
from etils import epath

from csra_jax.run import checksums
from csra_jax.run.checkpoints import CheckpointError, is_committed, make_manager
from csra_jax.run.paths import RunDir, as_path


def _steps(directory: epath.Path) -> list:
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir()
                  if p.name.isdigit() and (p / "state").is_dir() and is_committed(p))


def _warn(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def find_checkpoint(workdir: str, which: str = "best") -> str:
    """The step dir of ``workdir``'s best checkpoint (else its latest), or the reverse.

    ``best/`` only gains a step when eval mAP improves, so its highest step is the best.
    A step whose files fail their checksums is named in a warning and the next one used.
    """
    run = RunDir(workdir)
    workdir = run.root
    if not workdir.is_dir():
        raise FileNotFoundError(f"workdir {str(workdir)!r} does not exist.")
    order = ((run.best, run.checkpoints) if which == "best" else
             (run.checkpoints, run.best))
    damaged = []
    for sub in order:
        for step in reversed(_steps(sub)):
            where = sub / str(step)
            problem = checksums.verify(where) if checksums.has_manifest(where) else None
            if problem is not None:
                damaged.append((where, problem))
                continue
            for d_where, d_problem in damaged:
                _warn(f"warning: checkpoint {d_where} is damaged: {d_problem}; using "
                      f"{sub.name}/{step} instead")
            return str(where)
    if damaged:
        raise CheckpointError(f"no checkpoint in {str(workdir)!r} can be used: {damaged[0][0]} "
                              f"is damaged ({damaged[0][1]}); put the files back or train "
                              "again.")
    raise FileNotFoundError(f"no checkpoint in {str(workdir)!r} (neither best/<step>/state nor "
                            "checkpoints/<step>/state); train first or fix --workdir.")


def _step_dir(step_dir: str) -> epath.Path:
    path = as_path(step_dir)
    if path.name == "state":
        path = path.parent
    if not (path / "state").is_dir() or not path.name.isdigit():
        raise FileNotFoundError(f"{str(path)!r} is not an orbax step dir of a training run "
                                "(no state/ inside).")
    return path


def open_step(step_dir: str):
    """(manager over the step's parent, step), after checking the step's checksums."""
    path = _step_dir(step_dir)
    if checksums.has_manifest(path):
        problem = checksums.verify(path)
        if problem is not None:
            raise CheckpointError(f"checkpoint {path} is damaged: {problem}; use another step "
                                  "(or --workdir, which picks the newest that verifies).")
    return make_manager(path.parent, ("state", "data", "meta"), reader=True), int(path.name)


def checkpoint_tree(mngr, step: int) -> dict:
    """The checkpoint's tree of array metadata (shapes), without reading the arrays."""
    meta = mngr.item_metadata(step)["state"]
    return getattr(meta, "tree", meta)


def checkpoint_num_classes(step_dir: str) -> int:
    """Number of classes of a training checkpoint, read from its head's metadata."""
    mngr, step = open_step(step_dir)
    head = checkpoint_tree(mngr, step)["params"]["head"]
    if "kernel" not in head:  # attend-and-rectify: its GAP classifier's kernel
        head = head["classifier"]
    return int(head["kernel"].shape[-1])


def _check_fits(step_dir: str, stored_tree: dict, target: dict) -> None:
    from flax import traverse_util
    stored = traverse_util.flatten_dict(
        {k: v for k, v in stored_tree.items() if k in target}, sep="/")
    wanted = traverse_util.flatten_dict(target, sep="/")
    bad = [f"{k}: model {tuple(v.shape)}, checkpoint "
           f"{tuple(stored[k].shape) if k in stored else 'missing'}"
           for k, v in wanted.items() if k not in stored or tuple(stored[k].shape) != v.shape]
    if bad:
        raise ValueError(
            f"checkpoint {step_dir!r} does not fit the model built from the config "
            f"({len(bad)} mismatched, e.g. {'; '.join(bad[:3])}); pass the config and "
            "--config.* overrides the run was trained with.")


def restore_variables(step_dir: str, model, image_size: int) -> dict:
    """``{"params", ["batch_stats"]}`` of a training checkpoint (optimizer state skipped),
    read through the trainer's checkpoint manager after checking the step's checksums."""
    import orbax.checkpoint as ocp
    example = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    abstract = jax.eval_shape(model.init, jax.random.key(0), example)
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                          dict(abstract))
    mngr, step = open_step(step_dir)
    try:
        _check_fits(step_dir, checkpoint_tree(mngr, step), target)
        restore_args = ocp.checkpoint_utils.construct_restore_args(target)
        restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            target, restore_args=restore_args, partial_restore=True)))
    finally:
        mngr.close()
    return restored["state"]
