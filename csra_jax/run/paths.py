"""Where each file of a run lives under its workdir, a local path or a ``gs://`` URL.

    workdir/
      config.json                 the run's config (rebuilds the model without the file)
      class_names.json            the dataset's class names, in label order
      run.lock                    the one writer (see ``csra_jax.run.lock``)
      metrics.jsonl, tensorboard/ scalars
      checkpoints/<step>/         the last K steps (state, data iterator, meta, checksums)
      best/<step>/                the best step by the task's metric
      eval/predictions_step<N>.npz, eval/ap_table_step<N>.txt, eval/results/ (VOC server)

Every path is an ``etils.epath.Path``: ``gs://`` goes through gcsfs (fsspec), arrays
through tensorstore's own GCS driver (orbax). Those write behind gcsfs's back, so its
directory-listing cache is switched off for ``gs://`` (else a new checkpoint step would
stay invisible to this process).
"""

from __future__ import annotations

import os

from etils import epath

CONFIG = "config.json"
CLASS_NAMES = "class_names.json"
LOCK = "run.lock"
METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
BEST = "best"
EVAL = "eval"


def is_cloud(path) -> bool:
    """A URL (``gs://``, ``s3://``...): no flock, no rename, no free-space probe."""
    return "://" in os.fspath(path)


def _fresh_listings() -> None:
    import fsspec
    for protocol in ("gs", "gcs"):
        fsspec.config.conf.setdefault(protocol, {}).setdefault("use_listings_cache", False)


def as_path(path) -> epath.Path:
    """``~`` and relative local paths made absolute; URLs kept as they are."""
    if is_cloud(path):
        _fresh_listings()
        return epath.Path(os.fspath(path).rstrip("/"))
    return epath.Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


class RunDir:
    """The paths of one run (nothing is created until written)."""

    def __init__(self, workdir):
        self.root = as_path(workdir)
        self.cloud = is_cloud(self.root)
        self.config = self.root / CONFIG
        self.class_names = self.root / CLASS_NAMES
        self.lock = self.root / LOCK
        self.metrics = self.root / METRICS
        self.tensorboard = self.root / TENSORBOARD
        self.checkpoints = self.root / CHECKPOINTS
        self.best = self.root / BEST
        self.eval = self.root / EVAL

    def __str__(self) -> str:
        return os.fspath(self.root)

    def predictions(self, step: int) -> epath.Path:
        return self.eval / f"predictions_step{step}.npz"

    def ap_table(self, step: int) -> epath.Path:
        return self.eval / f"ap_table_step{step}.txt"

    def has_steps(self) -> bool:
        """Whether a step was saved (checkpoints/<n> or best/<n>)."""
        for root in (self.checkpoints, self.best):
            if root.is_dir() and any(p.name.isdigit() for p in root.iterdir()):
                return True
        return False


def write_bytes(path: epath.Path, data: bytes) -> None:
    """Whole-file write that a crash never leaves half-written: a local file goes through
    a temporary file and a rename; an object store replaces an object atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_cloud(path):
        path.write_bytes(data)
        return
    tmp = path.parent / (path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
