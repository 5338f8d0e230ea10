"""Evaluation outputs: VOC2012 server files, predictions file, lambda sweep, single-label."""

import os

import jax
import numpy as np

from csra_jax.metrics import multilabel_metrics
from csra_jax.train import evaluate as eval_lib
from csra_jax.train.steps import compute_loss


def _results(n=5, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return {"logits": rng.normal(size=(n, c)).astype(np.float32),
            "labels": (rng.random((n, c)) < 0.5).astype(np.int8),
            "ignore": np.zeros((n, c), np.int8), "index": np.arange(n, dtype=np.int32)}


def test_voc_comp2_files(tmp_path):
    res = _results()
    ids = {i: f"2012_00000{i}" for i in range(5)}
    where = eval_lib.write_voc_comp2(str(tmp_path), res, ids, ["aeroplane", "bicycle", "bird"])
    assert where.endswith(os.path.join("results", "VOC2012", "Main"))
    lines = open(os.path.join(where, "comp2_cls_test_bicycle.txt")).read().splitlines()
    assert len(lines) == 5
    name, score = lines[3].split()
    assert name == "2012_000003"
    assert abs(float(score) - 1 / (1 + np.exp(-res["logits"][3, 1]))) < 1e-6


def test_only_voc2012_is_written_for_an_evaluation_server():
    from csra_jax.data import DATASETS
    formats = {n: i.server_format for n, i in DATASETS.items() if i.server_format}
    assert formats == {"voc2012": "voc_comp2"}
    assert eval_lib.SERVER_WRITERS["voc_comp2"] is eval_lib.write_voc_comp2


def test_predictions_file_roundtrip(tmp_path):
    res = _results()
    path = str(tmp_path / "p.npz")
    eval_lib.save_predictions(path, res, {i: f"img{i}" for i in range(5)}, ["a", "b", "c"])
    back = np.load(path)
    np.testing.assert_array_equal(back["logits"], res["logits"])
    assert back["id"].tolist() == [f"img{i}" for i in range(5)]
    assert back["class_names"].tolist() == ["a", "b", "c"]


def test_lambda_sweep_scores_mean_plus_lam_max():
    rng = np.random.default_rng(1)
    res = {"mean": rng.normal(size=(30, 4)), "max": rng.normal(size=(30, 4)) + 1,
           "labels": (rng.random((30, 4)) < 0.4).astype(np.int8),
           "ignore": np.zeros((30, 4), np.int8)}
    sweep = eval_lib.lambda_sweep(res, [0.0, 0.5, 2.0], 0.5)
    for lam in (0.0, 0.5, 2.0):
        expected = multilabel_metrics(res["mean"] + lam * res["max"], res["labels"])["mAP"]
        assert sweep["per_lam"][lam]["mAP"] == expected
    assert sweep["baseline_mAP"] == sweep["per_lam"][0.0]["mAP"]
    assert sweep["best_mAP"] == max(m["mAP"] for m in sweep["per_lam"].values())
    assert "best lam" in eval_lib.lambda_sweep_table(sweep)


def test_single_label_loss_and_metrics():
    logits = jax.numpy.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    labels = np.array([[1, 0, 0], [0, 0, 1]], np.int8)
    loss = compute_loss("single_label", logits, {"labels": labels, "mask": np.ones(2, np.float32)})
    expected = -np.mean([jax.nn.log_softmax(logits[0])[0], jax.nn.log_softmax(logits[1])[2]])
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    m = eval_lib.score({"logits": np.asarray(logits), "labels": labels}, "single_label", 0.5)
    assert m["top1"] == 50.0 and m["top5"] == 100.0
