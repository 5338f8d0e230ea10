"""``protocol="official"`` of :func:`csra_jax.metrics.multilabel_metrics`: the official
CSRA evaluation (``utils/evaluation`` of the official release: ``cal_mAP.json_map``,
``cal_PR.metric`` and ``cal_PR.json_metric_top3``), operation for operation.

Where it differs from the default protocol:

* It ranks and thresholds **float32 probabilities** (the official code stores
  ``sigmoid(logits)`` of a float32 model): sigmoid saturates to exactly 1.0 above a
  logit of ~17, so confident images tie.
* Tied scores are ordered by ``np.argsort(-p)`` with numpy's default (unstable) sort,
  per class on the class' kept entries (AP) and per image over all classes (top-3).
* Ignored entries follow the official target codes, told apart by our labels:
  ``ignore & label 1`` (VOC07 "difficult"-only, official target 0) is left out of
  every metric; ``ignore & label 0`` (WIDER "unspecified", official target 99) is
  left out of AP but counts as a **negative** in CP/CR/OP/OR.
* CP = sum over *all* classes of tp / max(n_pred, 1), divided by the class count;
  CR = mean over all classes of tp / n_gt (NaN when a class has no positive: the
  official 0 / 0); OP = sum tp / sum max(n_pred, 1), so every class without a
  prediction adds 1 to OP's denominator.

A class without positives gets AP NaN and is left out of mAP (the official loop divides
by zero there and stops). Values are returned in percent (the official code prints
fractions).
"""

from __future__ import annotations

import numpy as np


def float32_probabilities(scores: np.ndarray, scores_are_logits: bool) -> np.ndarray:
    """The official code's scores: float32 ``sigmoid(logits)`` (as float64, exactly)."""
    x = np.asarray(scores, np.float32)
    if scores_are_logits:
        one = np.float32(1.0)
        with np.errstate(over="ignore"):
            x = one / (one + np.exp(-x))
    return x.astype(np.float64)


def average_precision(probs: np.ndarray, targets: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-class AP (fractions; NaN without positives) as ``json_map``: the kept entries
    sorted by ``np.argsort(-p)``, precision summed in rank order."""
    ap = np.full(probs.shape[1], np.nan)
    for c in range(probs.shape[1]):
        keep = valid[:, c]
        predict, target = probs[keep, c], targets[keep, c]
        target = target[np.argsort(-predict)]
        if not target.any():
            continue
        obj = np.cumsum(target, dtype=np.float64)
        rank = np.flatnonzero(target) + 1
        # cumsum adds left to right, as the official ``pre += obj / (i + 1)`` loop does.
        ap[c] = np.cumsum(obj[target] / rank)[-1] / obj[-1]
    return ap


def top_k_scores(probs: np.ndarray, k: int) -> np.ndarray:
    """``json_metric_top3``: per image, scores after the first k of ``np.argsort(-p)``
    (over all classes) are set to 0."""
    out = probs.copy()
    for row in out:
        row[np.argsort(-row)[k:]] = 0.0
    return out


def precision_recall(probs: np.ndarray, targets: np.ndarray, ignore: np.ndarray,
                     threshold: float) -> dict:
    """``cal_PR.metric``: CP, CR, CF1, OP, OR, OF1 (fractions)."""
    kept = ~(ignore & targets)          # official target 0 (VOC difficult): dropped
    target = targets & ~ignore          # official target 99 (WIDER unspecified): negative
    pred = (probs >= threshold) & kept
    num_class = probs.shape[1]
    gt_num = (target & kept).sum(axis=0).astype(np.float64)
    tp_num = (target & pred).sum(axis=0).astype(np.float64)
    predict_num = pred.sum(axis=0).astype(np.float64)
    predict_num[predict_num == 0] = 1
    with np.errstate(invalid="ignore", divide="ignore"):
        op = np.sum(tp_num) / np.sum(predict_num)
        orr = np.sum(tp_num) / np.sum(gt_num)
        of1 = (2 * op * orr) / (op + orr)
        cp = np.sum(tp_num / predict_num) / num_class
        cr = np.sum(tp_num / gt_num) / num_class
        cf1 = (2 * cp * cr) / (cp + cr)
    return {"CP": cp, "CR": cr, "CF1": cf1, "OP": op, "OR": orr, "OF1": of1}
