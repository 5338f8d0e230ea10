"""A full disk ends in one line naming the path and the space a step needs.

The write that fails may be ours (config.json, metrics, predictions) or orbax's, in a
save thread (tensorstore reports it as text, not as an ``OSError``), so the whole
exception chain is searched for ENOSPC / EDQUOT. The data is safe either way: orbax
commits a step only once every file is written.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sys
from typing import Optional

from etils import epath

from csra_jax.run.paths import RunDir, is_cloud

_CODES = (errno.ENOSPC, errno.EDQUOT)
_TEXTS = ("no space left on device", "disk quota exceeded")


class DiskFullError(RuntimeError):
    """The workdir's file system ran out of space."""


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        for sub in getattr(e, "exceptions", ()) or ():  # ExceptionGroup
            yield from _chain(sub)
        e = e.__cause__ or e.__context__


def is_disk_full(e: BaseException) -> bool:
    for x in _chain(e):
        if isinstance(x, OSError) and x.errno in _CODES:
            return True
        text = str(x).lower()
        if any(t in text for t in _TEXTS):
            return True
    return False


def _culprit(e: BaseException) -> Optional[str]:
    for x in _chain(e):
        if isinstance(x, OSError) and x.errno in _CODES and x.filename:
            return os.fspath(x.filename)
    return None


def free_bytes(path) -> Optional[int]:
    """Free bytes on the file system of ``path`` (its nearest existing parent); None for
    an object store (``gs://``), which has no free space to probe, only quotas."""
    if is_cloud(path):
        return None
    p = os.path.abspath(os.fspath(path))
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def _size(path: epath.Path) -> int:
    total = 0
    for child in path.iterdir():
        total += _size(child) if child.is_dir() else child.stat().length
    return total


def checkpoint_bytes(workdir) -> Optional[int]:
    """The size of the newest saved step (what the next save needs), if any."""
    root = RunDir(workdir).checkpoints
    if not root.is_dir():
        return None
    steps = sorted((int(p.name) for p in root.iterdir() if p.name.isdigit()), reverse=True)
    for step in steps:
        try:
            return _size(root / str(step))
        except OSError:
            continue
    return None


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def disk_full_error(e: BaseException, workdir, keep: Optional[int] = None) -> DiskFullError:
    where = _culprit(e) or os.fspath(workdir)
    free = free_bytes(where)
    need = checkpoint_bytes(workdir)
    facts = []
    if free is not None:
        facts.append(f"{_mib(free)} free")
    if need:
        facts.append(f"a checkpoint needs about {_mib(need)}"
                     + (f" and the run keeps up to {keep + 1} (keep_checkpoints + best)"
                        if keep else ""))
    return DiskFullError(f"no space left on the disk of {where}"
                         + (f" ({'; '.join(facts)})" if facts else "")
                         + ": free some space and rerun the same command to resume (the "
                         "saved steps are intact).")


class _DropDiskFullRecords(logging.Filter):
    """orbax logs each failed save thread's traceback, and asyncio logs a failed write task
    that nobody awaited once the save is abandoned ("Task exception was never retrieved");
    the run ends in one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and is_disk_full(exc):
            return False
        return not any(t in record.getMessage().lower() for t in _TEXTS)


_FILTER = _DropDiskFullRecords()


def _is_closed_loop_echo(unraisable) -> bool:
    """After one write of a save fails, orbax closes that save's event loop while
    tensorstore still completes the other writes; each then reports 'Event loop is
    closed' as an unraisable error (dozens of tracebacks saying nothing new)."""
    return (unraisable.exc_type is RuntimeError
            and str(unraisable.exc_value) == "Event loop is closed")


def quiet_disk_full_logs() -> None:
    for name in ("absl", "orbax", "asyncio"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    previous = sys.unraisablehook
    if getattr(previous, "_csra_quiet", False):
        return

    def hook(unraisable):
        if not _is_closed_loop_echo(unraisable):
            previous(unraisable)
    hook._csra_quiet = True
    sys.unraisablehook = hook
