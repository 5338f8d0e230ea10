"""Kept for existing imports: the manifests live in ``csra_jax.run.checksums``."""

from csra_jax.run.checksums import *  # noqa: F401,F403
from csra_jax.run.checksums import MANIFEST, has_manifest, verify, write_manifest  # noqa: F401
