"""Training losses: BCE-with-logits for multi-label, softmax cross-entropy for single-label.

Both compute in float32 whatever the logits' dtype (bf16 logits would otherwise lose
the small per-entry losses), and both take an optional per-example validity ``mask``
so padded examples in a sharded batch (the last, partial batch) do not count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["bce_with_logits", "softmax_cross_entropy", "nll_loss"]


def _weights(shape, ignore, mask, name_shape: str):
    """Float32 0/1 weights of ``shape`` from ``ignore`` (same shape) and ``mask`` (B,)."""
    w = jnp.ones(shape, jnp.float32)
    if ignore is not None:
        ignore = jnp.asarray(ignore)
        if ignore.shape != shape:
            raise ValueError(f"ignore has shape {ignore.shape} but {name_shape} have shape {shape}")
        w = w * (1.0 - (ignore != 0).astype(jnp.float32))
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.shape != shape[:1]:
            raise ValueError(f"mask must have shape ({shape[0]},) (one flag per example), got {mask.shape}")
        m = (mask != 0).astype(jnp.float32)
        w = w * m.reshape(m.shape + (1,) * (len(shape) - 1))
    return w


def _masked_mean(values, weights):
    # Entries are 0/1-weighted, so max(count, 1) only changes the all-masked case,
    # where the numerator is 0 too: the loss is 0 there, with zero (not NaN) gradients.
    return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def bce_with_logits(logits, labels, ignore=None, mask=None):
    """Mean binary cross-entropy on logits, as ``F.binary_cross_entropy_with_logits``.

    ``loss = max(x, 0) - x * y + log1p(exp(-|x|))`` (stable for any |x|), computed in
    float32. With ``ignore=None, mask=None`` it is the plain mean over all B*C entries
    (PyTorch ``reduction='mean'``, the official CSRA loss). ``ignore`` (B, C; nonzero =
    ignore) and ``mask`` (B,; nonzero = valid example) drop entries; the mean is then
    over the remaining entries, and 0 if none remain. ``labels`` may be soft (in [0, 1]).
    """
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if logits.ndim < 1 or labels.shape != logits.shape:
        raise ValueError(f"labels have shape {labels.shape} but logits have shape {logits.shape}")
    x = logits.astype(jnp.float32)
    y = labels.astype(jnp.float32)
    per_entry = jnp.maximum(x, 0.0) - x * y + jnp.log1p(jnp.exp(-jnp.abs(x)))
    if ignore is None and mask is None:
        return jnp.mean(per_entry)
    return _masked_mean(per_entry, _weights(x.shape, ignore, mask, "logits"))


def _check_int_labels(logits, int_labels):
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (batch, num_classes), got {logits.shape}")
    if int_labels.shape != logits.shape[:1]:
        raise ValueError(f"int_labels must have shape ({logits.shape[0]},), got {int_labels.shape}")
    if not jnp.issubdtype(int_labels.dtype, jnp.integer):
        raise ValueError(f"int_labels must be integer class indices, got dtype {int_labels.dtype}")
    if not isinstance(int_labels, jax.core.Tracer) and int_labels.size:
        lo, hi = int(np.min(int_labels)), int(np.max(int_labels))
        if lo < 0 or hi >= logits.shape[1]:
            raise ValueError(f"int_labels must be in [0, {logits.shape[1]}), got range [{lo}, {hi}]")


def softmax_cross_entropy(logits, int_labels, mask=None):
    """Mean softmax cross-entropy with integer labels, as ``F.cross_entropy``.

    ``logits`` (B, K), ``int_labels`` (B,) in [0, K). Computed in float32; with ``mask``
    (B,) the mean is over valid examples (0 if none). Out-of-range labels raise when
    the labels are concrete; under ``jit`` they cannot be checked.
    """
    logits = jnp.asarray(logits)
    int_labels = jnp.asarray(int_labels)
    _check_int_labels(logits, int_labels)
    per_example = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), int_labels)
    return _example_mean(per_example, mask)


def nll_loss(log_probs, int_labels, mask=None):
    """Mean negative log-likelihood ``-log_probs[b, y_b]``, as ``F.nll_loss``.

    For outputs that already are (mixtures of) log-probabilities, such as the
    attend-and-rectify head's single-label output; no softmax is applied again.
    """
    log_probs = jnp.asarray(log_probs)
    int_labels = jnp.asarray(int_labels)
    _check_int_labels(log_probs, int_labels)
    picked = jnp.take_along_axis(log_probs.astype(jnp.float32), int_labels[:, None], axis=1)
    return _example_mean(-picked[:, 0], mask)


def _example_mean(per_example, mask):
    if mask is None:
        return jnp.mean(per_example)
    return _masked_mean(per_example, _weights(per_example.shape, None, mask, "examples"))
