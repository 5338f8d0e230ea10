"""Task objects: each owns its loss (equal to torch's), its metrics (those of
csra_jax.metrics), the key that picks best/, and reads ratings stored under the old key."""

import json
import math

import jax
import numpy as np
import pytest

from csra_jax import metrics as metrics_lib
from csra_jax.tasks import TASKS, MultiLabel, get_task
from csra_jax.train import evaluate as eval_lib
from config_fixtures import tiny_config

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _data(seed=0, n=12, c=5):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(n, c)) * 3).astype(np.float32)
    multi_hot = (rng.random((n, c)) < 0.4).astype(np.int8)
    cls = rng.integers(0, c, n)
    one_hot = np.eye(c, dtype=np.int8)[cls]
    ignore = (rng.random((n, c)) < 0.2).astype(np.int8)
    mask = (np.arange(n) < n - 3).astype(np.float32)  # the last 3 rows are padding
    return logits, multi_hot, one_hot, cls, ignore, mask


def test_registry_names_and_what_each_task_means():
    assert set(TASKS) == {"multi_label", "single_label"}
    assert isinstance(get_task("multi_label"), MultiLabel) and get_task(TASKS["single_label"]) \
        is TASKS["single_label"]
    m, s = get_task("multi_label"), get_task("single_label")
    assert (m.best_key, m.activation, m.aggregate) == ("mAP", "sigmoid", "logits")
    assert (s.best_key, s.activation, s.aggregate) == ("top1", "softmax", "log_softmax")
    with pytest.raises(ValueError, match="unknown task 'multilabel'; valid: multi_label, single_label"):
        get_task("multilabel")


def test_multi_label_loss_is_torch_bce_over_kept_entries():
    logits, labels, _, _, ignore, mask = _data()
    task = get_task("multi_label")
    plain = task.loss(logits, {"labels": labels})
    ref = F.binary_cross_entropy_with_logits(torch.tensor(logits), torch.tensor(labels).float())
    np.testing.assert_allclose(float(plain), ref.item(), rtol=1e-6)
    per = F.binary_cross_entropy_with_logits(torch.tensor(logits), torch.tensor(labels).float(),
                                             reduction="none").numpy()
    keep = (ignore == 0) & (mask[:, None] > 0)
    got = task.loss(logits, {"labels": labels, "ignore": ignore, "mask": mask})
    np.testing.assert_allclose(float(got), per[keep].mean(), rtol=1e-6)


def test_single_label_loss_is_torch_cross_entropy_or_nll():
    logits, _, one_hot, cls, _, mask = _data(1)
    task = get_task("single_label")
    n = int(mask.sum())
    ref = F.cross_entropy(torch.tensor(logits[:n]), torch.tensor(cls[:n]))
    got = task.loss(logits, {"labels": one_hot, "mask": mask})
    np.testing.assert_allclose(float(got), ref.item(), rtol=1e-6)
    log_probs = np.asarray(jax.nn.log_softmax(logits))
    ref = F.nll_loss(torch.tensor(log_probs[:n]), torch.tensor(cls[:n]))
    got = task.loss(log_probs, {"labels": one_hot, "mask": mask}, log_probs=True)
    np.testing.assert_allclose(float(got), ref.item(), rtol=1e-6)


@pytest.mark.parametrize("protocol", ["default", "official"])
def test_metrics_are_the_metric_library_s(protocol):
    logits, labels, one_hot, cls, ignore, _ = _data(2)
    m = get_task("multi_label").metrics(logits, labels, ignore, threshold=0.4, protocol=protocol)
    ref = metrics_lib.multilabel_metrics(logits, labels, ignore=ignore, threshold=0.4,
                                         protocol=protocol)
    assert m.keys() == ref.keys()
    for k in ref:
        np.testing.assert_array_equal(m[k], ref[k], err_msg=k)
    s = get_task("single_label").metrics(logits, one_hot, ignore, protocol=protocol)
    assert s == metrics_lib.single_label_metrics(logits, cls) and "mAP" not in s
    line = get_task("single_label").summary_line(s)
    assert line == f"top1 {s['top1']:.2f}  top5 {s['top5']:.2f}"


def test_rating_reads_the_old_key_of_earlier_runs():
    s, m = get_task("single_label"), get_task("multi_label")
    assert s.rating({"top1": 71.0, "mAP": 5.0}) == 71.0
    assert s.rating({"mAP": 64.0}) == 64.0  # rated before top-1 had its own key
    assert s.rating({"step": 3, "best_mAP": 40.0}, prefix="best_") == 40.0
    assert s.rating({"step": 3, "best_top1": 45.0}, prefix="best_") == 45.0
    assert m.rating({"best_mAP": 80.0}, prefix="best_") == 80.0 and m.rating({}) is None


def test_lambda_sweep_of_a_single_label_run_is_rated_by_top1():
    rng = np.random.default_rng(4)
    res = {"mean": rng.normal(size=(20, 4)), "max": rng.normal(size=(20, 4)),
           "labels": np.eye(4, dtype=np.int8)[rng.integers(0, 4, 20)],
           "ignore": np.zeros((20, 4), np.int8)}
    sweep = eval_lib.lambda_sweep(res, [0.0, 1.0], 0.5, task="single_label")
    top1 = {lam: metrics_lib.single_label_metrics(res["mean"] + lam * res["max"],
                                                  res["labels"].argmax(1))["top1"]
            for lam in (0.0, 1.0)}
    assert sweep["baseline_top1"] == top1[0.0] and sweep["best_top1"] == max(top1.values())
    assert "mAP" not in sweep["per_lam"][1.0] and "baseline_mAP" not in sweep
    assert eval_lib.lambda_sweep_table(sweep).startswith("lam      top1  [default protocol]")


def test_single_label_run_rates_best_by_top1_and_resumes_an_old_best_mAP(
        tmp_path, data_dir, cache_dir):
    from csra_jax.train import checksums, loop
    run = tmp_path / "run"
    c = tiny_config(data_dir, cache_dir, task="single_label", max_steps=2,
                    checkpoint_every_steps=100)
    c.model.arch, c.model.head = "small_cnn", "gap"
    result = loop.run(c, str(run))
    assert result["best"] == result["top1"] and "mAP" not in result
    meta_file = run / "checkpoints" / "2" / "meta" / "metadata"
    assert json.load(open(meta_file)) == {"step": 2, "best_top1": result["top1"]}
    lines = [json.loads(l) for l in open(run / "metrics.jsonl")]
    assert any("eval/top1" in l for l in lines) and not any("eval/mAP" in l for l in lines)
    # A run saved before top-1 had its own key: its rating sits under "best_mAP".
    meta_file.write_text(json.dumps({"step": 2, "best_mAP": 101.0}))
    checksums.write_manifest(run / "checkpoints" / "2")
    c.max_steps = 4
    again = loop.run(c, str(run))
    assert again["step"] == 4 and again["best"] == 101.0  # nothing beat the old rating
    assert sorted(int(p.name) for p in (run / "best").iterdir() if p.name.isdigit()) == [2]
    assert json.load(open(run / "checkpoints" / "4" / "meta" / "metadata"))["best_top1"] == 101.0
    assert math.isfinite(again["loss"])
