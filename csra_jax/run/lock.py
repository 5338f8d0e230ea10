"""One writer per workdir: ``workdir/run.lock`` names the host and pid of the run that
holds it.

Two runs on one workdir would write every metric twice and delete each other's
checkpoints. On a local or NFS path the file is also ``flock``-ed for the run's life, so
a lock whose process died (SIGKILL, OOM, a lost host) is free again and is taken over
with a message. ``gs://`` has no flock: there the lock is an object written only if
absent (or only over the generation that was read), see ``ObjectLock``. Other URLs get a
plain file: a lock naming a pid that no longer runs on this host is taken over.
Multi-host: process 0 holds the lock for the whole job.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from typing import Optional

from etils import epath

from csra_jax.run.paths import LOCK as LOCK_FILE, is_cloud



class WorkdirLockedError(RuntimeError):
    """Another live run holds the workdir."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _describe(holder: dict) -> str:
    since = holder.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "?"
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} (since {when})"


def _read(text: str) -> dict:
    try:
        value = json.loads(text)
        return value if isinstance(value, dict) else {}
    except ValueError:
        return {}


class RunLock:
    """``acquire()`` / ``release()``; a context manager too."""

    def __init__(self, workdir):
        self.path = epath.Path(workdir) / LOCK_FILE
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        self._fd: Optional[int] = None
        self._object = None
        self.taken_over: Optional[dict] = None

    def _refuse(self, holder: dict):
        raise WorkdirLockedError(
            f"workdir {self.path.parent} is in use by another run: {_describe(holder)}, "
            f"lock file {self.path}. Wait for it to finish, stop it, or use another "
            "--workdir (delete the lock file only if that run is really gone).")

    def acquire(self) -> "RunLock":
        if not is_cloud(self.path):
            self._acquire_flock()
        elif os.fspath(self.path).startswith("gs://"):
            from csra_jax.run.object_lock import ObjectLock
            self._object = ObjectLock.for_gcs(self.path, self.me)
            self.taken_over = self._object.acquire(self._refuse, _stale)
        else:
            self._acquire_file()
        if self.taken_over:
            print(f"took over the lock of a run that is no longer running "
                  f"({_describe(self.taken_over)}) in {self.path.parent}", flush=True)
        return self

    def _acquire_flock(self) -> None:
        import fcntl
        fd = os.open(os.fspath(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            self._refuse(_read(self.path.read_text()))
        previous = _read(os.pread(fd, 1 << 16, 0).decode("utf-8", "replace"))
        if previous.get("pid"):  # its flock is gone, so its process is too
            self.taken_over = previous
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(self.me).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def _acquire_file(self) -> None:
        if self.path.exists():
            holder = _read(self.path.read_text())
            if holder.get("pid") and not _dead_here(holder, self.me):
                self._refuse(holder)
            self.taken_over = holder or None
        self.path.write_text(json.dumps(self.me))

    def release(self) -> None:
        if self._object is not None:
            self._object.release()
            self._object = None
        elif self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            finally:
                os.close(self._fd)  # drops the flock
                self._fd = None
        elif self.path.exists() and _read(self.path.read_text()).get("pid") == self.me["pid"]:
            self.path.unlink()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _dead_here(holder: dict, me: dict) -> bool:
    """The holder ran on this host and its process is gone."""
    return (holder.get("host") == me["host"] and bool(holder.get("pid"))
            and not _pid_alive(int(holder["pid"])))


def _stale(holder: dict, me: dict, now: float, lease_s: float) -> bool:
    """An object lock may be taken over: its holder died on this host, or has not renewed
    it for a whole lease (a lost host, a killed job on another machine)."""
    if not holder.get("pid"):
        return True
    beat = holder.get("renewed", holder.get("since"))
    return _dead_here(holder, me) or not isinstance(beat, (int, float)) or now - beat > lease_s

