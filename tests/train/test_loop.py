"""Real training and evaluation runs on a tiny model and generated synthetic_shapes data:
outputs, checkpoints, resume after SIGKILL, SIGTERM, non-finite loss, lambda sweep,
gradient accumulation, no recompilation and no host transfers in steady state."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util

from csra_jax.train import loop
from csra_jax.train import loss as loss_lib
from csra_jax.config import base_config
from csra_jax.train.optimizer import create_optimizer
from csra_jax.train.state import create_train_state, model_from_config
from csra_jax.train.steps import (batch_sharding, make_eval_step, make_mesh, make_train_step,
                                   replicated)
from config_fixtures import tiny_config

from repo_root import ROOT


def _cli(workdir, data_dir, cache_dir, *extra):
    args = [sys.executable, "-m", "csra_jax.main", "--config", os.path.join(ROOT, "configs/demo.py"),
            "--workdir", str(workdir), f"--config.data.data_dir={data_dir}",
            "--config.data.builder_config=tiny", "--config.data.build_if_missing=False",
            "--config.data.image_size=32", "--config.batch_size=8", "--config.eval_batch_size=8",
            "--config.num_epochs=2", "--config.optim.warmup_epochs=1",
            "--config.checkpoint_every_steps=2", "--config.log_every_steps=2",
            f"--config.compilation_cache_dir={cache_dir}", *extra]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=ROOT)


def _final_params(workdir, step):
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.restore(path)
    return traverse_util.flatten_dict(tree["params"], sep="/")


def test_train_and_evaluate_writes_metrics_checkpoints_and_predictions(tmp_path, data_dir, cache_dir):
    workdir = str(tmp_path / "run")
    result = loop.run(tiny_config(data_dir, cache_dir), workdir)
    assert result["step"] == 12  # 2 epochs x 48 // 8
    assert 0.0 <= result["mAP"] <= 100.0 and np.isfinite(result["loss"])
    lines = open(os.path.join(workdir, "metrics.jsonl")).read().splitlines()
    assert any('"train/loss"' in l for l in lines) and any('"eval/mAP"' in l for l in lines)
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    pred = np.load(os.path.join(workdir, "eval", "predictions_step12.npz"))
    assert pred["logits"].shape == (20, 10)  # every test example exactly once
    assert sorted(pred["index"].tolist()) == list(range(20))
    assert len(set(pred["id"].tolist())) == 20 and all(pred["id"])
    assert os.path.exists(os.path.join(workdir, "eval", "ap_table_step12.txt"))
    assert os.listdir(os.path.join(workdir, "best"))
    # evaluate mode restores the best checkpoint and reproduces its mAP.
    again = loop.run(tiny_config(data_dir, cache_dir, mode="evaluate"), workdir)
    best_eval = [l for l in lines if '"eval/mAP"' in l]
    assert again["mAP"] == pytest.approx(max(
        float(l.split('"eval/mAP": ')[1].split(",")[0]) for l in best_eval), abs=1e-6)


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, data_dir, cache_dir):
    straight = tmp_path / "straight"
    proc = _cli(straight, data_dir, cache_dir, "--config.mode=train")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]

    killed = tmp_path / "killed"
    proc = _cli(killed, data_dir, cache_dir, "--config.mode=train")
    deadline = time.time() + 300
    while not os.path.exists(killed / "checkpoints" / "4") and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    steps = sorted(int(s) for s in os.listdir(killed / "checkpoints") if s.isdigit())
    assert steps and max(steps) < 12, steps  # really interrupted before the end

    proc = _cli(killed, data_dir, cache_dir, "--config.mode=train")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert "resumed from step" in out
    a, b = _final_params(straight, 12), _final_params(killed, 12)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_sigterm_saves_and_exits_cleanly(tmp_path, data_dir, cache_dir):
    workdir = tmp_path / "preempted"
    proc = _cli(workdir, data_dir, cache_dir, "--config.mode=train",
                "--config.checkpoint_every_steps=1000")
    deadline = time.time() + 300
    log = workdir / "metrics.jsonl"
    while not (log.exists() and "train/loss" in log.read_text()) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert "preemption signal: saved step" in out
    saved = [int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit()]
    assert saved and max(saved) < 12


def test_nonfinite_loss_stops_with_last_good_checkpoint(tmp_path, data_dir, cache_dir, monkeypatch):
    real = loop.train_iterator

    def poisoned(config, info, mesh):
        it = real(config, info, mesh)

        class Poison:
            count = 0

            def __next__(self):
                batch = next(it)
                Poison.count += 1
                if Poison.count == 5:  # after the step-4 checkpoint
                    batch = dict(batch, image=batch["image"] * jnp.nan)
                return batch

            def __iter__(self):
                return self

            def get_state(self):  # grain's handler takes bytes from non-grain iterators
                return json.dumps(it.get_state()).encode()

            def set_state(self, s):
                return it.set_state(json.loads(s))
        return Poison()

    monkeypatch.setattr(loop, "train_iterator", poisoned)
    workdir = str(tmp_path / "nan")
    with pytest.raises(loop.NonFiniteLossError, match="non-finite loss"):
        loop.run(tiny_config(data_dir, cache_dir, mode="train"), workdir)
    steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    assert steps == [2, 4]
    params = _final_params(workdir, 4)
    assert all(np.isfinite(v).all() for v in params.values())


def test_lambda_sweep_on_a_trained_gap_model(tmp_path, data_dir, cache_dir, capsys):
    workdir = str(tmp_path / "gap")
    trained = loop.run(tiny_config(data_dir, cache_dir, **{"model.head": "gap"}), workdir)
    sweep = loop.run(tiny_config(data_dir, cache_dir, mode="lambda_sweep",
                                 **{"model.head": "gap"}), workdir)
    assert sorted(sweep["per_lam"]) == [0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]
    # lam = 0 is the plain GAP model: the same mAP as its own evaluation of the
    # checkpoint the sweep scores (the best one, not necessarily the last).
    assert sweep["baseline_mAP"] == pytest.approx(trained["best"], abs=1e-4)
    assert sweep["best_mAP"] >= sweep["baseline_mAP"]
    assert "best lam" in capsys.readouterr().out


def _device_batch(mesh, seed, batch=8, size=32, classes=10):
    rng = np.random.default_rng(seed)
    host = {"image": rng.random((batch, size, size, 3), dtype=np.float32),
            "labels": (rng.random((batch, classes)) < 0.3).astype(np.int8),
            "ignore": np.zeros((batch, classes), np.int8),
            "mask": np.ones((batch,), np.float32), "index": np.arange(batch, dtype=np.int32)}
    return jax.device_put(host, batch_sharding(mesh))


def _step_setup(data_dir, cache_dir, **overrides):
    config = tiny_config(data_dir, cache_dir, **overrides)
    mesh = make_mesh()
    model = model_from_config(config, 10)
    tx, schedules = create_optimizer(dict(config.optim, num_epochs=2,
                                          grad_accum_steps=config.grad_accum_steps), 6)
    state = jax.device_put(create_train_state(config, model, tx, jax.random.PRNGKey(0),
                                              pretrained=False), replicated(mesh))
    step = make_train_step(model, tx, mesh, schedules, grad_accum_steps=config.grad_accum_steps)
    return mesh, state, step


def test_steady_state_has_no_recompilation_and_no_host_transfers(data_dir, cache_dir):
    mesh, state, step = _step_setup(data_dir, cache_dir)
    batches = [_device_batch(mesh, i) for i in range(4)]
    state, _ = step(state, batches[0])
    with jax.transfer_guard("disallow"):
        for b in batches[1:]:
            state, metrics = step(state, b)
    assert step._cache_size() == 1
    assert int(jax.device_get(state.step)) == 4 and np.isfinite(jax.device_get(metrics["loss"]))
    # The eval step too: one compilation, no transfers once its inputs are on device.
    model = model_from_config(tiny_config(data_dir, cache_dir), 10)
    eval_step = make_eval_step(model, mesh)
    variables = jax.device_put({"params": state.params, "batch_stats": state.batch_stats},
                               replicated(mesh))
    eval_step(variables, batches[0])
    with jax.transfer_guard("disallow"):
        for b in batches[1:]:
            out = eval_step(variables, b)
    assert eval_step._cache_size() == 1 and out["logits"].shape == (8, 10)


def test_gradient_accumulation_updates_every_k_steps(data_dir, cache_dir):
    mesh, state, step = _step_setup(data_dir, cache_dir, grad_accum_steps=2,
                                    **{"optim.warmup_epochs": 0})
    kernel = lambda s: np.array(s.params["head"]["kernel"])
    k0 = kernel(state)
    state, _ = step(state, _device_batch(mesh, 0))
    k1 = kernel(state)
    state, _ = step(state, _device_batch(mesh, 1))
    k2 = kernel(state)
    np.testing.assert_array_equal(k0, k1)  # accumulating, not applied yet
    assert np.abs(k2 - k1).max() > 0


def test_nonfinite_step_leaves_state_unchanged(data_dir, cache_dir):
    mesh, state, step = _step_setup(data_dir, cache_dir)
    state, _ = step(state, _device_batch(mesh, 0))
    before = jax.device_get(state.params)
    bad = _device_batch(mesh, 1)
    bad["image"] = bad["image"] * jnp.nan
    state, metrics = step(state, bad)
    assert int(jax.device_get(metrics["nonfinite"])) == 1
    after = jax.device_get(state.params)
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        np.testing.assert_array_equal(a, b)


def test_vit_train_step_compiles_and_trains_on_the_mesh(data_dir, cache_dir):
    """A ViT mixes replicated params (class token) with batch-sharded activations."""
    mesh, state, step = _step_setup(data_dir, cache_dir, **{"model.arch": "vit_b16",
                                                             "model.drop_path_rate": 0.1,
                                                             "optim.warmup_epochs": 0})
    before = np.array(state.params["head"]["kernel"])
    state, metrics = step(state, _device_batch(mesh, 0))
    assert np.isfinite(jax.device_get(metrics["loss"]))
    assert np.abs(np.array(state.params["head"]["kernel"]) - before).max() > 0


def test_bf16_compute_trains_with_float32_params(data_dir, cache_dir):
    mesh, state, step = _step_setup(data_dir, cache_dir, dtype="bfloat16")
    state, metrics = step(state, _device_batch(mesh, 0))
    assert np.isfinite(jax.device_get(metrics["loss"]))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(state.params))


def test_attend_rectify_step_adds_its_regulariser_to_the_loss(data_dir, cache_dir):
    overrides = {"model.arch": "small_cnn", "model.head": "attend_rectify",
                 "model.attention_depth": 2, "model.attention_heads": 3}
    config = tiny_config(data_dir, cache_dir, **overrides)
    model = model_from_config(config, 10)
    mesh, state, step = _step_setup(data_dir, cache_dir, **overrides)
    batch = _device_batch(mesh, 0)
    variables = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    logits, updates = model.apply(variables, batch["image"], train=True,
                                  mutable=["batch_stats", "losses"],
                                  rngs={"dropout": jax.random.fold_in(state.rng, 0)})
    (reg,) = updates["losses"]["head"]["attention_reg"]
    bce = loss_lib.bce_with_logits(logits, batch["labels"])
    state, metrics = step(state, batch)  # the state is donated: read it before
    assert float(metrics["aux_loss"]) == pytest.approx(float(reg), rel=1e-5) and reg > 0
    assert float(metrics["loss"]) == pytest.approx(float(bce + reg), rel=1e-5)


def test_attend_rectify_single_label_trains_with_nll_of_its_log_probabilities():
    from csra_jax.train.steps import compute_loss, outputs_log_probs
    c = base_config()
    c.task, c.model.arch, c.model.head = "single_label", "small_cnn", "attend_rectify"
    c.model.attention_depth = 2
    model = model_from_config(c, 4)
    assert outputs_log_probs(model) and model.head.aggregate == "log_softmax"
    log_probs = jnp.log(jnp.array([[0.1, 0.2, 0.3, 0.4]]))
    batch = {"labels": jnp.array([[0, 0, 1, 0]])}
    assert float(compute_loss("single_label", log_probs, batch, log_probs=True)) == \
        pytest.approx(-np.log(0.3), rel=1e-6)


def test_demo_attend_rectify_config_trains_and_evaluates(tmp_path, data_dir, cache_dir):
    from csra_jax.config import sibling_config
    c = sibling_config(os.path.join(ROOT, "configs", "demo.py"), "demo_attend_rectify")
    c.data.data_dir, c.data.builder_config, c.data.build_if_missing = data_dir, "tiny", False
    c.data.image_size, c.batch_size, c.eval_batch_size, c.num_epochs = 32, 8, 8, 2
    c.compilation_cache_dir = cache_dir
    result = loop.run(c, str(tmp_path / "run"))
    assert result["step"] == 12 and np.isfinite(result["loss"]) and 0 <= result["mAP"] <= 100
    lines = open(tmp_path / "run" / "metrics.jsonl").read()
    assert '"train/aux_loss"' in lines
