"""Backbone + head as one Linen module, and ``create_model`` to build it by name."""

from __future__ import annotations

from typing import Any, Callable, Dict

import flax.linen as nn
import jax
import jax.numpy as jnp

from csra_jax.models import resnet as resnet_lib
from csra_jax.models import vit as vit_lib
from csra_jax.models.csra import CSRAHead, validate_csra_args
from csra_jax.models.gap import GAPHead
from csra_jax.models.small_cnn import SmallCNN


class Classifier(nn.Module):
    """images (B, H, W, 3), already normalised, NHWC -> logits (B, num_classes) float32.

    Params are ``{"backbone": ..., "head": ...}``; ResNets also carry ``batch_stats``.
    """

    backbone: nn.Module
    head: nn.Module

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected NHWC RGB images (B, H, W, 3), got shape {images.shape}.")
        return self.head(self.backbone(images, train=train))

    def features(self, images: jax.Array, train: bool = False):
        """The backbone's feature map; ``model.apply(variables, x, method="features")``."""
        return self.backbone(images, train=train)


def _resnet(arch, img_size, dtype, param_dtype, **kw):
    del img_size  # fully convolutional
    return resnet_lib.resnet(arch, dtype=dtype, param_dtype=param_dtype, **kw)


def _vit(arch, img_size, dtype, param_dtype, **kw):
    return vit_lib.vit(arch, img_size=img_size, dtype=dtype, param_dtype=param_dtype, **kw)


def _small_cnn(arch, img_size, dtype, param_dtype, **kw):
    del arch, img_size
    return SmallCNN(dtype=dtype, param_dtype=param_dtype, **kw)


BACKBONES: Dict[str, Callable[..., nn.Module]] = {
    **{name: _resnet for name in resnet_lib.ARCH_SETTINGS},
    **{name: _vit for name in vit_lib.ARCH_SETTINGS},
    "small_cnn": _small_cnn,  # CPU demos and tests, not a paper backbone
}
HEADS = ("csra", "gap")

# Keyword arguments each family of backbone understands (the rest go to the head).
_BACKBONE_KWARGS = {
    "resnet": {"remat"},
    "small_cnn": {"remat"},
    "vit": {"remat", "drop_rate", "attn_drop_rate", "drop_path_rate"},
}
_HEAD_KWARGS = {"csra": {"temperatures", "normalize"}, "gap": {"max_lam"}}


def available_archs() -> list:
    return sorted(BACKBONES)


def create_model(arch: str, num_classes: int, head: str = "csra", num_heads: int = 1,
                 lam: float = 0.1, img_size: int = 448, dtype: Any = jnp.float32,
                 **kwargs) -> Classifier:
    """Builds a backbone + head classifier by name.

    Args:
      arch: one of ``available_archs()``.
      num_classes: number of output classes.
      head: "csra" (the paper's head) or "gap" (average pooling + linear with bias).
      num_heads, lam: CSRA's H and lambda (ignored by "gap").
      img_size: input resolution (sizes the ViT position embedding; ResNets accept any).
      dtype: computation dtype (e.g. jnp.bfloat16); params stay ``param_dtype``.
      **kwargs: ``param_dtype``; backbone options ``remat`` and, for ViTs, ``drop_rate``,
        ``attn_drop_rate``, ``drop_path_rate``; CSRA ``temperatures``, ``normalize``;
        GAP ``max_lam`` (the training-free mean + max_lam * max scoring, paper Fig. 1).
    """
    if arch not in BACKBONES:
        raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(available_archs())}.")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid: {', '.join(HEADS)}.")
    if not isinstance(img_size, int) or img_size <= 0:
        raise ValueError(f"img_size must be a positive int, got {img_size!r}.")
    param_dtype = kwargs.pop("param_dtype", jnp.float32)
    family = "vit" if arch.startswith("vit") else "resnet" if arch.startswith("resnet") else arch
    if family == "vit" and img_size % 16:
        raise ValueError(f"{arch} needs img_size divisible by the patch size 16, got {img_size}.")
    backbone_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in _BACKBONE_KWARGS[family]}
    head_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in _HEAD_KWARGS[head]}
    if kwargs:
        valid = sorted(_BACKBONE_KWARGS[family] | _HEAD_KWARGS[head] | {"param_dtype"})
        raise ValueError(f"create_model({arch!r}, head={head!r}): unknown option(s) "
                         f"{sorted(kwargs)}; valid: {valid}.")
    backbone = BACKBONES[arch](arch, img_size, dtype, param_dtype, **backbone_kw)
    if head == "csra":
        validate_csra_args(num_classes, num_heads, lam, head_kw.get("temperatures"))
        head_module = CSRAHead(num_classes, num_heads=num_heads, lam=lam, dtype=dtype,
                               param_dtype=param_dtype, **head_kw)
    else:
        head_module = GAPHead(num_classes, dtype=dtype, param_dtype=param_dtype, **head_kw)
    return Classifier(backbone=backbone, head=head_module)


def with_max_lam(model: Classifier, max_lam: float) -> Classifier:
    """The same trained ``gap`` model scored as mean + max_lam * max (no retraining).

    The returned module takes the original model's variables unchanged.
    """
    if not isinstance(model.head, GAPHead):
        raise ValueError("with_max_lam needs a model built with head='gap'; "
                         f"got head {type(model.head).__name__}.")
    return model.clone(head=model.head.clone(max_lam=max_lam))
