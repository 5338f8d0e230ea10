"""Backbones and heads, each registered in ``csra_jax.models.registry`` by its own file."""

# Heads register in this order (the paper's head first in every listing).
from csra_jax.models.csra import PAPER_TEMPERATURES, CSRAHead
from csra_jax.models.gap import GAPHead
from csra_jax.models.attend_rectify import AttendRectifyHead
from csra_jax.models.classifier import (Classifier, available_archs, create_model,
                                        with_max_lam)
from csra_jax.models.from_config import model_from_config
from csra_jax.models.head import ClassMaps, Head
from csra_jax.models.nnx_head import csra_head_nnx
from csra_jax.models.registry import (BackboneSpec, HeadSpec, available_heads,
                                      register_backbone, register_head)

__all__ = ["PAPER_TEMPERATURES", "AttendRectifyHead", "BackboneSpec", "CSRAHead", "ClassMaps",
           "Classifier", "GAPHead", "Head", "HeadSpec", "available_archs", "available_heads",
           "create_model", "csra_head_nnx", "model_from_config", "register_backbone",
           "register_head", "with_max_lam"]
