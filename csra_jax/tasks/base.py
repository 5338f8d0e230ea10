"""What a task is: the loss, the metrics, the rating that picks ``best/``, and what the
model's outputs mean. The trainer and the evaluator ask a ``Task`` and know no task."""

from __future__ import annotations

from typing import List, Mapping, Optional

# Runs saved before single-label top-1 had its own key stored every task's rating
# (best/'s orbax metrics, checkpoints/' meta) under this key.
LEGACY_RATING_KEY = "mAP"


class Task:
    """One recognition task. Subclasses set the class attributes and the four methods.

    Attributes:
      name: the config's ``task`` value.
      best_key: the metric (higher is better) that picks the checkpoint kept in ``best/``.
      activation: what turns the logits into class probabilities, "sigmoid" (each class
        on its own) or "softmax" (one class per image).
      aggregate: how a head with several branches (attend-and-rectify) mixes them:
        "logits" (weighted logits) or "log_softmax" (the log of a mixture of softmaxes).
    """

    name: str = ""
    best_key: str = ""
    activation: str = ""
    aggregate: str = ""

    def loss(self, outputs, batch: Mapping, log_probs: bool = False):
        """Scalar training loss of the model's ``outputs`` on ``batch`` (``labels``
        multi-hot, optional ``ignore`` and ``mask``); ``log_probs``: the outputs are
        log-probabilities already (attend-and-rectify's single-label output)."""
        raise NotImplementedError

    def metrics(self, logits, labels, ignore=None, *, threshold: float = 0.5,
                protocol: str = "default") -> dict:
        """Host-side metrics (percent) of scores (N, C) against multi-hot labels (N, C)."""
        raise NotImplementedError

    def summary_line(self, m: Mapping) -> str:
        """One log line of ``metrics``' result."""
        raise NotImplementedError

    def prior_entropy(self, label_freq) -> float:
        """The loss (nats) of predicting the label prior ``label_freq`` (C,) for every
        image: what a model that learned nothing from the images reaches."""
        raise NotImplementedError

    def per_class_table(self, m: Mapping, class_names) -> Optional[str]:
        """A per-class table of ``metrics``' result (saved beside the predictions and
        printed, titled ``per_class_title``), or None when the task has none."""
        return None

    per_class_title = ""

    def notes(self, m: Mapping) -> List[str]:
        """Lines a reader of ``metrics``' result should see (printed as ``note: ...``)."""
        return []

    def rating(self, stored: Mapping, prefix: str = "") -> Optional[float]:
        """``stored[prefix + best_key]`` (the old ``prefix + "mAP"`` key in runs saved
        before it had its own name), or None when neither is there."""
        for key in (prefix + self.best_key, prefix + LEGACY_RATING_KEY):
            if key in stored and stored[key] is not None:
                return float(stored[key])
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
