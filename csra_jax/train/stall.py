"""Training stall detector: warns once when the loss sits at the label-prior entropy.

A multi-label model that predicts every class's training frequency p_c, whatever the
image, has BCE loss H = mean_c [-p_c log p_c - (1 - p_c) log(1 - p_c)] (the label-prior
entropy; for single-label, the entropy of the class distribution). A loss that stays
within ``margin`` (relative) of H after ``check_steps`` steps means the network has
collapsed to the prior and learned nothing from the images. The frequencies come from
the labels of the batches seen at logging steps, read in the same host transfer as the
logged loss, so the detector adds no round trip.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np

from csra_jax.tasks import Task, get_task

# Config fields a stalled from-scratch run should try, with why.
ADVICE = (
    "likely causes: the learning rate is too low or too high for this network "
    "(optim.lr_backbone, optim.lr_head; 0 trains nothing), too short a warm-up "
    "(optim.warmup_epochs), SGD on a small net from scratch (optim.name='adamw' with "
    "lr ~1e-3 leaves the prior sooner), too few images seen for the data (num_epochs: what "
    "counts is images seen, repeats included, so a small dataset needs more epochs; a smaller "
    "batch_size does not make up for it), a head whose logits "
    "start far from the label prior, or labels that do not match the images "
    "(check the dataset's annotation files). Set stall_check_steps=0 to silence this.")


def prior_entropy(label_freq: np.ndarray, task: Union[str, Task] = "multi_label") -> float:
    """Loss of predicting the label prior, in nats: the task's ``prior_entropy`` (mean
    binary entropy over classes for multi-label, the class distribution's entropy for
    single-label)."""
    return get_task(task).prior_entropy(label_freq)


class StallDetector:
    """Feed it ``observe(step, task_loss, labels, valid)`` at logging steps; it returns the
    warning text once, at the first observation at or after ``check_steps`` whose recent
    losses (the last ``window`` observations) average within ``margin`` of the prior
    entropy (or above it), and None otherwise."""

    def __init__(self, check_steps: int, margin: float,
                 task: Union[str, Task] = "multi_label", window: int = 5):
        self.check_steps = int(check_steps)
        self.margin = float(margin)
        self.task = get_task(task)
        self.window = window
        self.fired = False
        self._done = self.check_steps <= 0
        self._label_sum: Optional[np.ndarray] = None
        self._count: Optional[np.ndarray] = None
        self._losses: list[float] = []
        self.last: dict = {}

    @classmethod
    def from_config(cls, config) -> "StallDetector":
        return cls(config.stall_check_steps, config.stall_margin, config.task)

    def observe_batch(self, step: int, scalars: dict, batch: dict) -> Optional[str]:
        """The loop's hook at logging steps: ``scalars`` as logged (loss includes the
        auxiliary loss, which is taken out), ``batch`` the step's input; reads only this
        process's rows of the labels (already on the host side of the step)."""
        if self._done:
            return None
        local = lambda a: np.concatenate([np.asarray(s.data) for s in a.addressable_shards]) \
            if hasattr(a, "addressable_shards") else np.asarray(a)
        labels = local(batch["labels"])
        valid = np.ones(labels.shape, np.float64)
        if "ignore" in batch:
            valid = valid * (1.0 - (local(batch["ignore"]) != 0))
        if "mask" in batch:
            valid = valid * (local(batch["mask"]) != 0).reshape(-1, 1)
        loss = scalars["loss"] - scalars.get("aux_loss", 0.0)
        return self.observe(step, loss, labels, valid)

    def observe(self, step: int, loss: float, labels: np.ndarray,
                valid: Optional[np.ndarray] = None) -> Optional[str]:
        """labels (B, C) 0/1 (or soft); valid (B, C) or (B,) 1 = counts (ignore/padding 0)."""
        if self._done:
            return None
        y = np.asarray(labels, np.float64).reshape(-1, np.shape(labels)[-1])
        w = np.ones_like(y) if valid is None else np.broadcast_to(
            np.asarray(valid, np.float64).reshape(y.shape[0], -1), y.shape)
        s, n = (y * w).sum(0), w.sum(0)
        self._label_sum = s if self._label_sum is None else self._label_sum + s
        self._count = n if self._count is None else self._count + n
        self._losses = (self._losses + [float(loss)])[-self.window:]
        if step < self.check_steps:
            return None
        self._done = True  # one verdict per run
        seen = self._count > 0
        if not seen.any() or not np.isfinite(self._losses).all():
            return None
        h = self.task.prior_entropy(self._label_sum[seen] / self._count[seen])
        recent = float(np.mean(self._losses))
        self.last = {"stall_loss": recent, "stall_prior_entropy": h}
        if recent < (1.0 - self.margin) * h:
            return None
        self.fired = True
        return (f"warning: training has stalled: after {step} steps the loss ({recent:.4f}, "
                f"mean of the last {len(self._losses)} logged) is not {100 * self.margin:g}% below "
                f"the label-prior entropy ({h:.4f}), the loss of "
                "predicting each class's training frequency for every image; the model has "
                f"not started learning from the images. {ADVICE}")
