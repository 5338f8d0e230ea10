"""Attend-and-rectify head: gated attention modules on intermediate activations.

"Pay Attention to the Activations: A Modular Attention Mechanism for Fine-Grained Image
Recognition" (Rodriguez et al., IEEE TMM 2020; ECCV 2018 "Attend and Rectify"),
following the authors' released PyTorch code. At each chosen depth l, with feature map
Z (B, h, w, C), K attention heads and L classes:

    H   = softmax over positions of Conv3x3_{C->K}(Z)             attention masks
    O   = Conv3x3_{C->K*L}(Z)                                      output heads
    o_k = sum_n H[k, n] O[k, :, n]                                 per-head logits
    s_k = sum_n H[k, n] Conv3x3_{C->K}(Z)[k, n];  g = softmax_k(tanh(s))
    o^l = sum_k g_k o_k                                            module output

Global gates gamma = tanh(BatchNorm1d(W GAP(Z_last))), W: (N+1) x C_last without bias,
normalised by softmax (or sigmoid, divided by their sum) over the N modules plus the
network's own classifier (GAP + Linear on Z_last). Output:

    single-label ("log_softmax"): sum_i gamma_i log_softmax(o^i)   (train with NLL)
    multi-label  ("logits"):      sum_i gamma_i o^i                (train with BCE)

Regulariser (training only): per module M = avgpool2x2(H) as (B, K, n'), G = M M^T,
mean((G * (1 - I))^2); times ``reg_weight``, averaged over modules, sown into the
``losses`` collection, which the train step adds to the loss.

Modules attach to the ``attention_depth`` deepest stage outputs before the last one
(ResNet, depth 3: layer3, layer2, layer1), deepest first as in the authors' code; the
gate and the classifier read the last one (ResNet: layer4). The three 3x3 convolutions of a module
run as one convolution over their concatenated kernels.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from csra_jax.models.batch_norm import BatchNorm
from csra_jax.models.gap import GAPHead
from csra_jax.models.head import ClassMaps, Head, min_max_per_class
from csra_jax.models.registry import HeadSpec, register_head

GATES = ("softmax", "sigmoid")
AGGREGATES = ("logits", "log_softmax")

# torch.nn.init.kaiming_normal_ (fan_in, gain sqrt(2), untruncated), as the authors init.
_kaiming_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def attention_reg(masks: jax.Array) -> jax.Array:
    """The inter-mask regulariser of one module, unweighted.

    masks: (B, h, w, K) attention masks. Pools 2x2 with stride 2 (an odd last row or
    column is dropped, as ``F.avg_pool2d``), G = M M^T per image, and returns the mean
    of the squared off-diagonal entries over all B*K*K entries (diagonal counted as 0).
    """
    b, h, w, k = masks.shape
    if h < 2 or w < 2:
        raise ValueError(f"attention_reg needs masks of at least 2x2 positions, got {h}x{w}; "
                         "use larger images or attach to shallower (larger) stages.")
    pooled = nn.avg_pool(masks.astype(jnp.float32), (2, 2), strides=(2, 2))
    m = pooled.reshape(b, -1, k)
    gram = jnp.einsum("bnk,bnj->bkj", m, m)
    off_diagonal = gram * (1.0 - jnp.eye(k, dtype=gram.dtype))
    return jnp.mean(off_diagonal ** 2)


class AttentionModule(nn.Module):
    """One depth: (B, h, w, C) -> module logits o^l (B, L), masks H (B, h, w, K) and, with
    ``with_maps``, each position's share of o^l (B, h, w, L), which sums to o^l."""

    num_classes: int
    heads: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, with_maps: bool = False):
        k, num_classes, c = self.heads, self.num_classes, z.shape[-1]
        shape = (3, 3, c)
        kernel = jnp.concatenate([
            self.param("attention", _kaiming_normal, shape + (k,), self.param_dtype),
            self.param("score", _kaiming_normal, shape + (k,), self.param_dtype),
            self.param("output", _kaiming_normal, shape + (k * num_classes,), self.param_dtype),
        ], axis=-1)
        y = jax.lax.conv_general_dilated(
            z.astype(self.dtype), kernel.astype(self.dtype), (1, 1), ((1, 1), (1, 1)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), preferred_element_type=jnp.float32)
        b, h, w, _ = y.shape
        y = y.reshape(b, h * w, -1)
        masks = jax.nn.softmax(y[..., :k], axis=1)                  # (B, N, K) over positions
        scores = jnp.sum(masks * y[..., k:2 * k], axis=1)          # s_k (B, K)
        outputs = y[..., 2 * k:].reshape(b, h * w, k, num_classes)  # torch's (K, L) order
        head_logits = jnp.einsum("bnk,bnkl->bkl", masks, outputs)  # o_k (B, K, L)
        confidence = jax.nn.softmax(jnp.tanh(scores), axis=-1)     # g (B, K)
        logits = jnp.einsum("bk,bkl->bl", confidence, head_logits)
        if not with_maps:
            return logits, masks.reshape(b, h, w, k)
        share = jnp.einsum("bk,bnk,bnkl->bnl", confidence, masks, outputs)
        return logits, masks.reshape(b, h, w, k), share.reshape(b, h, w, num_classes)


class AttendRectifyHead(Head):
    """Stage outputs (tuple of (B, h_i, w_i, C_i), shallow to deep) -> (B, L) float32.

    Attributes:
      num_classes: L.
      attention_depth: number of attention modules N (authors: 3).
      attention_heads: attention heads K per module (authors: 2 or 4).
      gate: "softmax" or "sigmoid" normalisation of the global gates.
      aggregate: "logits" (multi-label, BCE) or "log_softmax" (single-label, NLL).
      reg_weight: weight of the inter-mask regulariser (authors: 1e-3); 0 disables it.

    Class maps (``with_maps``): the deepest module's per-position share of its logits,
    times the number of positions (so their mean is o^l), min-max normalised for pictures.
    """

    num_classes: int
    attention_depth: int = 3
    attention_heads: int = 2
    gate: str = "softmax"
    aggregate: str = "logits"
    reg_weight: float = 1e-3
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        validate_attend_rectify_args(self.num_classes, self.attention_depth,
                                     self.attention_heads, self.gate, self.aggregate,
                                     self.reg_weight)
        super().__post_init__()

    @property
    def outputs_log_probs(self) -> bool:
        return self.aggregate == "log_softmax"

    @nn.compact
    def __call__(self, stages: Sequence[jax.Array], train: bool = False,
                 with_maps: bool = False):
        if not isinstance(stages, (tuple, list)) or len(stages) < 2:
            raise ValueError("AttendRectifyHead takes the backbone's stage outputs (build the "
                             "backbone with return_stages=True; create_model does this).")
        if self.attention_depth > len(stages) - 1:
            raise ValueError(f"AttendRectifyHead: attention_depth={self.attention_depth} but the "
                             f"backbone has only {len(stages) - 1} stages before its last one.")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        last = stages[-1]
        attached = [len(stages) - 2 - j for j in range(self.attention_depth)]  # deepest first
        outputs, regs, maps = [], [], None
        for i in attached:
            logits, masks, *share = AttentionModule(
                self.num_classes, self.attention_heads, name=f"att{i}", **kw)(
                    stages[i], with_maps=with_maps and maps is None)
            if share:
                scores = share[0] * (share[0].shape[1] * share[0].shape[2])
                maps = ClassMaps(scores=scores, attention=min_max_per_class(scores))
            outputs.append(logits)
            if train and self.reg_weight:
                regs.append(attention_reg(masks))
        outputs.append(GAPHead(self.num_classes, name="classifier", **kw)(last))
        outputs = jnp.stack(outputs, axis=1).astype(jnp.float32)   # (B, N+1, L)
        if self.aggregate == "log_softmax":
            outputs = jax.nn.log_softmax(outputs, axis=-1)

        pooled = jnp.mean(last.astype(jnp.float32), axis=(1, 2))
        gates = nn.Dense(self.attention_depth + 1, use_bias=False, kernel_init=_kaiming_normal,
                         name="gate", **kw)(pooled.astype(self.dtype))
        gates = jnp.tanh(BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                   dtype=jnp.float32, param_dtype=self.param_dtype,
                                   name="gate_bn")(gates.astype(jnp.float32)))
        if self.gate == "softmax":
            gamma = jax.nn.softmax(gates, axis=-1)
        else:
            sig = jax.nn.sigmoid(gates)
            gamma = sig / (1e-6 + jnp.sum(sig, axis=-1, keepdims=True))
        self.sow("intermediates", "gates", gamma)
        if regs:
            self.sow("losses", "attention_reg", self.reg_weight * jnp.mean(jnp.stack(regs)))
        out = jnp.einsum("bi,bil->bl", gamma, outputs)
        return (out, maps) if with_maps else out


def validate_attend_rectify_args(num_classes, attention_depth, attention_heads, gate, aggregate,
                                 reg_weight) -> None:
    """Raises ValueError naming the first argument we cannot build the head with."""
    for name, value in (("num_classes", num_classes), ("attention_depth", attention_depth),
                        ("attention_heads", attention_heads)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"attend_rectify: {name} must be a positive int, got {value!r}.")
    if gate not in GATES:
        raise ValueError(f"attend_rectify: gate={gate!r}; valid: {', '.join(GATES)}.")
    if aggregate not in AGGREGATES:
        raise ValueError(f"attend_rectify: aggregate={aggregate!r}; "
                         f"valid: {', '.join(AGGREGATES)}.")
    if not reg_weight >= 0:
        raise ValueError(f"attend_rectify: reg_weight must be >= 0, got {reg_weight!r}.")


def _task_aggregate(task: str) -> str:
    from csra_jax.tasks import get_task
    return get_task(task).aggregate


def _build(num_classes, num_heads, lam, dtype, param_dtype, **options):
    del num_heads, lam  # CSRA's
    return AttendRectifyHead(num_classes, dtype=dtype, param_dtype=param_dtype, **options)


register_head(HeadSpec(
    name="attend_rectify", module=AttendRectifyHead, build=_build,
    options=("attention_depth", "attention_heads", "gate", "aggregate", "reg_weight"),
    config_fields={"attention_depth": "attention_depth", "attention_heads": "attention_heads",
                   "gate": "gate", "reg_weight": "attention_reg_weight"},
    # the task says: gate-weighted logits (multi-label, BCE) or log-probabilities (NLL)
    config_options=lambda config: {"aggregate": _task_aggregate(config.task)},
    reads_stages=True))
