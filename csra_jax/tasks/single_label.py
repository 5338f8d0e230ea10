"""Single-label recognition (one class per image): softmax cross-entropy, top-1 / top-5."""

from __future__ import annotations

import numpy as np

from csra_jax import metrics as metrics_lib
from csra_jax.tasks.base import Task


def _class_index(labels, xp=np):
    """One-hot (..., C) labels -> class indices (...): the datasets store every task's
    labels multi-hot."""
    return xp.argmax(labels, axis=-1)


class SingleLabel(Task):
    """Exactly one class per image: softmax scores, rated by top-1 accuracy."""

    name = "single_label"
    best_key = "top1"
    activation = "softmax"
    aggregate = "log_softmax"

    def loss(self, outputs, batch, log_probs=False):
        import jax.numpy as jnp
        from csra_jax.train.loss import nll_loss, softmax_cross_entropy  # training only
        loss_fn = nll_loss if log_probs else softmax_cross_entropy
        return loss_fn(outputs, _class_index(batch["labels"], jnp), mask=batch.get("mask"))

    def metrics(self, logits, labels, ignore=None, *, threshold=0.5, protocol="default"):
        del ignore, threshold, protocol  # one true class per image: nothing to ignore
        return metrics_lib.single_label_metrics(logits, _class_index(np.asarray(labels)))

    def summary_line(self, m):
        return f"top1 {m['top1']:.2f}  top5 {m['top5']:.2f}"

    def prior_entropy(self, label_freq):
        """Entropy of the class distribution (the frequencies normalised to sum to 1)."""
        p = np.clip(np.asarray(label_freq, np.float64), 1e-12, 1 - 1e-12)
        p = p / p.sum()
        return float(-(p * np.log(p)).sum())
