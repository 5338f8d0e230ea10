"""Kept for existing imports: the lock lives in ``csra_jax.run.lock``."""

from csra_jax.run.lock import LOCK_FILE, RunLock, WorkdirLockedError  # noqa: F401
