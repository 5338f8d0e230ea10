"""A sha256 per file of each saved checkpoint step, written into the step before it is
committed and verified before it is restored.

orbax's own metadata says what a step should hold but not whether its bytes are the
bytes that were written: a flipped bit in an array file restores without complaint.
The manifest ``checksums.json`` lists every file of the step with its size and sha256;
it is written from orbax's post-finalization callback, i.e. inside the temporary step
directory just before orbax renames it into place (or, on object stores without
rename, before the commit marker), so a committed step always carries its manifest.
"""

from __future__ import annotations

import hashlib
import json
from typing import Dict, Optional

from etils import epath

MANIFEST = "checksums.json"
_CHUNK = 1 << 22
# Written by orbax after our callback: the commit marker on object stores, and the step
# metadata that gains its commit time. Damage there shows when orbax reads it.
_LATE_FILES = ("commit_success.txt", "_CHECKPOINT_METADATA")


def _sha256(path: epath.Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


def _walk(directory: epath.Path):
    for path in sorted(directory.iterdir()):
        if path.is_dir():
            yield from _walk(path)
        else:
            yield path


def _files(step_dir: epath.Path):
    for path in _walk(step_dir):
        rel = str(path.relative_to(step_dir))
        if rel != MANIFEST and path.name not in _LATE_FILES:
            yield rel, path


def write_manifest(step_dir) -> epath.Path:
    """Hashes every file under ``step_dir`` and writes ``step_dir/checksums.json``."""
    step_dir = epath.Path(step_dir)
    files: Dict[str, list] = {}
    for rel, path in _files(step_dir):
        files[rel] = [path.stat().length, _sha256(path)]
    out = step_dir / MANIFEST
    out.write_text(json.dumps({"algorithm": "sha256", "files": files}, sort_keys=True))
    return out


def has_manifest(step_dir) -> bool:
    return (epath.Path(step_dir) / MANIFEST).exists()


def verify(step_dir) -> Optional[str]:
    """None when every listed file is present with its size and sha256, else what is
    wrong (one short phrase). A step without a manifest is the caller's decision."""
    step_dir = epath.Path(step_dir)
    if not step_dir.is_dir():
        return "the step directory is missing"
    try:
        files = json.loads((step_dir / MANIFEST).read_text())["files"]
        if not isinstance(files, dict) or not files:
            raise ValueError("no files listed")
    except FileNotFoundError:
        return f"{MANIFEST} is missing"
    except (ValueError, KeyError, TypeError) as e:
        return f"{MANIFEST} is unreadable ({e})"
    missing, bad = [], []
    for rel, (size, digest) in sorted(files.items()):
        path = step_dir / rel
        if not path.exists():
            missing.append(rel)
            continue
        actual = path.stat().length
        if actual != size:
            bad.append(f"{rel} has {actual} bytes, {size} were written")
        elif _sha256(path) != digest:
            bad.append(f"{rel} does not match its sha256")
    problems = []
    if missing:
        problems.append(f"{len(missing)} file(s) missing (e.g. {missing[0]})")
    if bad:
        problems.append(f"{len(bad)} file(s) damaged (e.g. {bad[0]})")
    return "; ".join(problems) or None
