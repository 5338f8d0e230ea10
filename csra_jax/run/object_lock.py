"""The run lock on an object store (``gs://``), where ``flock`` and rename do not exist.

The lock is one object, ``run.lock``, holding the holder's host, pid, start time and the
time it was last renewed. Every write is conditional on the object's generation
(tensorstore's ``if_equal``, GCS's ``ifGenerationMatch``):

- taking a free lock writes only if the object is absent, so of two runs starting at
  once exactly one succeeds;
- taking over a stale lock writes only over the generation that was read, so only one
  of several runs taking over wins;
- the holder renews it every ``RENEW_S`` seconds, again over its own generation; a lock
  not renewed for ``LEASE_S`` (its host died, a job on another machine was killed) is
  stale, and so at once is one whose pid no longer runs on this host (a SIGKILL, then a
  resume on the same host).

What it guarantees: while the holder runs and renews, no other run acquires the lock.
What it cannot: a holder frozen for longer than a lease (e.g. SIGSTOP) loses the lock;
when it wakes it sees that its renewal failed, says so in one line and stops renewing.
After each write the object is read back and must hold this run's token, so a store that
ignores preconditions still refuses the second of two runs that do not start within the
same instant.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from typing import Callable, Optional

LEASE_S = 300.0
RENEW_S = 60.0


def _gcs_spec(path) -> dict:
    bucket, _, key = os.fspath(path)[len("gs://"):].partition("/")
    folder, _, name = key.rpartition("/")
    return {"driver": "gcs", "bucket": bucket, "path": f"{folder}/" if folder else ""}, name


class ObjectLock:
    def __init__(self, kvstore, key: str, me: dict, where: str, lease_s: float = LEASE_S,
                 renew_s: float = RENEW_S):
        self.kv, self.key, self.where = kvstore, key, where
        self.me = dict(me, token=uuid.uuid4().hex)
        self.lease_s, self.renew_s = lease_s, renew_s
        self.generation: Optional[bytes] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @classmethod
    def for_gcs(cls, path, me: dict, **kwargs) -> "ObjectLock":
        import tensorstore as ts
        spec, key = _gcs_spec(path)
        return cls(ts.KvStore.open(spec).result(), key, me, os.fspath(path), **kwargs)

    def _read(self):
        r = self.kv.read(self.key).result()
        if r.state != "value":
            return {}, r.stamp.generation
        try:
            holder = json.loads(r.value)
        except ValueError:
            holder = {}
        return (holder if isinstance(holder, dict) else {}), r.stamp.generation

    def _write_over(self, generation: bytes) -> bool:
        """Writes this run's record if the object still has ``generation``; True if it
        did and the object now holds this run's token."""
        record = json.dumps(dict(self.me, renewed=time.time())).encode()
        new = self._write(record, generation)
        if self._read()[0].get("token") != self.me["token"]:
            return False
        self.generation = new.generation
        return True

    def _write(self, value, generation: bytes):
        try:
            return self.kv.write(self.key, value, if_equal=generation).result()
        except ValueError:  # a store whose reads report no usable generation (emulators):
            # write plainly; the read-back of the token still decides
            return self.kv.write(self.key, value).result()

    def acquire(self, refuse: Callable[[dict], None],
                stale: Callable[[dict, dict, float, float], bool]) -> Optional[dict]:
        """Takes the lock; ``refuse(holder)`` raises when a live run holds it. Returns the
        record of a stale holder that was taken over, else None."""
        holder, generation = self._read()
        if holder and not stale(holder, self.me, time.time(), self.lease_s):
            refuse(holder)
        if not self._write_over(generation):
            refuse(self._read()[0] or {"host": "?", "pid": "?"})  # lost a race
        self._thread = threading.Thread(target=self._renew, name="run-lock-renew",
                                        daemon=True)
        self._thread.start()
        return holder or None

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_s):
            try:
                if not self._write_over(self.generation):
                    print(f"warning: lost the run lock {self.where} to another run (this one "
                          f"did not renew it for {self.lease_s:.0f} s); stop one of them.",
                          flush=True)
                    return
            except Exception as e:  # pylint: disable=broad-except
                print(f"warning: could not renew the run lock {self.where}: {e}", flush=True)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._read()[0].get("token") == self.me["token"]:
            self._write(None, self.generation)
