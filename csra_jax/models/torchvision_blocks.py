"""torchvision's ``ops.misc`` building blocks (Conv2dNormActivation, SqueezeExcitation,
``_make_divisible``) for the MobileNet-V2 and EfficientNet ports.

Conv2dNormActivation is an ``nn.Sequential(conv, bn, act)`` in torchvision, so its
state_dict keys are ``<name>.0.weight`` / ``<name>.1.running_mean``; ``conv_norm_act``
creates the two siblings ``<name>_0`` (conv) and ``<name>_1`` (BN) in the calling module,
which is what the converter's rule turns those keys into. Padding is (k-1)//2 on every
side, as PyTorch pads (Flax's 'SAME' pads stride-2 convs asymmetrically).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from csra_jax.models.resnet import _bn, _conv_init

# The strides at which ``return_stages`` hands out feature maps (the last one is the map
# the head gets), like ResNet's layer1..layer4.
STAGE_STRIDES = (4, 8, 16, 32)


def make_divisible(v: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """torchvision's ``_make_divisible``: round a channel count to a multiple of
    ``divisor`` without going more than 10% below ``v`` (checkpoint shapes depend on it)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def conv2d(features: int, kernel: int, stride: int, dtype: Any, param_dtype: Any, name: str,
           groups: int = 1, use_bias: bool = False) -> nn.Conv:
    """torch ``nn.Conv2d`` with padding (k-1)//2 and torchvision's kaiming fan-out init;
    ``groups`` = input channels gives the depthwise conv."""
    pad = (kernel - 1) // 2
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                   padding=((pad, pad), (pad, pad)), feature_group_count=groups,
                   use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
                   kernel_init=_conv_init, name=name)


def conv_norm_act(x: jax.Array, features: int, kernel: int, stride: int, train: bool,
                  name: str, *, activation: Optional[Callable] = None, groups: int = 1,
                  dtype: Any = jnp.float32, param_dtype: Any = jnp.float32) -> jax.Array:
    """Conv2dNormActivation (BatchNorm eps 1e-5, torch momentum 0.1 and running-variance
    update); call inside a compact method: the conv and BN become ``<name>_0`` /
    ``<name>_1`` of that module."""
    x = conv2d(features, kernel, stride, dtype, param_dtype, f"{name}_0", groups)(x)
    x = _bn(train, dtype, param_dtype, f"{name}_1")(x)
    return x if activation is None else activation(x)


class SqueezeExcitation(nn.Module):
    """x * sigmoid(fc2(act(fc1(mean_hw x)))), fc1/fc2 1x1 convs with bias (torchvision)."""

    squeeze_channels: int
    activation: Callable = nn.relu
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = jnp.mean(x.astype(jnp.float32), axis=(1, 2), keepdims=True).astype(self.dtype)
        scale = conv2d(self.squeeze_channels, 1, 1, self.dtype, self.param_dtype, "fc1",
                       use_bias=True)(scale)
        scale = conv2d(x.shape[-1], 1, 1, self.dtype, self.param_dtype, "fc2",
                       use_bias=True)(self.activation(scale))
        return x * nn.sigmoid(scale)
