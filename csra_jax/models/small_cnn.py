"""A small VGG-style CNN for CPU demos and tests (not a paper backbone).

Output stride 8, so a 128 px image gives a 16x16 map: enough positions for class-specific
spatial attention to matter on small objects, at ~0.16 GMACs per 128 px image (a quarter
of ResNet-18), so the demo trains from scratch on a 2-core CPU in minutes.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from csra_jax.models.resnet import _bn, _conv, resolve_conv_impl
from csra_jax.models.pooling import max_pool
from csra_jax.models.registry import BackboneSpec, register_backbone


class SmallCNN(nn.Module):
    """images (B, H, W, 3) -> (B, H/8, W/8, widths[-1])."""

    widths: Sequence[int] = (32, 64, 128)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    remat: bool = False  # accepted for interface parity; the model is small
    return_stages: bool = False
    conv_impl: str = "auto"  # as ResNet's: how the 3x3 convolutions' backward is lowered
    pool_impl: str = "auto"  # as ResNet's: how the max-pools' backward is lowered

    @property
    def num_features(self) -> int:
        return self.widths[-1]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        conv = functools.partial(_conv, impl=resolve_conv_impl(self.conv_impl), **kw)
        x = x.astype(self.dtype)
        x = nn.relu(_bn(train, name="stem_bn", **kw)(
            conv(self.widths[0], 3, 2, 1, name="stem_conv")(x)))
        stages = []
        for i, width in enumerate(self.widths):
            if i:
                x = max_pool(x, 2, 2, impl=self.pool_impl)
                x = nn.relu(_bn(train, name=f"stage{i}_bn0", **kw)(
                    conv(width, 3, 1, 1, name=f"stage{i}_conv0")(x)))
            x = nn.relu(_bn(train, name=f"stage{i}_bn1", **kw)(
                conv(width, 3, 1, 1, name=f"stage{i}_conv1")(x)))
            stages.append(x)
        return tuple(stages) if self.return_stages else x


register_backbone(BackboneSpec(
    family="small_cnn", module=SmallCNN, archs={"small_cnn": {}},
    options=("remat", "conv_impl", "pool_impl"),
    config_fields={"remat": "remat", "conv_impl": "conv_impl", "pool_impl": "pool_impl"},
    tiny={"widths": (8, 16, 16, 32)},  # four stages: room for three attention modules
    stage_strides=lambda s: tuple(2 ** (i + 1) for i in range(len(s.get("widths",
                                                                     SmallCNN.widths))))))
