"""Multi-label recognition (the CSRA paper's task): BCE on logits, mAP and CF1/OF1."""

from __future__ import annotations

import numpy as np

from csra_jax import metrics as metrics_lib
from csra_jax.tasks.base import Task


class MultiLabel(Task):
    """Each class present or not on its own: sigmoid scores, rated by mAP."""

    name = "multi_label"
    best_key = "mAP"
    activation = "sigmoid"
    aggregate = "logits"

    def loss(self, outputs, batch, log_probs=False):
        del log_probs  # multi-label heads output logits
        from csra_jax.train.loss import bce_with_logits  # training only: serving skips it
        # Training ignores only what the dataset marks ignored in its training split.
        return bce_with_logits(outputs, batch["labels"], ignore=batch.get("ignore"),
                               mask=batch.get("mask"))

    def metrics(self, logits, labels, ignore=None, *, threshold=0.5, protocol="default"):
        return metrics_lib.multilabel_metrics(logits, labels, ignore=ignore,
                                              threshold=threshold, protocol=protocol)

    def summary_line(self, m):
        line = ("mAP {mAP:.2f}  CP {CP:.1f} CR {CR:.1f} CF1 {CF1:.1f}  OP {OP:.1f} OR {OR:.1f} "
                "OF1 {OF1:.1f}  | top3 CF1 {CF1_top3:.1f} OF1 {OF1_top3:.1f}").format(**m)
        return f"{line}  [{m['protocol']} protocol]" if "protocol" in m else line

    per_class_title = "per-class AP"

    def per_class_table(self, m, class_names):
        return metrics_lib.format_ap_table(m["AP"] / 100.0, class_names)

    def notes(self, m):
        missing = m.get("classes_without_positives")
        return [f"{len(missing)} classes have no positives in this split and are left out "
                "of mAP"] if missing else []

    def prior_entropy(self, label_freq):
        """Mean binary entropy over classes: H = mean_c [-p_c log p_c - (1-p_c) log(1-p_c)]."""
        p = np.clip(np.asarray(label_freq, np.float64), 1e-12, 1 - 1e-12)
        return float(np.mean(-p * np.log(p) - (1 - p) * np.log1p(-p)))
