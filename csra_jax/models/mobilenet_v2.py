"""torchvision-exact MobileNet-V2 (``torchvision.models.mobilenet_v2``) in Flax Linen, NHWC.

The paper's Table 1 "MobileNet" row. The backbone output is ``features`` (the 1x1 conv to
1280 channels, ReLU6), the map torchvision's average pooling consumes. Names mirror
torchvision's state_dict through the converter's rule (a numeric key part joins its
parent with "_"): ``features.2.conv.1.0.weight`` <-> ``features_2/conv_1_0/kernel``.
"""

from __future__ import annotations

from typing import Any, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from csra_jax.models.resnet import _bn
from csra_jax.models.registry import BackboneSpec, register_backbone
from csra_jax.models.torchvision_blocks import (STAGE_STRIDES, conv2d, conv_norm_act,
                                                make_divisible)

ARCH_SETTINGS = {
    # name: width_mult
    "mobilenet_v2": 1.0,
}

# torchvision's inverted_residual_setting: expansion t, channels c, blocks n, stride s.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """[1x1 expand, ReLU6] -> 3x3 depthwise, ReLU6 -> 1x1 linear projection (+ identity).

    Children are named by their index in torchvision's ``conv`` Sequential.
    """

    out_channels: int
    stride: int
    expand_ratio: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        in_channels = x.shape[-1]
        hidden = int(round(in_channels * self.expand_ratio))
        y, i = x, 0
        if self.expand_ratio != 1:
            y = conv_norm_act(y, hidden, 1, 1, train, "conv_0", activation=nn.relu6, **kw)
            i = 1
        y = conv_norm_act(y, hidden, 3, self.stride, train, f"conv_{i}", activation=nn.relu6,
                          groups=hidden, **kw)
        y = conv2d(self.out_channels, 1, 1, name=f"conv_{i + 1}", **kw)(y)
        y = _bn(train, name=f"conv_{i + 2}", **kw)(y)
        if self.stride == 1 and in_channels == self.out_channels:
            return x + y
        return y


class MobileNetV2(nn.Module):
    """MobileNet-V2 trunk: images (B, H, W, 3) -> (B, H/32, W/32, 1280).

    Attributes:
      width_mult: torchvision's channel multiplier (1.0 for ``mobilenet_v2``).
      inverted_residual_setting: torchvision's (t, c, n, s) per stage (the test-sized
        member has one block per stage).
      remat: rematerialise each inverted-residual block in the backward pass.
      return_stages: return the last maps at strides 4, 8, 16 and the final stride-32
        map (the one the head gets), for heads that attend to intermediate depths.
    """

    width_mult: float = 1.0
    inverted_residual_setting: Tuple[Tuple[int, int, int, int], ...] = INVERTED_RESIDUAL_SETTING
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    remat: bool = False
    return_stages: bool = False

    @property
    def num_features(self) -> int:
        return make_divisible(1280 * max(1.0, self.width_mult))

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        block_cls = nn.remat(InvertedResidual, static_argnums=(2,)) if self.remat \
            else InvertedResidual
        x = conv_norm_act(x.astype(self.dtype), make_divisible(32 * self.width_mult), 3, 2,
                          train, "features_0", activation=nn.relu6, **kw)
        index, stride, stages = 1, 2, {}
        for t, c, n, s in self.inverted_residual_setting:
            for j in range(n):
                block_stride = s if j == 0 else 1
                x = block_cls(make_divisible(c * self.width_mult), block_stride, t, **kw,
                              name=f"features_{index}")(x, train)
                index, stride = index + 1, stride * block_stride
                stages[stride] = x
        x = conv_norm_act(x, self.num_features, 1, 1, train, f"features_{index}",
                          activation=nn.relu6, **kw)
        stages[stride] = x
        return tuple(stages[s] for s in STAGE_STRIDES) if self.return_stages else x


def mobilenet_v2(arch: str, **kwargs) -> MobileNetV2:
    if arch not in ARCH_SETTINGS:
        raise ValueError(f"unknown MobileNet-V2 arch {arch!r}; valid: {', '.join(ARCH_SETTINGS)}.")
    return MobileNetV2(width_mult=ARCH_SETTINGS[arch], **kwargs)


def _torch_twin(settings, img_size, num_classes):
    del img_size
    import torchvision
    settings = dict(settings)
    setting = settings.pop("inverted_residual_setting", INVERTED_RESIDUAL_SETTING)
    return torchvision.models.MobileNetV2(num_classes=num_classes, **settings,
                                          inverted_residual_setting=[list(s) for s in setting])


register_backbone(BackboneSpec(
    family="mobilenet_v2", module=MobileNetV2,
    archs={name: {"width_mult": w} for name, w in ARCH_SETTINGS.items()},
    tiny={"width_mult": 0.25,
          "inverted_residual_setting": tuple((t, c, 1, s) for t, c, _, s in
                                             INVERTED_RESIDUAL_SETTING)},
    normalization="imagenet",  # torchvision's ImageNet weights
    stage_strides=lambda s: STAGE_STRIDES,
    torch_source="torchvision", torch_classifier="classifier.1", torch_twin=_torch_twin))
