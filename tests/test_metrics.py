"""Tests for csra_jax.metrics: parity with scikit-learn and hand-computed cases."""

import math

import numpy as np
import pytest

from csra_jax.metrics import (
    average_precision,
    format_ap_table,
    multilabel_metrics,
    single_label_metrics,
)


def _official_ap_loop(score, target):
    """Naive reference: the official per-class loop (precision at each positive's rank)."""
    order = np.argsort(-score, kind="stable")
    hits, total = 0.0, 0.0
    for rank, i in enumerate(order, start=1):
        if target[i]:
            hits += 1
            total += hits / rank
    return total / hits


# --------------------------------------------------------------------------- AP


def test_ap_matches_sklearn_on_tie_free_random_data():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(257, 9))
    targets = rng.random((257, 9)) < 0.3
    assert len(np.unique(scores)) == scores.size  # tie-free
    for ties in ("threshold", "stable"):
        ap = average_precision(scores, targets, ties=ties)
        for c in range(9):
            assert ap[c] == pytest.approx(sk.average_precision_score(targets[:, c], scores[:, c]), abs=1e-6)
            assert ap[c] == pytest.approx(_official_ap_loop(scores[:, c], targets[:, c]), abs=1e-12)


def test_ap_threshold_ties_match_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=(300, 5)), 1)  # many ties
    targets = rng.random((300, 5)) < 0.4
    ap = average_precision(scores, targets, ties="threshold")
    expected = [sk.average_precision_score(targets[:, c], scores[:, c]) for c in range(5)]
    np.testing.assert_allclose(ap, expected, atol=1e-9)
    # Order-independent: permuting the images does not change it.
    perm = rng.permutation(300)
    np.testing.assert_allclose(average_precision(scores[perm], targets[perm]), ap, atol=1e-12)


def test_ap_with_ignore_matches_sklearn_on_kept_entries():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(200, 4))
    targets = rng.random((200, 4)) < 0.3
    ignore = rng.random((200, 4)) < 0.2
    ap = average_precision(scores, targets, ignore)
    for c in range(4):
        keep = ~ignore[:, c]
        assert ap[c] == pytest.approx(sk.average_precision_score(targets[keep, c], scores[keep, c]), abs=1e-6)


def test_ap_hand_computed_four_images():
    scores = np.array([[0.9], [0.8], [0.7], [0.6]])
    # positives at ranks 1 and 3: (1/1 + 2/3) / 2
    ap = average_precision(scores, [[1], [0], [1], [0]])
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2)
    # positives at ranks 2 and 4: (1/2 + 2/4) / 2 = 0.5
    assert average_precision(scores, [[0], [1], [0], [1]])[0] == pytest.approx(0.5)


def test_ap_ties_threshold_vs_stable():
    scores = np.array([[0.9], [0.5], [0.5], [0.1]])
    targets = np.array([[1], [1], [0], [0]])
    # stable: image 1 ranks 2nd -> precision 1 -> AP 1.
    assert average_precision(scores, targets, ties="stable")[0] == pytest.approx(1.0)
    # threshold: the tied pair is one threshold -> precision 2/3 for image 1.
    assert average_precision(scores, targets, ties="threshold")[0] == pytest.approx((1 + 2 / 3) / 2)
    # Stable with the tie in the other order puts the negative first.
    targets_swapped = np.array([[1], [0], [1], [0]])
    assert average_precision(scores, targets_swapped, ties="stable")[0] == pytest.approx((1 + 2 / 3) / 2)


def test_ap_ignored_entries_removed():
    scores = np.array([[0.9], [0.8], [0.7], [0.6]])
    targets = np.array([[0], [1], [1], [0]])
    assert average_precision(scores, targets)[0] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # Ignoring the top-scoring negative makes both positives rank 1 and 2.
    assert average_precision(scores, targets, ignore=[[1], [0], [0], [0]])[0] == pytest.approx(1.0)
    # An ignored positive is not a positive.
    assert average_precision(scores, targets, ignore=[[0], [1], [0], [0]])[0] == pytest.approx(1 / 2)


def test_class_without_positives_left_out_of_map():
    scores = np.array([[0.9, 0.1, 0.3], [0.8, 0.7, 0.2], [0.1, 0.2, 0.9]])
    targets = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1]])
    ignore = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 1]])  # class 2's positives all ignored
    m = multilabel_metrics(scores, targets, ignore, scores_are_logits=False)
    assert m["classes_without_positives"] == [1, 2]
    assert math.isnan(m["AP"][1]) and math.isnan(m["AP"][2])
    assert m["AP"][0] == pytest.approx(100.0)
    assert m["mAP"] == pytest.approx(100.0)


# --------------------------------------------------------------- P / R / F1


def _f1(p, r):
    return 2 * p * r / (p + r)


def test_prf_hand_computed():
    probs = np.array(
        [
            [0.9, 0.6, 0.2],
            [0.8, 0.3, 0.7],
            [0.4, 0.55, 0.6],
            [0.1, 0.2, 0.5],  # 0.5 is predicted positive (>=, as the official code)
        ]
    )
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 1]])
    m = multilabel_metrics(probs, targets, scores_are_logits=False, top_k=2)
    # By hand: tp = [2, 1, 2], predicted = [2, 2, 3], positives = [2, 2, 2].
    cp = (2 / 2 + 1 / 2 + 2 / 3) / 3
    cr = (2 / 2 + 1 / 2 + 2 / 2) / 3
    op, orr = 5 / 7, 5 / 6
    assert m["CP"] == pytest.approx(100 * cp)
    assert m["CR"] == pytest.approx(100 * cr)
    assert m["CF1"] == pytest.approx(100 * _f1(cp, cr))
    assert m["OP"] == pytest.approx(100 * op)
    assert m["OR"] == pytest.approx(100 * orr)
    assert m["OF1"] == pytest.approx(100 * _f1(op, orr))
    # Top-2: image 2's third class (0.4) and image 1's class 1 were not above 0.5 anyway;
    # image 2 keeps classes 2 (0.6) and 1 (0.55); image 0 keeps 0 and 1; image 1 keeps
    # 0 and 2; image 3 keeps 2 (0.5) and 1 (0.2, below threshold): same as above.
    for key in ("CP", "CR", "OP", "OR"):
        assert m[f"{key}_top2"] == pytest.approx(m[key])


def test_logits_threshold_is_sigmoid():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(50, 6)) * 3
    targets = rng.random((50, 6)) < 0.4
    a = multilabel_metrics(logits, targets)
    b = multilabel_metrics(1 / (1 + np.exp(-logits)), targets, scores_are_logits=False)
    for key in ("mAP", "CP", "CR", "OP", "OR", "OF1_top3"):
        assert a[key] == pytest.approx(b[key])


def test_top3_needs_rank_and_threshold():
    probs = np.array(
        [
            [0.9, 0.8, 0.3, 0.7, 0.6],  # top-3: 0, 1, 3; class 4 (0.6) is not in the top 3
            [0.9, 0.2, 0.1, 0.05, 0.3],  # top-3: 0, 4, 1; only class 0 passes 0.5
        ]
    )
    targets = np.array([[1, 0, 0, 1, 1], [1, 1, 0, 0, 0]])
    m = multilabel_metrics(probs, targets, scores_are_logits=False)
    # Predicted: {0, 1, 3} and {0}; true positives {0, 3} and {0}; positives 3 + 2.
    assert m["OP_top3"] == pytest.approx(100 * 3 / 4)
    assert m["OR_top3"] == pytest.approx(100 * 3 / 5)
    # Per class (class 2 has no positives and is left out): P = [1, 0, 1, 0], R = [1, 0, 1, 0].
    assert m["classes_without_positives"] == [2]
    assert m["CP_top3"] == pytest.approx(50.0)
    assert m["CR_top3"] == pytest.approx(50.0)
    assert m["CF1_top3"] == pytest.approx(50.0)
    # Without the top-3 restriction class 4 of image 0 is predicted too.
    assert m["OP"] == pytest.approx(100 * 4 / 5)
    assert m["OR"] == pytest.approx(100 * 4 / 5)


def test_top3_is_chosen_without_ground_truth():
    """An ignored class still takes its top-3 slot: which classes are ignored is ground
    truth, and choosing the predictions by it would favour the model. The ignored entry
    itself is then not counted."""
    probs = np.array([[0.99, 0.9, 0.8, 0.7]])
    targets = np.array([[0, 1, 1, 1]])
    plain = multilabel_metrics(probs, targets, scores_are_logits=False)
    assert plain["OP_top3"] == pytest.approx(100 * 2 / 3)
    assert plain["OR_top3"] == pytest.approx(100 * 2 / 3)
    for protocol in ("default", "official"):
        ignored = multilabel_metrics(probs, targets, ignore=[[1, 0, 0, 0]],
                                     scores_are_logits=False, protocol=protocol)
        assert ignored["OR_top3"] == pytest.approx(100 * 2 / 3), protocol  # class 3 left out
        # default: the ignored false positive is not counted; official: it is (WIDER
        # rule), and class 3, without a prediction, adds 1 to the denominator: 2 / 4.
        expected_op = 100.0 if protocol == "default" else 100 * 2 / 4
        assert ignored["OP_top3"] == pytest.approx(expected_op), protocol
    assert multilabel_metrics(probs, targets, ignore=[[1, 0, 0, 0]],
                              scores_are_logits=False)["OP"] == pytest.approx(100.0)


def test_ignored_entries_do_not_affect_any_metric():
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(80, 7))
    targets = rng.random((80, 7)) < 0.3
    ignore = rng.random((80, 7)) < 0.25
    results = []
    for seed in (10, 11):
        r = np.random.default_rng(seed)
        s, t = scores.copy(), targets.copy()
        s[ignore] = r.normal(size=ignore.sum()) * 5
        t[ignore] = r.random(ignore.sum()) < 0.5
        results.append(multilabel_metrics(s, t, ignore))
    a, b = results
    for key, value in a.items():
        if key.endswith("_top3"):
            continue  # an ignored entry's score may move another class out of the top 3
        if key == "AP":
            np.testing.assert_allclose(value, b[key])
        else:
            assert value == pytest.approx(b[key], nan_ok=True), key


def test_top3_metrics_do_not_depend_on_ignored_labels_or_which_entries_are_ignored():
    rng = np.random.default_rng(8)
    scores = rng.normal(size=(60, 6))
    targets = rng.random((60, 6)) < 0.3
    ignore = rng.random((60, 6)) < 0.25
    base = multilabel_metrics(scores, targets, ignore)
    flipped = targets.copy()
    flipped[ignore] = ~flipped[ignore]
    assert multilabel_metrics(scores, flipped, ignore)["OP_top3"] == base["OP_top3"]
    # On today's main the top 3 were taken among non-ignored classes: ignoring an entry
    # that is outside the top 3 changed nothing, one inside it freed a slot.
    top1 = np.argmax(scores, axis=1)
    more = ignore.copy()
    more[np.arange(60), top1] = True
    selected = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    in_top = np.zeros_like(targets)
    np.put_along_axis(in_top, selected, True, axis=1)
    pred = in_top & (scores >= 0) & ~more
    expected = 100 * (pred & targets).sum() / pred.sum()
    assert multilabel_metrics(scores, targets, more)["OP_top3"] == pytest.approx(expected)


def test_no_prediction_class_has_zero_precision():
    probs = np.array([[0.9, 0.1], [0.2, 0.3]])
    targets = np.array([[1, 0], [0, 1]])
    m = multilabel_metrics(probs, targets, scores_are_logits=False)
    assert m["CP"] == pytest.approx(50.0)  # class 1: nothing predicted -> precision 0
    assert m["CR"] == pytest.approx(50.0)
    assert m["OP"] == pytest.approx(100.0)


def test_keys_and_units():
    rng = np.random.default_rng(5)
    m = multilabel_metrics(rng.normal(size=(20, 4)), rng.random((20, 4)) < 0.5)
    base = ["mAP", "CP", "CR", "CF1", "OP", "OR", "OF1"]
    for key in base + [k + "_top3" for k in base[1:]]:
        assert isinstance(m[key], float) and 0.0 <= m[key] <= 100.0, key
    assert m["AP"].shape == (4,)
    assert m["mAP"] == pytest.approx(np.nanmean(m["AP"]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(scores=np.zeros((3, 2)), targets=np.zeros((3, 3))), "targets has shape"),
        (dict(scores=np.zeros((3, 2)), targets=np.array([[0, 1], [-1, 0], [1, 1]])), "targets must be binary"),
        (dict(scores=np.zeros((3, 2)), targets=np.zeros((3, 2)), ignore=np.zeros((2, 2))), "ignore has shape"),
        (dict(scores=np.zeros(3), targets=np.zeros(3)), "scores must have shape"),
        (dict(scores=np.full((2, 2), np.nan), targets=np.zeros((2, 2))), "NaN"),
        (dict(scores=np.zeros((2, 2)), targets=np.zeros((2, 2)), ties="random"), "ties must be"),
        (dict(scores=np.zeros((2, 2)), targets=np.zeros((2, 2)), threshold=2.0), "threshold"),
    ],
)
def test_bad_input_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        multilabel_metrics(**kwargs)


# --------------------------------------------------------------- single-label


def test_single_label_top1_top5():
    logits = np.array(
        [
            [5.0, 1, 2, 3, 4, 0, -1],  # label 0: rank 0
            [0.0, 1, 2, 3, 4, 5, 6],  # label 2: rank 4 (6, 5, 4, 3 above)
            [0.0, 1, 2, 3, 4, 5, 6],  # label 1: rank 5
            [1.0, 1, 1, 1, 1, 1, 1],  # label 3, all tied: rank 3 (stable order)
        ]
    )
    labels = np.array([0, 2, 1, 3])
    m = single_label_metrics(logits, labels)
    assert m["top1"] == pytest.approx(25.0)
    assert m["top5"] == pytest.approx(75.0)
    masked = single_label_metrics(logits, labels, mask=[1, 1, 0, 0])
    assert masked["top1"] == pytest.approx(50.0) and masked["top5"] == pytest.approx(100.0)


def test_single_label_matches_argsort_reference():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(300, 20))
    labels = rng.integers(0, 20, size=300)
    order = np.argsort(-logits, axis=1, kind="stable")
    rank = np.argmax(order == labels[:, None], axis=1)
    m = single_label_metrics(logits, labels)
    assert m["top1"] == pytest.approx(100 * np.mean(rank < 1))
    assert m["top5"] == pytest.approx(100 * np.mean(rank < 5))


def test_single_label_bad_labels():
    with pytest.raises(ValueError, match="labels must be in"):
        single_label_metrics(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="labels must have shape"):
        single_label_metrics(np.zeros((2, 3)), np.array([0, 1, 2]))


# ------------------------------------------------------------------- table


def test_format_ap_table():
    table = format_ap_table(np.array([90.0, np.nan, 70.0]), ["cat", "dog", "person"])
    lines = table.splitlines()
    assert "cat" in lines[1] and "90.00" in lines[1]
    assert "n/a" in lines[2]
    assert "80.00" in lines[-1] and "2/3" in lines[-1]
    with pytest.raises(ValueError, match="class_names"):
        format_ap_table(np.zeros(3), ["a"])
