"""Scalars to ``metrics.jsonl`` and TensorBoard event files in the workdir (process 0).

A local workdir appends each line to the file. An object store (``gs://``) has no
append: there the file is read back once at start-up (a resumed run keeps its history)
and rewritten whole after each write, so it never lags more than one write behind.
TensorBoard events are written to a local temporary folder and copied whole to
``workdir/tensorboard/`` after each write (the same gcsfs client as every other file;
tensorboardX's own GCS writer would need google-cloud-storage and uploads again,
blocking, whenever it is garbage-collected).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time

import jax

from csra_jax.run.paths import RunDir


class MetricWriter:
    def __init__(self, workdir: str):
        self.enabled = jax.process_index() == 0
        self._tb, self._tb_local = None, None
        if not self.enabled:
            return
        run = RunDir(workdir)
        run.root.mkdir(parents=True, exist_ok=True)
        self._path, self._cloud = run.metrics, run.cloud
        if self._cloud:
            self._lines = [self._path.read_text()] if self._path.exists() else []
        else:
            self._jsonl = open(os.fspath(self._path), "a")
        try:
            from tensorboardX import SummaryWriter
            if self._cloud:
                self._tb_local = tempfile.mkdtemp(prefix="csra_tensorboard_")
            self._tb_remote = run.tensorboard
            self._tb = SummaryWriter(self._tb_local or os.fspath(run.tensorboard))
        except ImportError:  # optional: the jsonl file has everything
            self._tb = None

    def write(self, step: int, scalars: dict, prefix: str = "") -> None:
        if not self.enabled:
            return
        clean = {f"{prefix}{k}": float(v) for k, v in scalars.items()
                 if isinstance(v, (int, float)) or getattr(v, "ndim", None) == 0}
        record = {"step": int(step), "time": time.time(),
                  **{k: (v if math.isfinite(v) else str(v)) for k, v in clean.items()}}
        line = json.dumps(record) + "\n"
        if self._cloud:
            self._lines.append(line)
            self._path.write_text("".join(self._lines))
        else:
            self._jsonl.write(line)
            self._jsonl.flush()
        if self._tb is not None:
            for k, v in clean.items():
                self._tb.add_scalar(k, v, int(step))
            self._tb.flush()
            self._copy_events()

    def _copy_events(self) -> None:
        if self._tb_local is None:
            return
        self._tb_remote.mkdir(parents=True, exist_ok=True)
        for name in os.listdir(self._tb_local):
            with open(os.path.join(self._tb_local, name), "rb") as f:
                (self._tb_remote / name).write_bytes(f.read())

    def close(self) -> None:
        if self.enabled:
            if not self._cloud:
                self._jsonl.close()
            if self._tb is not None:
                self._tb.close()
                self._copy_events()
            if self._tb_local is not None:
                shutil.rmtree(self._tb_local, ignore_errors=True)
