"""Class names: ``workdir/class_names.json`` (written by the trainer, in label order),
or a user's file, else ``class_0..``."""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence

from csra_jax.run.paths import RunDir, as_path, write_bytes


def default_class_names(num_classes: int) -> tuple:
    return tuple(f"class_{i}" for i in range(num_classes))


def read_class_names(path: str) -> tuple:
    """One name per line (blank lines skipped), or a JSON list for ``*.json``."""
    text = as_path(path).read_text(encoding="utf-8")
    if os.fspath(path).endswith(".json"):
        return tuple(str(n) for n in json.loads(text))
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def save_class_names(workdir, names: Sequence[str]) -> None:
    write_bytes(RunDir(workdir).class_names, json.dumps(list(names), indent=1).encode())


def load_class_names(workdir) -> Optional[tuple]:
    """The run's class names, or None for runs from before they were recorded."""
    path = RunDir(workdir).class_names
    return read_class_names(os.fspath(path)) if path.exists() else None
