"""Reference for ``protocol="official"``: the official CSRA evaluation code
(``utils/evaluation/cal_mAP.py`` ``json_map`` and ``utils/evaluation/cal_PR.py``
``metric`` / ``json_metric`` / ``json_metric_top3`` of the official release),
transcribed operation for operation in plain loops: the same target codes, the same
``np.argsort(-x)`` calls on the same float64 arrays, the same Python accumulation
order, the same zero-division guards. Nothing from csra_jax is used here.

Inputs are the official ones: ``pred`` a list of per-image score lists (Python floats,
as ``torch.sigmoid(logit).numpy().tolist()``), ``ann`` per-image target lists in the
official codes -- ``voc07``: 1 positive, -1 negative, 0 difficult; ``wider``: 1, 0,
99 unspecified; ``coco``: 1, 0. Outputs are fractions, as the official code prints.
"""

import numpy as np


def class_ap(cls, pred, ann, types):
    """json_map: AP of one class."""
    n = len(ann)
    p = np.zeros(n, dtype=np.float64)
    t = np.zeros(n, dtype=np.float64)
    for i in range(n):
        p[i] = pred[i][cls]
        t[i] = ann[i][cls]
    if types == "wider":
        keep = np.where(t != 99)[0]
        p, t, n = p[keep], t[keep], len(keep)
    if types == "voc07":
        keep = np.where(t != 0)[0]
        p, t, n = p[keep], t[keep], len(keep)
        t[np.where(t == -1)[0]] = 0
    order = np.argsort(-p)
    t, p = t[order], p[order]
    total, hits = 0, 0
    for i in range(n):
        if t[i] == 1:
            hits += 1.0
            total += hits / (i + 1)
    total /= hits  # ZeroDivisionError for a class without positives, as the original
    return total


def pr_metrics(scores, targets, types):
    """metric: (OP, OR, OF1, CP, CR, CF1) from (N, C) float64 scores and targets."""
    num, num_class = scores.shape
    gt = np.zeros(num_class)
    tp = np.zeros(num_class)
    npred = np.zeros(num_class)
    for c in range(num_class):
        s = scores[:, c]
        t = targets[:, c]
        if types == "wider":
            t[np.where(t == 99)[0]] = 0  # in place, as the original (a column view)
        if types == "voc07":
            keep = np.where(t != 0)[0]
            s, t = s[keep], t[keep]
            t[np.where(t == -1)[0]] = 0
        gt[c] = np.sum(t == 1)
        npred[c] = np.sum(s >= 0.5)
        tp[c] = np.sum(t * (s >= 0.5))
    npred[npred == 0] = 1
    OP = np.sum(tp) / np.sum(npred)
    OR = np.sum(tp) / np.sum(gt)
    OF1 = (2 * OP * OR) / (OP + OR)
    CP = np.sum(tp / npred) / num_class
    CR = np.sum(tp / gt) / num_class
    CF1 = (2 * CP * CR) / (CP + CR)
    return OP, OR, OF1, CP, CR, CF1


def all_metrics(pred, ann, num_classes, types):
    """json_metric."""
    scores = np.zeros((len(pred), num_classes))
    targets = np.zeros((len(ann), num_classes))
    for i in range(len(pred)):
        scores[i] = pred[i]
        targets[i] = ann[i]
    return pr_metrics(scores, targets, types)


def top3_metrics(pred, ann, num_classes, types):
    """json_metric_top3: scores after each image's first 3 of argsort(-s) set to 0."""
    scores = np.zeros((len(pred), num_classes))
    targets = np.zeros((len(ann), num_classes))
    for i in range(len(pred)):
        s = np.array(pred[i])
        s[np.argsort(-s)[3:]] = 0.0
        scores[i] = s
        targets[i] = ann[i]
    return pr_metrics(scores, targets, types)
