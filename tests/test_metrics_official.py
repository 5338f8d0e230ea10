"""``protocol="official"`` vs a transcription of the official CSRA evaluation code
(tests/official_csra_eval.py), fed the official way: torch float32 sigmoid scores as
Python floats and the official target codes."""

import numpy as np
import pytest
import torch

import official_csra_eval as official
from csra_jax.metrics import multilabel_metrics

KEYS = ("OP", "OR", "OF1", "CP", "CR", "CF1")


def _logits(rng, n, c):
    """float32 logits with many ties: values on a 0.5 grid in [-6, 6] (identical logits
    give identical probabilities however sigmoid rounds) and saturated ones (20, 30:
    float32 sigmoid is exactly 1.0 there, the ties the official code ranks)."""
    x = np.round(rng.normal(0, 2.5, (n, c)).clip(-6, 6) * 2) / 2
    sat = rng.random((n, c)) < 0.15
    x[sat] = rng.choice([20.0, 30.0], sat.sum())
    return x.astype(np.float32)


def _dataset(kind, rng, n, c):
    labels = rng.random((n, c)) < 0.3
    labels[:3] = True  # every class has positives (the official AP divides by their count)
    ignore = np.zeros((n, c), bool)
    if kind == "voc07":    # difficult-only: positive-but-ignored, official target 0
        ignore = (rng.random((n, c)) < 0.1) & labels
        ignore[:3] = False
        codes = np.where(ignore, 0, np.where(labels, 1, -1))
    elif kind == "wider":  # unspecified: labels 0, ignored, official target 99
        ignore = (rng.random((n, c)) < 0.25) & ~labels
        codes = np.where(ignore, 99, labels.astype(int))
    else:
        codes = labels.astype(int)
    return labels, ignore, codes


def _reference(probs, codes, kind):
    pred, ann = probs.tolist(), codes.tolist()
    c = codes.shape[1]
    ap = np.array([official.class_ap(i, pred, ann, kind) for i in range(c)])
    return (ap, dict(zip(KEYS, official.all_metrics(pred, ann, c, kind))),
            dict(zip(KEYS, official.top3_metrics(pred, ann, c, kind))))


@pytest.mark.parametrize("kind, n, c, seed", [
    ("voc07", 300, 20, 0), ("wider", 400, 14, 1), ("coco", 200, 80, 2), ("wider", 50, 14, 3)])
def test_official_protocol_equals_the_official_code(kind, n, c, seed):
    rng = np.random.default_rng(seed)
    logits = _logits(rng, n, c)
    labels, ignore, codes = _dataset(kind, rng, n, c)
    probs = torch.sigmoid(torch.from_numpy(logits)).numpy()  # what the official code stores
    ap, pr, top = _reference(probs, codes, kind)
    for scores, are_logits in ((probs, False), (logits, True)):
        m = multilabel_metrics(scores, labels, ignore, scores_are_logits=are_logits,
                               protocol="official")
        np.testing.assert_allclose(m["AP"], 100 * ap, rtol=1e-13, atol=0)
        assert m["mAP"] == pytest.approx(100 * ap.mean(), rel=1e-13)
        for key in KEYS:
            assert m[key] == pytest.approx(100 * pr[key], rel=1e-13, nan_ok=True), key
            assert m[f"{key}_top3"] == pytest.approx(100 * top[key], rel=1e-13,
                                                     nan_ok=True), key


def test_official_ordering_of_ties_is_numpys_default_sort():
    """Tied scores in an order where numpy's default (unstable) argsort and a stable one
    rank the positives differently: official follows numpy's, as the official code."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        probs = np.where(rng.random((200, 1)) < 0.5, 1.0, 0.25)  # two big tie groups
        labels = rng.random((200, 1)) < 0.5
        codes = labels.astype(int)
        ref = official.class_ap(0, probs.tolist(), codes.tolist(), "coco")
        stable = multilabel_metrics(probs, labels, scores_are_logits=False, ties="stable")
        if abs(stable["AP"][0] - 100 * ref) > 1e-9:
            break
    else:
        pytest.skip("numpy's default argsort happened to order these ties stably")
    m = multilabel_metrics(probs, labels, scores_are_logits=False, protocol="official")
    assert m["AP"][0] == pytest.approx(100 * ref, rel=1e-13)


def test_wider_unspecified_are_negatives_in_official_pr_only():
    probs = np.array([[0.9, 0.8], [0.9, 0.2], [0.1, 0.7]], np.float32)
    labels = np.array([[1, 1], [0, 0], [0, 1]])
    ignore = np.array([[0, 0], [1, 0], [0, 0]])  # image 1, class 0: unspecified
    default = multilabel_metrics(probs, labels, ignore, scores_are_logits=False)
    off = multilabel_metrics(probs, labels, ignore, scores_are_logits=False,
                             protocol="official")
    assert default["OP"] == pytest.approx(100.0)
    assert off["OP"] == pytest.approx(100 * 3 / 4)  # the unspecified 0.9 is a false positive
    assert off["mAP"] == default["mAP"] == pytest.approx(100.0)  # AP leaves it out in both
    # The same entry as VOC-difficult (label 1, ignored) is left out of every metric.
    voc = multilabel_metrics(probs, np.array([[1, 1], [1, 0], [0, 1]]), ignore,
                             scores_are_logits=False, protocol="official")
    assert voc["OP"] == pytest.approx(100.0)


def test_official_cp_cr_average_over_all_classes():
    probs = np.array([[0.9, 0.1, 0.2], [0.2, 0.3, 0.1]], np.float32)
    labels = np.array([[1, 0, 0], [0, 1, 0]])  # class 2: no positive
    off = multilabel_metrics(probs, labels, scores_are_logits=False, protocol="official")
    assert off["CP"] == pytest.approx(100 / 3)           # tp / max(n_pred, 1) over 3 classes
    assert off["OP"] == pytest.approx(100 * 1 / 3)       # 1 tp / (1 + 1 + 1)
    assert np.isnan(off["CR"]) and np.isnan(off["CF1"])  # the official 0 / 0
    assert np.isnan(off["AP"][2]) and off["classes_without_positives"] == [2]
    assert off["mAP"] == pytest.approx(np.nanmean(off["AP"]))
    with pytest.raises(ZeroDivisionError):  # where the official code stops
        official.class_ap(2, probs.tolist(), labels.tolist(), "coco")


def test_official_thresholds_float32_probabilities():
    """A logit whose float64 sigmoid is just below 0.5 but rounds to 0.5 in float32."""
    x = np.float32(-1e-8)
    assert 1 / (1 + np.exp(-np.float64(x))) < 0.5
    assert torch.sigmoid(torch.tensor([x])).item() == 0.5
    labels = np.array([[1], [0]])
    logits = np.array([[x], [-5.0]], np.float32)
    assert multilabel_metrics(logits, labels)["OP"] == 0.0                  # float64
    assert multilabel_metrics(logits, labels, protocol="official")["OP"] == 100.0


def test_official_protocol_rejects_ties_and_unknown_protocols():
    s, t = np.zeros((3, 2)), np.ones((3, 2))
    with pytest.raises(ValueError, match="leave ties unset"):
        multilabel_metrics(s, t, protocol="official", ties="stable")
    with pytest.raises(ValueError, match="protocol must be one of"):
        multilabel_metrics(s, t, protocol="offical")
