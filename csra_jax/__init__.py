"""csra_jax: class-specific residual attention (CSRA, ICCV 2021) in JAX/Flax."""

from csra_jax.models import (PAPER_TEMPERATURES, AttendRectifyHead, Classifier, CSRAHead,
                             GAPHead, available_archs, create_model, csra_head_nnx,
                             with_max_lam)

__version__ = "0.1.0"

__all__ = ["PAPER_TEMPERATURES", "AttendRectifyHead", "CSRAHead", "Classifier", "GAPHead",
           "available_archs", "create_model", "csra_head_nnx", "with_max_lam"]
