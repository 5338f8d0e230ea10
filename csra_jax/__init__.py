"""csra_jax: class-specific residual attention (CSRA, ICCV 2021) in JAX/Flax."""

from importlib.metadata import PackageNotFoundError, version as _version

from csra_jax.models import (PAPER_TEMPERATURES, AttendRectifyHead, Classifier, CSRAHead,
                             GAPHead, available_archs, available_heads, create_model,
                             csra_head_nnx, model_from_config, with_max_lam)

try:  # the version lives in pyproject.toml only
    __version__ = _version("csra_jax")
except PackageNotFoundError:  # a checkout on sys.path that was never pip-installed
    __version__ = "0+unknown"

__all__ = ["PAPER_TEMPERATURES", "AttendRectifyHead", "CSRAHead", "Classifier", "GAPHead",
           "available_archs", "available_heads", "create_model", "csra_head_nnx",
           "model_from_config", "with_max_lam"]
