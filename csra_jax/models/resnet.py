"""torchvision-exact ResNets (v1.5: stride on the 3x3 conv) in Flax Linen, NHWC.

Submodule names mirror torchvision's state_dict (``layer1_0/conv1`` <-> ``layer1.0.conv1``,
``downsample_0`` <-> ``downsample.0``) so the converter is a short rule table. Padding is
explicit and symmetric, as PyTorch pads (Flax's 'SAME' pads asymmetrically for stride 2).

``conv_impl`` picks how the convolutions are lowered: ``"xla"``: all as
``lax.conv_general_dilated``; ``"gemm"``: the 1x1 convolutions (about 70% of a bottleneck
ResNet's FLOPs) as a ``dot_general`` over the channel axis (strided 1x1: slice, then dot),
which XLA's CPU backend runs through its GEMM path, 1.3-3x faster than its 1x1
convolutions, forward and backward; ``"gemm_vjp"``: as ``"gemm"``, and the 3x3/7x7
convolutions' weight gradient written out as per-tap GEMMs scanned over batch tiles
(``csra_jax.models.conv``; XLA's CPU weight-gradient convolution runs far below its
forward speed, ``bench/conv_backward.py``); ``"winograd"``: as ``"gemm_vjp"``,
and the 3x3 stride-1 convolutions by Winograd F(4x4, 3x3) or F(2x2, 3x3) where
``csra_jax.models.winograd.winograd_tile`` finds it faster for the shape (at least 128
channels and as many tiles as channels: layer2/layer3 at 448 px; 4x / 2.25x fewer FLOPs,
float rounding differs from a direct convolution's). ``"auto"`` (default) is
``"winograd"`` on a single CPU device, ``"gemm"`` on several CPU devices, and ``"xla"`` on
GPU/TPU (cuDNN / TPU convolutions are already GEMM-speed). The 3x3/7x7 forward is XLA's
convolution in every choice but those Winograd ones; the 1x1-as-dot and the written-out
gradients differ from XLA's by float rounding only. Parameters are identical: a
``kernel`` of shape (k, k, in, out) under the same module name. ``pool_impl`` picks the
stem max-pool's backward (``csra_jax.models.pooling``: ``"auto"`` is ``"masked"`` on CPU,
``"xla"`` on GPU/TPU; gradients bit-identical to XLA's and torch's).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from csra_jax.models.backend_choice import resolve_per_backend
from csra_jax.models.batch_norm import BatchNorm
from csra_jax.models.conv import ConvGemmVJP
from csra_jax.models.dense import dense_dot, resolve_weight_grad
from csra_jax.models.pooling import max_pool
from csra_jax.models.registry import BackboneSpec, register_backbone

# torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu"), untruncated.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

ARCH_SETTINGS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}


CONV_IMPLS = ("auto", "xla", "gemm", "gemm_vjp", "winograd")


def resolve_conv_impl(conv_impl: str) -> str:
    # The written-out backward scans over batch tiles; over a batch sharded across
    # several CPU devices that scan would gather the batch, so it is single-device only.
    # Winograd on top: resnet101@448 eval 0.91-0.92x and train 0.91-1.03x the time of
    # "gemm_vjp" in two runs (bench/vs_torch.py --ab_conv_impl gemm_vjp), with
    # F(2x2) for the >= 256-channel convs; the per-shape F(4x4)/F(2x2) rule then
    # took train 0.96x, eval 1.00x of that (bench/process_ab.py --trees).
    on_cpu = "winograd" if jax.device_count() == 1 else "gemm"
    return resolve_per_backend("conv_impl", conv_impl, CONV_IMPLS, on_cpu=on_cpu,
                               elsewhere="xla")


class Conv1x1(nn.Module):
    """A bias-free 1x1 convolution (stride s, no padding) as a dot over channels; the same
    ``kernel`` (1, 1, in, out) as ``nn.Conv``, and the same dtype promotion."""

    features: int
    stride: int = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", _conv_init, (1, 1, x.shape[-1], self.features),
                            self.param_dtype)
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        if self.stride > 1:
            x = x[:, ::self.stride, ::self.stride, :]
        # On the flattened (N*H*W, C) map: as a dot over the 4-D map, the weight gradient
        # (a contraction over batch and space) got a channel-major copy of the output
        # gradient, written with a stride (20% of resnet101's train step on CPU).
        flat = x.reshape(-1, x.shape[-1])
        if flat.dtype != jnp.float32 and resolve_weight_grad("auto") == "swapped":
            # Low precision on CPU: dots accumulated in float32 in both passes, which
            # XLA:CPU runs on the CPU's bf16 instructions (csra_jax.models.dense).
            y = dense_dot(flat, kernel[0, 0])
        else:
            y = jax.lax.dot_general(flat, kernel[0, 0], (((1,), (0,)), ((), ())))
        return y.reshape(*x.shape[:-1], self.features)


def _conv(features, kernel, stride, pad, dtype, param_dtype, name, impl="xla"):
    if kernel == 1 and pad == 0 and impl in ("gemm", "gemm_vjp", "winograd"):
        return Conv1x1(features, stride, dtype=dtype, param_dtype=param_dtype, name=name)
    if impl in ("gemm_vjp", "winograd"):
        return ConvGemmVJP(features, kernel, stride, pad, dtype=dtype,
                           param_dtype=param_dtype, kernel_init=_conv_init, name=name,
                           winograd=impl == "winograd")
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                   padding=((pad, pad), (pad, pad)), use_bias=False, dtype=dtype,
                   param_dtype=param_dtype, kernel_init=_conv_init, name=name)


@jax.custom_jvp
def residual_relu(s: jax.Array) -> jax.Array:
    """``relu`` of a residual sum, as a select: XLA:CPU's fusion treats ``max(s, 0)`` as
    a unary op it may recompute in every consumer, and so folds each block's output into
    the next block's residual add, recomputing the chain of all earlier blocks' BN + add
    + ReLU (quadratic in depth: 23% of resnet101's eval step); a select reads two
    full-size operands, so the block output is materialised once. Same values as
    ``nn.relu`` (NaN propagates) and the same derivative (0 at 0, as torch's)."""
    return jnp.where(s < 0, jnp.zeros_like(s), s)


@residual_relu.defjvp
def _residual_relu_jvp(primals, tangents):
    (s,), (ds,) = primals, tangents
    return residual_relu(s), jnp.where(s > 0, ds, jnp.zeros_like(ds))


def _bn(train, dtype, param_dtype, name):
    # Flax momentum 0.9 == torch momentum 0.1; eps and running-variance update as torch.
    return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     dtype=dtype, param_dtype=param_dtype, name=name)


class BasicBlock(nn.Module):
    planes: int
    stride: int = 1
    downsample: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    conv_impl: str = "xla"  # resolved: "xla", "gemm", "gemm_vjp" or "winograd"
    expansion = 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = functools.partial(_conv, dtype=self.dtype, param_dtype=self.param_dtype,
                                 impl=self.conv_impl)
        bn = functools.partial(_bn, train, self.dtype, self.param_dtype)
        identity = x
        y = nn.relu(bn(name="bn1")(conv(self.planes, 3, self.stride, 1, name="conv1")(x)))
        y = bn(name="bn2")(conv(self.planes, 3, 1, 1, name="conv2")(y))
        if self.downsample:
            identity = bn(name="downsample_1")(
                conv(self.planes, 1, self.stride, 0, name="downsample_0")(x))
        return residual_relu(y + identity)


class Bottleneck(nn.Module):
    planes: int
    stride: int = 1
    downsample: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    conv_impl: str = "xla"  # resolved: "xla", "gemm", "gemm_vjp" or "winograd"
    expansion = 4

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = functools.partial(_conv, dtype=self.dtype, param_dtype=self.param_dtype,
                                 impl=self.conv_impl)
        bn = functools.partial(_bn, train, self.dtype, self.param_dtype)
        identity = x
        y = nn.relu(bn(name="bn1")(conv(self.planes, 1, 1, 0, name="conv1")(x)))
        y = nn.relu(bn(name="bn2")(conv(self.planes, 3, self.stride, 1, name="conv2")(y)))
        y = bn(name="bn3")(conv(self.planes * 4, 1, 1, 0, name="conv3")(y))
        if self.downsample:
            identity = bn(name="downsample_1")(
                conv(self.planes * 4, 1, self.stride, 0, name="downsample_0")(x))
        return residual_relu(y + identity)


class ResNet(nn.Module):
    """ResNet trunk: images (B, H, W, 3) -> layer4 features (B, H/32, W/32, d).

    Attributes:
      block: "basic" or "bottleneck".
      layers: blocks per stage.
      remat: rematerialise each block in the backward pass (saves activation memory).
      conv_impl: "auto" | "xla" | "gemm" | "gemm_vjp" | "winograd", how convolutions are lowered
        (see above).
      return_stages: also return the outputs of layer1..layer4 (for heads that attend to
        intermediate depths); the default path returns only the last map.
    """

    block: str
    layers: Sequence[int]
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    remat: bool = False
    return_stages: bool = False
    conv_impl: str = "auto"
    pool_impl: str = "auto"  # the stem max-pool's backward (csra_jax.models.pooling)

    @property
    def num_features(self) -> int:
        return 512 * (4 if self.block == "bottleneck" else 1)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False):
        block_cls = Bottleneck if self.block == "bottleneck" else BasicBlock
        impl = resolve_conv_impl(self.conv_impl)
        if self.remat:
            block_cls = nn.remat(block_cls, static_argnums=(2,))
        x = x.astype(self.dtype)
        x = _conv(64, 7, 2, 3, self.dtype, self.param_dtype, "conv1", impl)(x)
        x = nn.relu(_bn(train, self.dtype, self.param_dtype, "bn1")(x))
        x = max_pool(x, 3, 2, 1, impl=self.pool_impl)
        in_planes, stages = 64, []
        for i, num_blocks in enumerate(self.layers):
            planes = 64 * 2 ** i
            for j in range(num_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                downsample = j == 0 and (stride != 1 or in_planes != planes * block_cls.expansion)
                x = block_cls(planes, stride, downsample, self.dtype, self.param_dtype,
                              conv_impl=impl, name=f"layer{i + 1}_{j}")(x, train)
                in_planes = planes * block_cls.expansion
            stages.append(x)
        return tuple(stages) if self.return_stages else x


def resnet(arch: str, **kwargs) -> ResNet:
    block, layers = ARCH_SETTINGS[arch]
    return ResNet(block=block, layers=layers, **kwargs)


def _torch_twin(settings, img_size, num_classes):
    del img_size
    from torchvision.models import resnet as tv
    block = tv.Bottleneck if settings["block"] == "bottleneck" else tv.BasicBlock
    return tv.ResNet(block, list(settings["layers"]), num_classes=num_classes)


register_backbone(BackboneSpec(
    family="resnet", module=ResNet,
    archs={name: {"block": b, "layers": l} for name, (b, l) in ARCH_SETTINGS.items()},
    tiny={"block": "basic", "layers": (1, 1, 1, 1)},
    options=("remat", "conv_impl", "pool_impl"),
    config_fields={"remat": "remat", "conv_impl": "conv_impl", "pool_impl": "pool_impl"},
    normalization="resnet",  # [0, 1], as the official CSRA ResNets
    torch_source="torchvision", torch_classifier="fc", torch_twin=_torch_twin))
