"""Kept for existing imports: the checkpoints live in ``csra_jax.run.checkpoints``."""

from csra_jax.run.checkpoints import *  # noqa: F401,F403
from csra_jax.run.checkpoints import (CheckpointError, Checkpoints, make_manager,  # noqa: F401
                                      remove_leftovers, restore_verified)
