"""torchvision-exact EfficientNet-B0..B4 (``torchvision.models.efficientnet_b*``) in Flax
Linen, NHWC.

The paper's Table 1 "EfficientNet" row is B3. The backbone output is ``features`` (the
1x1 conv to 4x the last stage's channels, SiLU; 1536 for B3), the map torchvision's
average pooling consumes. Names mirror torchvision's state_dict through the converter's
rule: ``features.2.0.block.1.0.weight`` <-> ``features_2_0/block_1_0/kernel``,
``features.2.0.block.2.fc1.bias`` <-> ``features_2_0/block_2/fc1/bias``. B5..B7 are left
out: torchvision builds them with BatchNorm eps 1e-3 / momentum 0.01.
"""

from __future__ import annotations

import math
from typing import Any, List, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from csra_jax.models.torchvision_blocks import (STAGE_STRIDES, SqueezeExcitation,
                                                conv_norm_act, make_divisible)
from csra_jax.models.vit import DropPath
from csra_jax.models.registry import BackboneSpec, register_backbone

ARCH_SETTINGS = {
    # name: (width_mult, depth_mult), as torchvision's efficientnet_b* builders
    "efficientnet_b0": (1.0, 1.0),
    "efficientnet_b1": (1.0, 1.1),
    "efficientnet_b2": (1.1, 1.2),
    "efficientnet_b3": (1.2, 1.4),
    "efficientnet_b4": (1.4, 1.8),
}

# torchvision's B0 stages: expand_ratio, kernel, stride, in, out, num_layers.
_B0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


class BlockConfig(NamedTuple):
    """One MBConv block, after width/depth scaling (torchvision's per-block copy)."""
    stage: int           # index into ``features`` (1-based; 0 is the stem)
    index: int           # index within the stage's Sequential
    expand_ratio: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    drop_path_rate: float


def block_configs(width_mult: float, depth_mult: float,
                  drop_path_rate: float) -> List[BlockConfig]:
    """Every block, with torchvision's stochastic-depth schedule: block k of N total gets
    ``drop_path_rate * k / N`` (0 for the first, never reaching the full rate)."""
    stages = [(e, k, s, make_divisible(i * width_mult), make_divisible(o * width_mult),
               int(math.ceil(n * depth_mult))) for e, k, s, i, o, n in _B0_STAGES]
    total = sum(stage[-1] for stage in stages)
    blocks = []
    for stage, (expand, kernel, stride, in_ch, out_ch, num_layers) in enumerate(stages, 1):
        for j in range(num_layers):
            blocks.append(BlockConfig(stage, j, expand, kernel, stride if j == 0 else 1,
                                      in_ch if j == 0 else out_ch, out_ch,
                                      drop_path_rate * len(blocks) / total))
    return blocks


class MBConv(nn.Module):
    """[1x1 expand, SiLU] -> kxk depthwise, SiLU -> squeeze-excitation -> 1x1 projection,
    plus the identity (stochastic depth, torchvision's "row" mode) when shapes allow.

    Children are named by their index in torchvision's ``block`` Sequential.
    """

    cfg: BlockConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        cfg, kw = self.cfg, dict(dtype=self.dtype, param_dtype=self.param_dtype)
        expanded = make_divisible(cfg.in_channels * cfg.expand_ratio)
        y, i = x, 0
        if expanded != cfg.in_channels:
            y = conv_norm_act(y, expanded, 1, 1, train, "block_0", activation=nn.silu, **kw)
            i = 1
        y = conv_norm_act(y, expanded, cfg.kernel, cfg.stride, train, f"block_{i}",
                          activation=nn.silu, groups=expanded, **kw)
        y = SqueezeExcitation(max(1, cfg.in_channels // 4), nn.silu, **kw,
                              name=f"block_{i + 1}")(y)
        y = conv_norm_act(y, cfg.out_channels, 1, 1, train, f"block_{i + 2}", **kw)
        if cfg.stride == 1 and cfg.in_channels == cfg.out_channels:
            return x + DropPath(cfg.drop_path_rate)(y, deterministic=not train)
        return y


class EfficientNet(nn.Module):
    """EfficientNet trunk: images (B, H, W, 3) -> (B, H/32, W/32, 4 * last stage width).

    Attributes:
      width_mult, depth_mult: the compound-scaling multipliers (B3: 1.2, 1.4).
      drop_path_rate: torchvision's ``stochastic_depth_prob`` (its default 0.2), spread
        over the blocks as torchvision does; active only with ``train=True``, which then
        needs a 'dropout' rng.
      remat: rematerialise each MBConv block in the backward pass.
      return_stages: return the last maps at strides 4, 8, 16 and the final stride-32
        map (the one the head gets), for heads that attend to intermediate depths.
    """

    width_mult: float = 1.0
    depth_mult: float = 1.0
    drop_path_rate: float = 0.2
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    remat: bool = False
    return_stages: bool = False

    def __post_init__(self):
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"EfficientNet: drop_path_rate must be in [0, 1), "
                             f"got {self.drop_path_rate}.")
        super().__post_init__()

    @property
    def num_features(self) -> int:
        return 4 * make_divisible(_B0_STAGES[-1][4] * self.width_mult)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        block_cls = nn.remat(MBConv, static_argnums=(2,)) if self.remat else MBConv
        blocks = block_configs(self.width_mult, self.depth_mult, self.drop_path_rate)
        x = conv_norm_act(x.astype(self.dtype), blocks[0].in_channels, 3, 2, train,
                          "features_0", activation=nn.silu, **kw)
        stride, stages = 2, {}
        for cfg in blocks:
            x = block_cls(cfg, **kw, name=f"features_{cfg.stage}_{cfg.index}")(x, train)
            stride *= cfg.stride
            stages[stride] = x
        x = conv_norm_act(x, self.num_features, 1, 1, train, f"features_{blocks[-1].stage + 1}",
                          activation=nn.silu, **kw)
        stages[stride] = x
        return tuple(stages[s] for s in STAGE_STRIDES) if self.return_stages else x


def efficientnet(arch: str, **kwargs) -> EfficientNet:
    if arch not in ARCH_SETTINGS:
        raise ValueError(f"unknown EfficientNet arch {arch!r}; valid: {', '.join(ARCH_SETTINGS)}.")
    width_mult, depth_mult = ARCH_SETTINGS[arch]
    return EfficientNet(width_mult=width_mult, depth_mult=depth_mult, **kwargs)


def _torch_twin(settings, img_size, num_classes):
    del img_size
    from torchvision.models import efficientnet as tv
    setting, last_channel = tv._efficientnet_conf(
        "efficientnet_b0", width_mult=settings["width_mult"], depth_mult=settings["depth_mult"])
    return tv.EfficientNet(setting, dropout=0.0, last_channel=last_channel,
                           num_classes=num_classes)


register_backbone(BackboneSpec(
    family="efficientnet", module=EfficientNet,
    archs={name: {"width_mult": w, "depth_mult": d} for name, (w, d) in ARCH_SETTINGS.items()},
    tiny={"width_mult": 0.25, "depth_mult": 0.1},
    options=("remat", "drop_path_rate"),  # torchvision's stochastic_depth_prob
    config_fields={"remat": "remat", "drop_path_rate": "drop_path_rate"},
    normalization="imagenet",  # torchvision's ImageNet weights
    stage_strides=lambda s: STAGE_STRIDES,
    torch_source="torchvision", torch_classifier="classifier.1", torch_twin=_torch_twin))
