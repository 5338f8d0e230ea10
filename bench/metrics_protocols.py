"""How far the default metrics protocol is from the official one on the same predictions.

    python bench/metrics_protocols.py

Three synthetic prediction sets (seeded, seconds on a CPU):

* ``tied``: COCO-sized (5000 x 80) probabilities stored at two decimals, so many
  images share a score: AP with ``ties="threshold"`` / ``"stable"`` vs the official
  ordering (numpy's default sort of -p).
* ``confident``: logits of a confident model; float32 sigmoid is exactly 1.0 above
  ~17, so the official code (which ranks probabilities) sees ties the logits lack.
* ``wider``: 14 attributes with 25% "unspecified" entries that the model scores like
  negatives: CP/OP/CF1/OF1 with them left out (default) vs counted as negatives
  (official).
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from csra_jax.metrics import multilabel_metrics  # noqa: E402


def _logits(rng, labels, pos_mean, neg_mean, std):
    return np.where(labels, rng.normal(pos_mean, std, labels.shape),
                    rng.normal(neg_mean, std, labels.shape)).astype(np.float32)


def main():
    rng = np.random.default_rng(0)
    labels = rng.random((5000, 80)) < 0.05
    probs = 1 / (1 + np.exp(-_logits(rng, labels, 1.0, -2.0, 1.5).astype(np.float64)))
    tied = np.round(probs, 2)
    official = multilabel_metrics(tied, labels, scores_are_logits=False, protocol="official")
    print("tied (5000 x 80, probabilities at 2 decimals): mAP")
    for ties in ("threshold", "stable"):
        m = multilabel_metrics(tied, labels, scores_are_logits=False, ties=ties)
        print(f"  default ties={ties:<9} {m['mAP']:.3f}  "
              f"(official {official['mAP']:.3f}, diff {m['mAP'] - official['mAP']:+.3f})")

    logits = _logits(rng, labels, 8.0, -4.0, 6.0)
    default = multilabel_metrics(logits, labels)
    official = multilabel_metrics(logits, labels, protocol="official")
    saturated = (1 / (1 + np.exp(-logits)) == 1.0).mean()
    print(f"confident (5000 x 80, {100 * saturated:.1f}% of float32 probabilities == 1.0): "
          f"mAP default {default['mAP']:.3f}, official {official['mAP']:.3f}")

    labels = rng.random((5000, 14)) < 0.3
    unspecified = (rng.random((5000, 14)) < 0.25) & ~labels
    logits = _logits(rng, labels, 1.5, -1.5, 1.5)
    logits[unspecified] = rng.normal(0.0, 1.5, unspecified.sum())
    default = multilabel_metrics(logits, labels, unspecified)
    official = multilabel_metrics(logits, labels, unspecified, protocol="official")
    print("wider (5000 x 14, 25% unspecified): default vs official")
    for key in ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1", "OF1_top3"):
        print(f"  {key:<8} {default[key]:6.2f} {official[key]:6.2f}  "
              f"({default[key] - official[key]:+.2f})")


if __name__ == "__main__":
    main()
