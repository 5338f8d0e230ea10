"""timm-exact Vision Transformer (``vit_base_patch16_224`` / ``vit_large_patch16_224``).

As in the official CSRA code, the class token goes through all blocks and is dropped
after the final LayerNorm; the patch tokens come out as a (B, h, w, d) feature map.
Names mirror timm's state_dict (``blocks_3/attn/qkv`` <-> ``blocks.3.attn.qkv``). The
position embedding is a parameter sized for ``img_size``; converting a 224 checkpoint to
another size resamples it (see csra_jax.convert.pos_embed).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from csra_jax.models.attention import multi_head_attention, resolve_attention_impl
from csra_jax.models.dense import Dense
from csra_jax.models.registry import BackboneSpec, register_backbone

ARCH_SETTINGS = {
    # name: (embed_dim, depth, num_heads)
    "vit_b16": (768, 12, 12),
    "vit_l16": (1024, 24, 16),
}

_dense_init = nn.initializers.truncated_normal(0.02)


def _dense(features, dtype, param_dtype, name, weight_grad="auto"):
    return Dense(features, dtype=dtype, param_dtype=param_dtype, kernel_init=_dense_init,
                 weight_grad=weight_grad, name=name)


def _dense_weight_grad(attention_impl: str) -> str:
    """The CPU formulations go together: ``attention_impl="jax"`` also keeps the Dense
    layers on JAX's own derivative, so that forward-mode differentiation works."""
    return "swapped" if resolve_attention_impl(attention_impl) == "cpu" else "autodiff"


def _layer_norm(dtype, param_dtype, name):
    return nn.LayerNorm(epsilon=1e-6, dtype=dtype, param_dtype=param_dtype, name=name)


class DropPath(nn.Module):
    """Stochastic depth per sample (timm's drop_path): uses the 'dropout' rng."""

    rate: float

    @nn.compact
    def __call__(self, x, deterministic: bool):
        if deterministic or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, shape)
        return jnp.where(mask, x / keep, 0).astype(x.dtype)


class Attention(nn.Module):
    num_heads: int
    attn_drop_rate: float = 0.0
    proj_drop_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    attention_impl: str = "auto"  # csra_jax.models.attention

    @nn.compact
    def __call__(self, x, deterministic: bool):
        b, n, d = x.shape
        head_dim = d // self.num_heads
        weight_grad = _dense_weight_grad(self.attention_impl)
        qkv = _dense(3 * d, self.dtype, self.param_dtype, "qkv", weight_grad)(x)
        q, k, v = jnp.split(qkv.reshape(b, n, 3, self.num_heads, head_dim), 3, axis=2)
        q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]  # (B, N, heads, head_dim)
        if self.attn_drop_rate and not deterministic:
            logits = jnp.einsum("bqhd,bkhd->bhqk", q * head_dim ** -0.5, k)
            weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
            weights = nn.Dropout(self.attn_drop_rate)(weights, deterministic=False)
            out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        else:
            out = multi_head_attention(q, k, v, self.attention_impl)
        out = _dense(d, self.dtype, self.param_dtype, "proj", weight_grad)(out.reshape(b, n, d))
        return nn.Dropout(self.proj_drop_rate)(out, deterministic=deterministic)


def gelu_erf(x):
    """Exact GELU as torch writes it, x * (1 + erf(x / sqrt(2))) / 2.

    ``jax.nn.gelu(approximate=False)`` writes it with ``erfc``, whose float32 lowering on
    XLA:CPU evaluates an exponential and two polynomials per element; ``erf`` is one
    clamped rational polynomial, and the derivative is the same expression either way.
    """
    half = jnp.asarray(0.5, x.dtype)
    return x * half * (1 + jax.lax.erf(x * jnp.asarray(0.5 ** 0.5, x.dtype)))


class Mlp(nn.Module):
    hidden: int
    drop_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    attention_impl: str = "auto"  # also picks the Dense weight gradient (_dense_weight_grad)

    @nn.compact
    def __call__(self, x, deterministic: bool):
        d = x.shape[-1]
        weight_grad = _dense_weight_grad(self.attention_impl)
        x = gelu_erf(_dense(self.hidden, self.dtype, self.param_dtype, "fc1", weight_grad)(x))
        x = nn.Dropout(self.drop_rate)(x, deterministic=deterministic)
        x = _dense(d, self.dtype, self.param_dtype, "fc2", weight_grad)(x)
        return nn.Dropout(self.drop_rate)(x, deterministic=deterministic)


class Block(nn.Module):
    num_heads: int
    mlp_ratio: float = 4.0
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    attention_impl: str = "auto"

    @nn.compact
    def __call__(self, x, deterministic: bool):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        y = _layer_norm(name="norm1", **kw)(x)
        y = Attention(self.num_heads, self.attn_drop_rate, self.drop_rate, name="attn",
                      attention_impl=self.attention_impl, **kw)(y, deterministic)
        x = x + DropPath(self.drop_path_rate)(y, deterministic)
        y = _layer_norm(name="norm2", **kw)(x)
        y = Mlp(int(x.shape[-1] * self.mlp_ratio), self.drop_rate, name="mlp",
                attention_impl=self.attention_impl, **kw)(
            y, deterministic)
        return x + DropPath(self.drop_path_rate)(y, deterministic)


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens (B, N, d), via a strided conv as timm."""

    embed_dim: int
    patch_size: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        p = self.patch_size
        x = nn.Conv(self.embed_dim, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype,
                    param_dtype=self.param_dtype, name="proj")(x.astype(self.dtype))
        return x.reshape(x.shape[0], -1, self.embed_dim)


class VisionTransformer(nn.Module):
    """ViT trunk: images (B, H, W, 3) -> patch-token map (B, H/16, W/16, d).

    Attributes:
      img_size: input resolution the position embedding is sized for.
      drop_path_rate: stochastic-depth rate, linearly increasing over blocks (timm).
      remat: rematerialise each block in the backward pass (ViT-L at 448 needs it on
        small accelerators).
      attention_impl: how attention is lowered (``csra_jax.models.attention``): "auto"
        (default) is the heads-major formulation on CPU, ``jax.nn.dot_product_attention``
        on GPU/TPU. With "cpu" the Dense layers also take the swapped weight gradient
        (``csra_jax.models.dense``); "jax" keeps JAX's own derivatives throughout, the
        choice for forward-mode (``jax.jvp``) differentiation.
      return_stages: also return every block's patch-token map.
    """

    embed_dim: int
    depth: int
    num_heads: int
    img_size: int = 224
    patch_size: int = 16
    mlp_ratio: float = 4.0
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    remat: bool = False
    return_stages: bool = False
    attention_impl: str = "auto"

    @property
    def num_features(self) -> int:
        return self.embed_dim

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False):
        b, height, width, _ = x.shape
        if height != self.img_size or width != self.img_size:
            raise ValueError(
                f"VisionTransformer was built for {self.img_size}x{self.img_size} inputs "
                f"(its position embedding has that grid) but got {height}x{width}; create "
                f"the model with img_size={height} and convert/resample the weights for it.")
        deterministic = not train
        attention_impl = resolve_attention_impl(self.attention_impl)
        grid = self.img_size // self.patch_size
        d = self.embed_dim
        x = PatchEmbed(d, self.patch_size, self.dtype, self.param_dtype, name="patch_embed")(x)
        cls_token = self.param("cls_token", nn.initializers.normal(1e-6), (1, 1, d),
                               self.param_dtype)
        pos_embed = self.param("pos_embed", nn.initializers.truncated_normal(0.02),
                               (1, grid * grid + 1, d), self.param_dtype)
        x = jnp.concatenate([jnp.broadcast_to(cls_token.astype(x.dtype), (b, 1, d)), x], axis=1)
        x = x + pos_embed.astype(x.dtype)
        x = nn.Dropout(self.drop_rate)(x, deterministic=deterministic)
        block_cls = nn.remat(Block, static_argnums=(2,)) if self.remat else Block
        stages = []
        for i in range(self.depth):
            rate = self.drop_path_rate * i / max(self.depth - 1, 1)
            x = block_cls(self.num_heads, self.mlp_ratio, self.drop_rate, self.attn_drop_rate,
                          rate, self.dtype, self.param_dtype, attention_impl,
                          name=f"blocks_{i}")(x, deterministic)
            if self.return_stages:
                stages.append(x[:, 1:].reshape(b, grid, grid, d))
        x = _layer_norm(self.dtype, self.param_dtype, "norm")(x)
        x = x[:, 1:].reshape(b, grid, grid, d)  # drop the class token, as official CSRA
        return tuple(stages[:-1]) + (x,) if self.return_stages else x


def vit(arch: str, **kwargs) -> VisionTransformer:
    embed_dim, depth, num_heads = ARCH_SETTINGS[arch]
    return VisionTransformer(embed_dim=embed_dim, depth=depth, num_heads=num_heads, **kwargs)


def _torch_twin(settings, img_size, num_classes):
    from timm.models.vision_transformer import VisionTransformer as TimmViT
    # Average of the patch tokens after the final norm: what our gap head reads.
    return TimmViT(img_size=img_size, patch_size=16, num_classes=num_classes,
                   global_pool="avg", fc_norm=False, **settings)


register_backbone(BackboneSpec(
    family="vit", module=VisionTransformer,
    archs={name: {"embed_dim": e, "depth": d, "num_heads": h}
           for name, (e, d, h) in ARCH_SETTINGS.items()},
    tiny={"embed_dim": 64, "depth": 4, "num_heads": 2},
    options=("remat", "drop_rate", "attn_drop_rate", "drop_path_rate", "attention_impl"),
    config_fields={"remat": "remat", "drop_rate": "drop_rate",
                   "drop_path_rate": "drop_path_rate", "attention_impl": "attention_impl"},
    config_defaults={"attention_impl": "auto"},  # "cpu" on CPU, "jax" on GPU/TPU
    normalization="vit",  # mean 0.5 / std 0.5, as timm's and the official CSRA ViTs
    stage_strides=lambda s: (16,) * s["depth"], input_multiple=16,
    input_multiple_reason="the patch size", has_batch_norm=False,
    torch_source="timm", torch_classifier="head", torch_twin=_torch_twin,
    torch_unused=(r"^pre_logits\.fc\.(weight|bias)$",)))  # in21k files' pre-logits layer
