"""The CSRA head: class-specific residual attention (Zhu & Wu, ICCV 2021).

For each head with temperature T and class i with classifier vector m_i:

    score[b, k, i] = x[b, k] . m_i / ||m_i||
    base_logit     = mean_k score
    att_logit      = sum_k softmax_k(T * score) * score      (T = inf: max_k score)
    head_logit     = base_logit + lam * att_logit

and the heads' logits are summed. All heads' classifiers live in one stacked kernel of
shape (H, d, C) and are evaluated by a single einsum; heads with T = inf and finite T are
split statically, so the whole head is one fused XLA computation.

``with_maps=True`` also returns the first head's class scores and attention
softmax_k(T * score) (paper Eq. 2), the map pictures show.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from csra_jax.models.head import ClassMaps, Head, spatial_shape
from csra_jax.models.registry import HeadSpec, register_head

# The paper's temperature sets (official code: 99 stands for inf, i.e. max-pooling).
PAPER_TEMPERATURES = {
    1: (1.0,),
    2: (1.0, math.inf),
    4: (1.0, 2.0, 4.0, math.inf),
    6: (1.0, 2.0, 3.0, 4.0, 5.0, math.inf),
    8: (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, math.inf),
}

# torch.nn.Conv2d's default init (kaiming_uniform with a=sqrt(5)) is U(-1/sqrt(d), 1/sqrt(d)).
_torch_conv_init = nn.initializers.variance_scaling(
    1.0 / 3.0, "fan_in", "uniform", in_axis=-2, out_axis=-1, batch_axis=(0,))


def resolve_temperatures(num_heads: int, temperatures: Optional[Sequence[float]] = None) -> tuple:
    """Returns the temperature of each head, validating the combination."""
    if temperatures is None:
        if num_heads not in PAPER_TEMPERATURES:
            raise ValueError(
                f"CSRAHead: num_heads={num_heads} has no default temperature set; the paper "
                f"defines H in {sorted(PAPER_TEMPERATURES)}. Pass temperatures=[...] explicitly "
                f"(one per head, math.inf for max-pooling).")
        return PAPER_TEMPERATURES[num_heads]
    temps = tuple(float(t) for t in temperatures)
    if len(temps) != num_heads:
        raise ValueError(
            f"CSRAHead: got {len(temps)} temperatures {list(temps)} for num_heads={num_heads}; "
            f"give exactly one temperature per head.")
    for t in temps:
        if not t > 0:  # also rejects NaN
            raise ValueError(
                f"CSRAHead: temperature {t} is invalid; every temperature must be > 0 "
                f"(math.inf selects max-pooling).")
    return temps


def validate_csra_args(num_classes: int, num_heads: int, lam: float,
                       temperatures: Optional[Sequence[float]]) -> tuple:
    """Checks the head's arguments; returns the resolved temperatures."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"CSRAHead: num_classes must be a positive int, got {num_classes!r}.")
    if not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"CSRAHead: num_heads must be a positive int, got {num_heads!r}.")
    if not lam >= 0:
        raise ValueError(f"CSRAHead: lam must be >= 0 (the paper uses 0.1-1.0), got {lam}.")
    return resolve_temperatures(num_heads, temperatures)


def flatten_positions(x: jax.Array) -> jax.Array:
    """(B, h, w, d) feature map or (B, N, d) tokens -> (B, N, d)."""
    if x.ndim == 4:
        return x.reshape(x.shape[0], -1, x.shape[-1])
    if x.ndim == 3:
        return x
    raise ValueError(
        f"expected a feature map (B, h, w, d) or tokens (B, N, d), got shape {x.shape}.")


def csra_pool(score: jax.Array, temperatures: Sequence[float], lam: float) -> jax.Array:
    """Sums base + lam * attention logits over heads.

    score: (B, H, N, C) class scores per head and position, in float32.
    Returns (B, C).
    """
    temps = tuple(temperatures)
    base_logit = jnp.mean(score, axis=2).sum(axis=1)
    finite = [h for h, t in enumerate(temps) if math.isfinite(t)]
    infinite = [h for h, t in enumerate(temps) if not math.isfinite(t)]
    att_logit = jnp.zeros_like(base_logit)
    if finite:
        s = _select_heads(score, finite)
        t = jnp.asarray([temps[h] for h in finite], score.dtype)[None, :, None, None]
        weights = jax.nn.softmax(s * t, axis=2)
        att_logit = att_logit + jnp.sum(weights * s, axis=(1, 2))
    if infinite:
        att_logit = att_logit + jnp.max(_select_heads(score, infinite), axis=2).sum(axis=1)
    return base_logit + lam * att_logit


def _select_heads(score: jax.Array, heads: Sequence[int]) -> jax.Array:
    """score[:, heads]; a static slice when the heads are contiguous (the paper's sets put
    T = inf last), which avoids a gather forward and a scatter-add backward."""
    if list(heads) == list(range(heads[0], heads[-1] + 1)):
        return score[:, heads[0]:heads[-1] + 1]
    return score[:, jnp.array(heads)]


class CSRAHead(Head):
    """Class-specific residual attention head.

    Attributes:
      num_classes: number of classes C.
      num_heads: number of heads H; the logits of all heads are summed.
      lam: weight of the attention logit (the paper's lambda), >= 0.
      temperatures: one per head; defaults to the paper's set for H in {1, 2, 4, 6, 8}.
        ``math.inf`` is an exact max over positions.
      normalize: divide each class score by the norm of its classifier vector (official).
      dtype: computation dtype of the class-score einsum; pooling runs in float32 and the
        logits are float32 (cheap: (B, H, N, C) is small next to the backbone).
      param_dtype: dtype of the stacked kernel (H, d, C).
    """

    official_csra = True  # the official release's classifier.multi_head.* load into kernel

    num_classes: int
    num_heads: int = 1
    lam: float = 0.1
    temperatures: Optional[Sequence[float]] = None
    normalize: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        validate_csra_args(self.num_classes, self.num_heads, self.lam, self.temperatures)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, with_maps: bool = False):
        del train  # no dropout or BatchNorm in the head
        temps = resolve_temperatures(self.num_heads, self.temperatures)
        kernel = self.param("kernel", _torch_conv_init,
                            (self.num_heads, x.shape[-1], self.num_classes), self.param_dtype)
        score = class_scores(x, kernel, self.normalize, self.dtype)
        logits = csra_pool(score, temps, self.lam)
        if not with_maps:
            return logits
        h, w = spatial_shape(x)
        first = class_scores(x.astype(jnp.float32), kernel[:1].astype(jnp.float32),
                             self.normalize, jnp.float32)[:, 0]          # (B, N, C)
        attention = attention_weights(first, temps[0])
        b, c = first.shape[0], self.num_classes
        return logits, ClassMaps(scores=first.reshape(b, h, w, c),
                                 attention=attention.transpose(0, 2, 1).reshape(b, c, h, w))


def class_scores(x: jax.Array, kernel: jax.Array, normalize: bool = True,
                 dtype: Any = jnp.float32) -> jax.Array:
    """score[b, h, k, i] = x_k . m_i / ||m_i||: (B, h, w, d) or (B, N, d) features and a
    stacked (H, d, C) kernel -> (B, H, N, C) float32 (einsum in ``dtype``)."""
    x = flatten_positions(x)
    if normalize:
        # Dividing the classifier instead of the score map: same value, (H,d,C) work
        # instead of (B,H,N,C).
        kernel = kernel / jnp.linalg.norm(kernel.astype(jnp.float32), axis=1,
                                          keepdims=True).astype(kernel.dtype)
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    return jnp.einsum("bnd,hdc->bhnc", x, kernel, preferred_element_type=jnp.float32)


def attention_weights(score: jax.Array, temperature: float) -> jax.Array:
    """softmax over positions (axis 1) of T * score; T = inf: one-hot at the max, the
    limit of the softmax and exactly the position a max-pooling head reads."""
    if math.isfinite(temperature):
        return jax.nn.softmax(temperature * score, axis=1)
    return jax.nn.one_hot(jnp.argmax(score, axis=1), score.shape[1], axis=1, dtype=score.dtype)


def _build(num_classes, num_heads, lam, dtype, param_dtype, **options):
    validate_csra_args(num_classes, num_heads, lam, options.get("temperatures"))
    return CSRAHead(num_classes, num_heads=num_heads, lam=lam, dtype=dtype,
                    param_dtype=param_dtype, **options)


register_head(HeadSpec(
    name="csra", module=CSRAHead, build=_build, options=("temperatures", "normalize"),
    config_fields={"temperatures": "temperatures", "normalize": "normalize"}))
