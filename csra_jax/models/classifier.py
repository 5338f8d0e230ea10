"""Backbone + head as one Linen module, and ``create_model`` to build it by name."""

from __future__ import annotations

from typing import Any, Callable, Dict

import flax.linen as nn
import jax
import jax.numpy as jnp

from csra_jax.models import efficientnet as efficientnet_lib
from csra_jax.models import mobilenet_v2 as mobilenet_v2_lib
from csra_jax.models import resnet as resnet_lib
from csra_jax.models import vit as vit_lib
from csra_jax.models.attend_rectify import AttendRectifyHead
from csra_jax.models.csra import CSRAHead, validate_csra_args
from csra_jax.models.gap import GAPHead
from csra_jax.models.small_cnn import SmallCNN


class Classifier(nn.Module):
    """images (B, H, W, 3), already normalised, NHWC -> logits (B, num_classes) float32.

    Params are ``{"backbone": ..., "head": ...}``; ResNets also carry ``batch_stats``.
    Heads that read several depths (attend-and-rectify) get the backbone's stage outputs
    and the ``train`` flag; a head may sow auxiliary losses into the ``losses`` collection.
    """

    backbone: nn.Module
    head: nn.Module

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected NHWC RGB images (B, H, W, 3), got shape {images.shape}.")
        features = self.backbone(images, train=train)
        if isinstance(self.head, AttendRectifyHead):
            return self.head(features, train=train)
        return self.head(features)

    def features(self, images: jax.Array, train: bool = False):
        """The backbone's feature map (a tuple of stage outputs for attend-and-rectify);
        ``model.apply(variables, x, method="features")``."""
        return self.backbone(images, train=train)


def _fully_convolutional(factory):
    """A BACKBONES entry for a CNN factory ``factory(arch, **kw)``; any input size works."""
    def build(arch, img_size, dtype, param_dtype, **kw):
        del img_size
        return factory(arch, dtype=dtype, param_dtype=param_dtype, **kw)
    return build


def _vit(arch, img_size, dtype, param_dtype, **kw):
    return vit_lib.vit(arch, img_size=img_size, dtype=dtype, param_dtype=param_dtype, **kw)


def _small_cnn(arch, img_size, dtype, param_dtype, **kw):
    del arch, img_size
    return SmallCNN(dtype=dtype, param_dtype=param_dtype, **kw)


BACKBONES: Dict[str, Callable[..., nn.Module]] = {
    **{name: _fully_convolutional(resnet_lib.resnet) for name in resnet_lib.ARCH_SETTINGS},
    **{name: _fully_convolutional(mobilenet_v2_lib.mobilenet_v2)
       for name in mobilenet_v2_lib.ARCH_SETTINGS},
    **{name: _fully_convolutional(efficientnet_lib.efficientnet)
       for name in efficientnet_lib.ARCH_SETTINGS},
    **{name: _vit for name in vit_lib.ARCH_SETTINGS},
    "small_cnn": _small_cnn,  # CPU demos and tests, not a paper backbone
}
HEADS = ("csra", "gap", "attend_rectify")

# Keyword arguments each family of backbone understands (the rest go to the head).
_BACKBONE_KWARGS = {
    "resnet": {"remat", "conv_impl"},
    "small_cnn": {"remat"},
    "vit": {"remat", "drop_rate", "attn_drop_rate", "drop_path_rate"},
    "mobilenet_v2": {"remat"},
    "efficientnet": {"remat", "drop_path_rate"},  # torchvision's stochastic_depth_prob
}
_HEAD_KWARGS = {
    "csra": {"temperatures", "normalize"},
    "gap": {"max_lam"},
    "attend_rectify": {"attention_depth", "attention_heads", "gate", "aggregate", "reg_weight"},
}


def available_archs() -> list:
    return sorted(BACKBONES)


def create_model(arch: str, num_classes: int, head: str = "csra", num_heads: int = 1,
                 lam: float = 0.1, img_size: int = 448, dtype: Any = jnp.float32,
                 **kwargs) -> Classifier:
    """Builds a backbone + head classifier by name.

    Args:
      arch: one of ``available_archs()``.
      num_classes: number of output classes.
      head: "csra" (the paper's head), "gap" (average pooling + linear with bias) or
        "attend_rectify" (gated attention modules on the backbone's stage outputs).
      num_heads, lam: CSRA's H and lambda (ignored by the other heads).
      img_size: input resolution (sizes the ViT position embedding; the CNNs accept any).
      dtype: computation dtype (e.g. jnp.bfloat16); params stay ``param_dtype``.
      **kwargs: ``param_dtype``; backbone options ``remat`` and, for ViTs, ``drop_rate``,
        ``attn_drop_rate``, ``drop_path_rate``, for EfficientNets ``drop_path_rate``
        (torchvision's stochastic depth, default 0.2); CSRA ``temperatures``, ``normalize``;
        GAP ``max_lam`` (the training-free mean + max_lam * max scoring, paper Fig. 1);
        attend-and-rectify ``attention_depth``, ``attention_heads``, ``gate``,
        ``aggregate``, ``reg_weight`` (see ``AttendRectifyHead``).
    """
    if arch not in BACKBONES:
        raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(available_archs())}.")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid: {', '.join(HEADS)}.")
    if not isinstance(img_size, int) or img_size <= 0:
        raise ValueError(f"img_size must be a positive int, got {img_size!r}.")
    param_dtype = kwargs.pop("param_dtype", jnp.float32)
    family = next(f for f in _BACKBONE_KWARGS if arch.startswith(f))
    if family == "vit" and img_size % 16:
        raise ValueError(f"{arch} needs img_size divisible by the patch size 16, got {img_size}.")
    backbone_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in _BACKBONE_KWARGS[family]}
    head_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in _HEAD_KWARGS[head]}
    if kwargs:
        valid = sorted(_BACKBONE_KWARGS[family] | _HEAD_KWARGS[head] | {"param_dtype"})
        raise ValueError(f"create_model({arch!r}, head={head!r}): unknown option(s) "
                         f"{sorted(kwargs)}; valid: {valid}.")
    if head == "attend_rectify":
        backbone_kw["return_stages"] = True
    backbone = BACKBONES[arch](arch, img_size, dtype, param_dtype, **backbone_kw)
    if head == "csra":
        validate_csra_args(num_classes, num_heads, lam, head_kw.get("temperatures"))
        head_module = CSRAHead(num_classes, num_heads=num_heads, lam=lam, dtype=dtype,
                               param_dtype=param_dtype, **head_kw)
    elif head == "attend_rectify":
        head_module = AttendRectifyHead(num_classes, dtype=dtype, param_dtype=param_dtype,
                                        **head_kw)
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
