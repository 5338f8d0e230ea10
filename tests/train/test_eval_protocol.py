"""``eval.protocol``: the evaluation picks the metrics protocol and says which one
produced every number (printed line, AP table header, metrics.jsonl keys)."""

import json
import os

import numpy as np
import pytest

from csra_jax.data import build_dataset
from csra_jax.metrics import multilabel_metrics
from csra_jax.train import evaluate as eval_lib
from csra_jax.train import loop
from csra_jax.config import base_config, validate_config
from config_fixtures import tiny_config


def test_score_summary_and_sweep_name_their_protocol():
    rng = np.random.default_rng(0)
    res = {"logits": rng.normal(size=(40, 5)).astype(np.float32),
           "labels": (rng.random((40, 5)) < 0.4).astype(np.int8),
           "ignore": (rng.random((40, 5)) < 0.2).astype(np.int8)}
    for protocol in ("default", "official"):
        m = eval_lib.score(res, "multi_label", 0.5, protocol)
        ref = multilabel_metrics(res["logits"], res["labels"], res["ignore"], protocol=protocol)
        assert m["protocol"] == protocol and m["OP"] == ref["OP"] and m["mAP"] == ref["mAP"]
        assert eval_lib.summary_line(m, "multi_label").endswith(f"[{protocol} protocol]")
    assert eval_lib.metric_prefix("default") == "eval/"
    assert eval_lib.metric_prefix("official") == "eval/official/"
    sweep_res = {"mean": res["logits"], "max": res["logits"] + 1, "labels": res["labels"],
                 "ignore": res["ignore"]}
    sweep = eval_lib.lambda_sweep(sweep_res, [0.0, 1.0], 0.5, "official")
    assert sweep["per_lam"][1.0]["protocol"] == "official"
    assert "[official protocol]" in eval_lib.lambda_sweep_table(sweep)


def test_config_rejects_an_unknown_protocol():
    c = base_config()
    c.require_pretrained = False
    c.eval.protocol = "paper"
    with pytest.raises(ValueError, match=r"eval.protocol='paper'; valid: default, official"):
        validate_config(c, 1, 1)


def test_official_protocol_run_logs_its_keys(tmp_path, capsys):
    data_dir = str(tmp_path / "tfds")
    build_dataset("synthetic_shapes", data_dir, num_train=16, num_test=12, image_size=32,
                  config_name="tiny")
    workdir = str(tmp_path / "run")
    config = tiny_config(data_dir, str(tmp_path / "cache"), num_epochs=1, **{
        "eval.protocol": "official", "optim.warmup_epochs": 0})
    result = loop.run(config, workdir)
    assert result["protocol"] == "official"
    out = capsys.readouterr().out
    assert "[official protocol]" in out and "per-class AP [official protocol]" in out
    records = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    evals = [r for r in records if "eval/official/mAP" in r]
    assert evals and not any("eval/mAP" in r for r in records)
    assert evals[-1]["eval/official/mAP"] == pytest.approx(result["mAP"], abs=1e-6)
