"""Backbone + head as one Linen module, and ``create_model`` to build it by name.

Backbones and heads are looked up in ``csra_jax.models.registry``; nothing here knows
a particular one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from csra_jax.models import registry
from csra_jax.models.gap import GAPHead
from csra_jax.models.head import ClassMaps


class Classifier(nn.Module):
    """images (B, H, W, 3), already normalised, NHWC -> logits (B, num_classes) float32.

    Params are ``{"backbone": ..., "head": ...}``; CNNs also carry ``batch_stats``. Every
    head is called as ``head(features, train)``; a head that reads several depths
    (attend-and-rectify) gets the backbone's stage outputs. A head may sow auxiliary
    losses into the ``losses`` collection.
    """

    backbone: nn.Module
    head: nn.Module

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected NHWC RGB images (B, H, W, 3), got shape {images.shape}.")
        return self.head(self.backbone(images, train=train), train=train)

    def features(self, images: jax.Array, train: bool = False):
        """The backbone's feature map (a tuple of stage outputs for attend-and-rectify);
        ``model.apply(variables, x, method="features")``."""
        return self.backbone(images, train=train)

    def class_maps(self, images: jax.Array) -> ClassMaps:
        """The head's per-class maps in eval mode; ``method="class_maps"``."""
        return self.head.class_maps(self.backbone(images, train=False))

    def logits_and_maps(self, images: jax.Array):
        """``(outputs, ClassMaps)`` in eval mode, from one backbone pass."""
        return self.head(self.backbone(images, train=False), train=False, with_maps=True)


def available_archs() -> list:
    return registry.available_archs()


def build_backbone(arch: str, img_size: int, dtype: Any = jnp.float32,
                   param_dtype: Any = jnp.float32, return_stages: bool = False,
                   **options) -> nn.Module:
    """The backbone module of ``arch`` (a public or ``<family>_tiny`` name)."""
    spec = registry.backbone_spec(arch)
    kwargs = dict(spec.settings(arch), dtype=dtype, param_dtype=param_dtype,
                  return_stages=return_stages, **options)
    if "img_size" in {f.name for f in dataclasses.fields(spec.module)}:
        kwargs["img_size"] = img_size
    return spec.module(**kwargs)


def create_model(arch: str, num_classes: int, head: str = "csra", num_heads: int = 1,
                 lam: float = 0.1, img_size: int = 448, dtype: Any = jnp.float32,
                 **kwargs) -> Classifier:
    """Builds a backbone + head classifier by name.

    Args:
      arch: one of ``available_archs()`` (or a family's test-sized ``<family>_tiny``).
      num_classes: number of output classes.
      head: one of ``registry.available_heads()``: "csra" (the paper's head), "gap"
        (average pooling + linear with bias) or "attend_rectify" (gated attention modules
        on the backbone's stage outputs).
      num_heads, lam: CSRA's H and lambda (ignored by the other heads).
      img_size: input resolution (sizes the ViT position embedding; the CNNs accept any).
      dtype: computation dtype (e.g. jnp.bfloat16); params stay ``param_dtype``.
      **kwargs: ``param_dtype``; the backbone's options (its ``BackboneSpec.options``:
        ``remat``; ResNet and small_cnn ``conv_impl``, ``pool_impl``; ViT ``drop_rate``,
        ``attn_drop_rate``, ``drop_path_rate``, ``attention_impl``; EfficientNet ``drop_path_rate``,
        torchvision's stochastic depth, default 0.2) and the head's (``HeadSpec.options``:
        CSRA ``temperatures``, ``normalize``; GAP ``max_lam``, the training-free mean +
        max_lam * max scoring, paper Fig. 1; attend-and-rectify ``attention_depth``, ``attention_heads``,
        ``gate``, ``aggregate``, ``reg_weight``, see ``AttendRectifyHead``).
    """
    spec = registry.backbone_spec(arch)
    head_spec = registry.head_spec(head)
    if not isinstance(img_size, int) or img_size <= 0:
        raise ValueError(f"img_size must be a positive int, got {img_size!r}.")
    if img_size % spec.input_multiple:
        raise ValueError(f"{arch} needs img_size divisible by {spec.input_multiple_reason} "
                         f"{spec.input_multiple}, got {img_size}.")
    param_dtype = kwargs.pop("param_dtype", jnp.float32)
    backbone_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in spec.options}
    head_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in head_spec.options}
    if kwargs:
        valid = sorted({*spec.options, *head_spec.options, "param_dtype"})
        raise ValueError(f"create_model({arch!r}, head={head!r}): unknown option(s) "
                         f"{sorted(kwargs)}; valid: {valid}.")
    backbone = build_backbone(arch, img_size, dtype, param_dtype,
                              return_stages=head_spec.reads_stages, **backbone_kw)
    head_module = head_spec.build(num_classes, num_heads, lam, dtype, param_dtype, **head_kw)
    return Classifier(backbone=backbone, head=head_module)


def with_max_lam(model: Classifier, max_lam: float) -> Classifier:
    """The same trained ``gap`` model scored as mean + max_lam * max (no retraining).

    The returned module takes the original model's variables unchanged.
    """
    if not isinstance(model.head, GAPHead):
        raise ValueError("with_max_lam needs a model built with head='gap'; "
                         f"got head {type(model.head).__name__}.")
    return model.clone(head=model.head.clone(max_lam=max_lam))
