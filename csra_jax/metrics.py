"""Host-side evaluation metrics (numpy) for multi-label and single-label recognition.

Multi-label metrics follow the CSRA paper / official evaluation (``utils/evaluation``
in the official release) and the ML-GCN lineage it cites:

* **AP** per class is the *non-interpolated* average precision: rank the images by
  score, descending, and average the precision at the rank of every positive. No
  precision envelope (this is not the VOC-2010 "all points interpolated" AP).
* **CP/CR/CF1, OP/OR/OF1** at a probability threshold (0.5), and the same six on each
  image's top-3 predictions.
* **Ignored entries** (VOC "difficult"-only objects, WIDER "unspecified" attributes)
  are left out of *every* metric, as if the entry did not exist. The official code is
  inconsistent here (WIDER's unspecified count as negatives for CP/OP); we are not.
* **Top-k** predictions are each image's k highest scores over *all* classes, ignored
  ones included (choosing among the non-ignored ones would use the ground truth).

``protocol="official"`` reproduces the official evaluation code instead, quirks
included (float32 probabilities, numpy's unstable sort on ties, WIDER's unspecified as
negatives in CP/CR/OP/OR, CP/CR over all classes); see :mod:`csra_jax.metrics_official`.

Everything is vectorised over images (one sort per class column, all columns at once),
so COCO val (40k x 80) evaluates in well under a second.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from csra_jax import metrics_official

__all__ = [
    "average_precision",
    "multilabel_metrics",
    "single_label_metrics",
    "format_ap_table",
]

_TIES = ("threshold", "stable")
PROTOCOLS = ("default", "official")


def _as_2d_float(name: str, x: Any) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (num_images, num_classes), got {x.shape}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
    return x.astype(np.float64)


def _as_binary(name: str, x: Any, shape: tuple[int, ...], hint: str = "") -> np.ndarray:
    x = np.asarray(x)
    if x.shape != shape:
        raise ValueError(f"{name} has shape {x.shape} but scores have shape {shape}")
    if x.dtype != bool:
        if not np.issubdtype(x.dtype, np.number):
            raise ValueError(f"{name} must be numeric or bool, got dtype {x.dtype}")
        bad = ~np.isin(x, (0, 1))
        if bad.any():
            vals = np.unique(x[bad])[:5]
            raise ValueError(
                f"{name} must be binary (0/1); found values {vals.tolist()}" + hint
            )
    return x.astype(bool)


def _check_inputs(scores, targets, ignore):
    scores = _as_2d_float("scores", scores)
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    targets = _as_binary(
        "targets",
        targets,
        scores.shape,
        hint=" (encode VOC 'difficult' / WIDER 'unspecified' labels with ignore=, "
        "not with -1/0/99 in targets)",
    )
    if ignore is None:
        valid = np.ones(scores.shape, dtype=bool)
    else:
        valid = ~_as_binary("ignore", ignore, scores.shape)
    return scores, targets, valid


def average_precision(scores, targets, ignore=None, ties: str = "threshold") -> np.ndarray:
    """Per-class non-interpolated AP (fractions in [0, 1]; NaN where no positives).

    ``AP_c = (1 / P_c) * sum over positives j of precision@rank(j)``, computed on the
    non-ignored entries of column c, ranked by score descending.

    ``ties`` decides what "rank" means when scores are equal:

    * ``"threshold"`` (default): a run of tied scores is one threshold, so every
      positive in it gets the precision at the end of the run -- identical to
      ``sklearn.metrics.average_precision_score`` and independent of image order
      (which matters when the eval set is gathered from several hosts/shards).
    * ``"stable"``: ties keep input order (lower image index ranks first), i.e. the
      official code's ``argsort(-score)`` with a deterministic order (numpy's default
      sort is not stable, so the official result on ties depends on the image order
      and on numpy's sort; ``multilabel_metrics(..., protocol="official")`` uses it).

    Without ties both are identical. Rank on raw logits rather than sigmoid outputs:
    float32 sigmoid saturates to exactly 1.0 above ~17, creating ties that the logits
    do not have.
    """
    scores, targets, valid = _check_inputs(scores, targets, ignore)
    if ties not in _TIES:
        raise ValueError(f"ties must be one of {_TIES}, got {ties!r}")
    n, c = scores.shape
    if n == 0:
        return np.full(c, np.nan)
    order = np.argsort(-scores, axis=0, kind="stable")  # (N, C), descending
    s_sorted = np.take_along_axis(scores, order, axis=0)
    pos = np.take_along_axis(targets & valid, order, axis=0)
    val = np.take_along_axis(valid, order, axis=0)
    tp_cum = np.cumsum(pos, axis=0, dtype=np.float64)
    seen_cum = np.cumsum(val, axis=0, dtype=np.float64)
    if ties == "threshold":
        # Index of the last element of each tie run: next run end at or after i.
        is_end = np.ones((n, c), dtype=bool)
        is_end[:-1] = s_sorted[:-1] != s_sorted[1:]
        end_idx = np.where(is_end, np.arange(n)[:, None], n)
        end_idx = np.minimum.accumulate(end_idx[::-1], axis=0)[::-1]
        tp_cum = np.take_along_axis(tp_cum, end_idx, axis=0)
        seen_cum = np.take_along_axis(seen_cum, end_idx, axis=0)
    # seen_cum >= 1 wherever pos is True, so the guarded division is exact there.
    precision = tp_cum / np.maximum(seen_cum, 1.0)
    num_pos = pos.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(pos, precision, 0.0).sum(axis=0) / num_pos
    ap[num_pos == 0] = np.nan
    return ap


def _prf(pred, targets, valid, class_mask):
    """Per-class (CP, CR, CF1) averaged over ``class_mask`` and overall (OP, OR, OF1)."""
    pred = pred & valid
    pos = targets & valid
    tp = (pred & pos).sum(axis=0).astype(np.float64)
    n_pred = pred.sum(axis=0).astype(np.float64)
    n_pos = pos.sum(axis=0).astype(np.float64)

    def ratio(a, b):
        # Official convention: precision of a class with no predictions is 0.
        return np.where(b > 0, a / np.maximum(b, 1.0), 0.0)

    def f1(p, r):
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    if class_mask.any():
        cp = float(ratio(tp, n_pred)[class_mask].mean())
        cr = float(ratio(tp, n_pos)[class_mask].mean())
    else:
        cp = cr = math.nan
    op = float(ratio(tp.sum(), n_pred.sum()))
    orr = float(tp.sum() / n_pos.sum()) if n_pos.sum() > 0 else math.nan
    out = {"CP": cp, "CR": cr, "OP": op, "OR": orr}
    out["CF1"] = f1(cp, cr) if not math.isnan(cp) else math.nan
    out["OF1"] = f1(op, orr) if not math.isnan(orr) else math.nan
    return {k: 100.0 * v for k, v in out.items()}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Stable in float64 for large |x|.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def multilabel_metrics(
    scores,
    targets,
    ignore=None,
    threshold: float = 0.5,
    *,
    scores_are_logits: bool = True,
    top_k: int = 3,
    ties: str | None = None,
    protocol: str = "default",
) -> dict[str, Any]:
    """mAP and CP/CR/CF1/OP/OR/OF1 (all and top-k), in percent.

    Args:
      scores: (N, C) model outputs. With ``scores_are_logits=True`` (default) they are
        raw logits and thresholding uses ``sigmoid(scores) >= threshold``; with False
        they are already probabilities and ``scores >= threshold`` is used (``>=``, as
        the official code). AP and top-k only use the ranking, so they are the same
        either way.
      targets: (N, C) binary ground truth (0/1 or bool).
      ignore: optional (N, C) binary; 1 = leave this entry out of every metric.
      threshold: probability threshold for a positive prediction.
      top_k: an entry is predicted positive in the ``_top{k}`` metrics iff it is among
        the image's k highest-scoring classes (all classes: which ones are ignored is
        ground truth) **and** passes the threshold -- the official CSRA code (zero out
        scores below the top 3, then threshold at 0.5) and ML-GCN both do this. Equal
        scores at the k-th place are resolved toward the lower class index (stable
        sort); ``protocol="official"``: by numpy's default sort, as the official code.
      ties: tie handling for AP, see :func:`average_precision` (default "threshold");
        not accepted with ``protocol="official"``, which orders ties as the official
        code does.
      protocol: "default" (the rules above) or "official" (the official CSRA evaluation
        code, see :mod:`csra_jax.metrics_official`; same keys).

    Returns:
      dict with ``mAP``, ``CP``, ``CR``, ``CF1``, ``OP``, ``OR``, ``OF1``, the same six
      with suffix ``_top{k}`` (floats, percent), ``AP`` (per-class array, percent, NaN
      for classes without non-ignored positives) and ``classes_without_positives``
      (list of class indices), and ``protocol`` (which protocol produced the numbers).
      Classes without positives are left out of mAP and of the
      per-class averages CP/CR (recall is undefined for them); their false positives
      still count in OP. A class with no predicted positives has precision 0 (official
      convention). F1 values are computed from the averaged P and R, as in the paper's
      references.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "official" and ties is not None:
        raise ValueError("protocol='official' orders tied scores as the official code "
                         "(numpy's default argsort); leave ties unset")
    scores, targets, valid = _check_inputs(scores, targets, ignore)
    if not (isinstance(top_k, (int, np.integer)) and top_k >= 1):
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a probability and must be in [0, 1], got {threshold}")
    if protocol == "official":
        return _official_metrics(scores, targets, valid, threshold, scores_are_logits, top_k)
    n, c = scores.shape

    ap = average_precision(scores, targets, ~valid, ties=ties or "threshold")
    has_pos = ~np.isnan(ap)
    result: dict[str, Any] = {
        "mAP": float(100.0 * ap[has_pos].mean()) if has_pos.any() else math.nan,
    }

    probs = _sigmoid(scores) if scores_are_logits else scores
    above = probs >= threshold
    result.update(_prf(above, targets, valid, has_pos))

    k = min(top_k, c)
    top_idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    in_top = np.zeros((n, c), dtype=bool)
    np.put_along_axis(in_top, top_idx, True, axis=1)
    top = _prf(in_top & above, targets, valid, has_pos)
    result.update({f"{key}_top{top_k}": v for key, v in top.items()})

    result["AP"] = 100.0 * ap
    result["classes_without_positives"] = np.flatnonzero(~has_pos).tolist()
    result["protocol"] = "default"
    return result


def _official_metrics(scores, targets, valid, threshold, scores_are_logits, top_k):
    probs = metrics_official.float32_probabilities(scores, scores_are_logits)
    ap = metrics_official.average_precision(probs, targets, valid)
    has_pos = ~np.isnan(ap)
    result: dict[str, Any] = {
        "mAP": float(100.0 * ap[has_pos].mean()) if has_pos.any() else math.nan,
    }
    pr = metrics_official.precision_recall(probs, targets, ~valid, threshold)
    result.update({k: float(100.0 * v) for k, v in pr.items()})
    top = metrics_official.precision_recall(
        metrics_official.top_k_scores(probs, top_k), targets, ~valid, threshold)
    result.update({f"{k}_top{top_k}": float(100.0 * v) for k, v in top.items()})
    result["AP"] = 100.0 * ap
    result["classes_without_positives"] = np.flatnonzero(~has_pos).tolist()
    result["protocol"] = "official"
    return result


def single_label_metrics(logits, labels, mask=None) -> dict[str, float]:
    """Top-1 / top-5 accuracy in percent (ImageNet-style single-label rows).

    The rank of the true class counts the classes with a strictly higher score plus
    tied classes with a lower index (a stable descending sort), so ties are resolved
    deterministically, never in the model's favour by accident of order. ``mask``
    (N,) drops padded examples. With fewer than 5 classes, top-5 is trivially 100.
    """
    logits = _as_2d_float("logits", logits)
    labels = np.asarray(labels)
    n, c = logits.shape
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match logits {logits.shape}, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if n and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"labels must be in [0, {c}), got range [{labels.min()}, {labels.max()}]")
    if mask is None:
        mask = np.ones(n, dtype=bool)
    else:
        mask = np.asarray(mask)
        if mask.shape != (n,):
            raise ValueError(f"mask must have shape ({n},), got {mask.shape}")
        mask = mask.astype(bool)
    true_score = np.take_along_axis(logits, labels[:, None], axis=1)
    lower_index = np.arange(c)[None, :] < labels[:, None]
    rank = (logits > true_score).sum(1) + ((logits == true_score) & lower_index).sum(1)
    count = mask.sum()
    if count == 0:
        return {"top1": math.nan, "top5": math.nan}
    return {
        "top1": float(100.0 * ((rank < 1) & mask).sum() / count),
        "top5": float(100.0 * ((rank < 5) & mask).sum() / count),
    }


def format_ap_table(ap, class_names: Sequence[str] | None = None) -> str:
    """Per-class AP table (AP in percent, as returned by ``multilabel_metrics``).

    NaN APs (classes without positives) print as ``n/a`` and are left out of the
    mean shown on the last line.
    """
    ap = np.asarray(ap, dtype=np.float64)
    if ap.ndim != 1:
        raise ValueError(f"ap must be 1-D (one value per class), got shape {ap.shape}")
    if class_names is None:
        class_names = [str(i) for i in range(len(ap))]
    if len(class_names) != len(ap):
        raise ValueError(f"got {len(class_names)} class_names for {len(ap)} AP values")
    width = max([len("class")] + [len(str(n)) for n in class_names])
    lines = [f"{'#':>3}  {'class':<{width}}  {'AP':>6}"]
    for i, (name, v) in enumerate(zip(class_names, ap)):
        val = "n/a" if np.isnan(v) else f"{v:.2f}"
        lines.append(f"{i:>3}  {str(name):<{width}}  {val:>6}")
    ok = ~np.isnan(ap)
    mean = f"{ap[ok].mean():.2f}" if ok.any() else "n/a"
    lines.append(f"{'':>3}  {'mAP':<{width}}  {mean:>6}  ({int(ok.sum())}/{len(ap)} classes)")
    return "\n".join(lines)
