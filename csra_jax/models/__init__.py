"""Backbones and heads."""

from csra_jax.models.attend_rectify import AttendRectifyHead
from csra_jax.models.classifier import (Classifier, available_archs, create_model,
                                        with_max_lam)
from csra_jax.models.csra import PAPER_TEMPERATURES, CSRAHead
from csra_jax.models.gap import GAPHead
from csra_jax.models.nnx_head import csra_head_nnx

__all__ = ["PAPER_TEMPERATURES", "AttendRectifyHead", "CSRAHead", "Classifier", "GAPHead",
           "available_archs", "create_model", "csra_head_nnx", "with_max_lam"]
