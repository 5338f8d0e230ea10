"""The training stall detector: the label-prior entropy against torch's BCE, the verdict's
rules, and real runs: one that cannot learn (lr 0) warns in stdout and metrics.jsonl,
one that learns does not."""

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from csra_jax.data import build_dataset
from csra_jax.train import loop
from csra_jax.config import validate_config
from csra_jax.train.stall import StallDetector, prior_entropy
from config_fixtures import tiny_config


def test_prior_entropy_is_the_bce_of_predicting_the_label_frequencies():
    rng = np.random.default_rng(0)
    labels = (rng.random((400, 7)) < np.array([0.05, 0.1, 0.25, 0.4, 0.5, 0.7, 0.9])).astype(np.float32)
    freq = labels.mean(0, dtype=np.float64)
    logits = torch.logit(torch.tensor(freq, dtype=torch.float64)).expand(400, 7)
    torch_bce = F.binary_cross_entropy_with_logits(logits, torch.tensor(labels, dtype=torch.float64))
    assert prior_entropy(freq) == pytest.approx(float(torch_bce), rel=1e-9)
    # single-label: softmax cross-entropy of predicting the class distribution.
    cls = rng.integers(0, 5, 300)
    p = np.bincount(cls, minlength=5) / 300
    ce = F.cross_entropy(torch.log(torch.tensor(p)).expand(300, 5), torch.tensor(cls))
    assert prior_entropy(p, "single_label") == pytest.approx(float(ce), rel=1e-9)


def _labels(rng, n=32, p=0.25, c=8):
    return (rng.random((n, c)) < p).astype(np.int8)


def test_detector_fires_once_at_the_prior_and_not_before_the_check_or_when_learning():
    rng = np.random.default_rng(1)
    h = prior_entropy(np.full(8, 0.25))
    det = StallDetector(check_steps=50, margin=0.05)
    assert det.observe(10, h, _labels(rng)) is None  # before the check
    assert det.observe(40, h, _labels(rng)) is None
    warning = det.observe(50, h * 1.01, _labels(rng))
    assert warning is not None and det.fired
    assert "label-prior entropy" in warning and "optim.lr_backbone" in warning
    assert "stall_check_steps=0" in warning
    assert det.last["stall_prior_entropy"] == pytest.approx(h, rel=0.15)  # from 96 rows
    assert det.observe(60, h, _labels(rng)) is None  # once per run

    learning = StallDetector(check_steps=50, margin=0.05)
    for step in (10, 20, 30, 40):
        learning.observe(step, h, _labels(rng))
    assert learning.observe(50, 0.3 * h, _labels(rng)) is None  # the mean of 5 < 0.95 h
    assert not learning.fired and learning.last["stall_loss"] < 0.95 * h

    off = StallDetector(check_steps=0, margin=0.05)
    assert off.observe(10 ** 6, h, _labels(rng)) is None


def test_detector_leaves_out_ignored_entries_and_padding_rows():
    labels = np.zeros((4, 2), np.int8)
    labels[:, 0] = [1, 0, 1, 0]  # class 0: p = 0.5 among valid rows
    labels[:, 1] = [1, 1, 1, 1]  # class 1 ignored on rows 0-2 -> only row 3 (p=1, H=0)
    ignore = np.array([[0, 1], [0, 1], [0, 1], [0, 0]], np.int8)
    det = StallDetector(check_steps=1, margin=0.05)
    batch = {"labels": labels, "ignore": ignore, "mask": np.ones(4, np.float32)}
    det.observe_batch(1, {"loss": 10.0, "aux_loss": 0.0}, batch)
    assert det.last["stall_prior_entropy"] == pytest.approx(prior_entropy([0.5, 1.0]))
    # a padding row (mask 0) does not count
    det = StallDetector(check_steps=1, margin=0.05)
    batch = {"labels": labels, "ignore": np.zeros_like(labels), "mask": np.array([1, 1, 0, 0.])}
    det.observe_batch(1, {"loss": 10.0, "aux_loss": 0.0}, batch)
    assert det.last["stall_prior_entropy"] == pytest.approx(prior_entropy([0.5, 1.0]))


@pytest.mark.parametrize("field,value", [("stall_check_steps", -1), ("stall_margin", 0.0),
                                         ("stall_margin", 1.5)])
def test_config_rejects_bad_stall_fields(field, value):
    c = tiny_config("/nonexistent", "")
    c[field] = value
    with pytest.raises(ValueError, match=field):
        validate_config(c, 1, 1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfds")
    build_dataset("synthetic_shapes", str(d), num_train=64, num_test=16, image_size=32,
                  config_name="tiny")
    return str(d)


def _run(tmp_path, data_dir, capsys, **overrides):
    workdir = str(tmp_path / "run")
    config = tiny_config(data_dir, "", **{"model.arch": "small_cnn", "model.num_heads": 1,
                                          "model.lam": 0.1, "batch_size": 16,
                                          "num_epochs": 10, "log_every_steps": 4,
                                          "stall_check_steps": 32, "mode": "train",
                                          "optim.schedule": "cosine", "optim.lr_backbone": 0.1,
                                          "checkpoint_every_steps": 1000, **overrides})
    loop.run(config, workdir)
    out = capsys.readouterr()
    records = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    return out.out + out.err, records


def test_a_run_that_cannot_learn_warns_once_in_output_and_metrics(tmp_path, data_dir, capsys):
    text, records = _run(tmp_path, data_dir, capsys, **{"optim.lr_backbone": 0.0,
                                                        "optim.lr_head": 0.0})
    assert text.count("warning: training has stalled: after 32 steps") == 1
    stalls = [r for r in records if "train/stall" in r]
    assert len(stalls) == 1 and stalls[0]["step"] == 32
    assert stalls[0]["train/stall_loss"] >= 0.95 * stalls[0]["train/stall_prior_entropy"]


def test_a_run_that_learns_does_not_warn(tmp_path, data_dir, capsys):
    text, records = _run(tmp_path, data_dir, capsys)
    assert "training has stalled" not in text
    assert not any("train/stall" in r for r in records)
