"""Resuming a workdir with another config stops with one line listing the changed fields
(before config.json is touched); num_epochs may grow on purpose."""

import os
import subprocess
import sys

import pytest

from csra_jax.train import loop
from csra_jax.train.resume_check import check_resume, write_run_config
from config_fixtures import tiny_config

from repo_root import ROOT


def _config(data_dir, cache_dir, **overrides):
    return tiny_config(data_dir, cache_dir, **{"model.arch": "small_cnn", "mode": "train",
                                               **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir, cache_dir):
    workdir = str(tmp_path_factory.mktemp("trained") / "run")
    loop.run(_config(data_dir, cache_dir), workdir)
    return workdir


@pytest.mark.parametrize("override, shown", [
    ({"model.arch": "resnet18"}, 'model.arch "small_cnn" -> "resnet18"'),
    ({"model.head": "gap"}, 'model.head "csra" -> "gap"'),
    ({"batch_size": 16}, "batch_size 8 -> 16"),
    ({"model.lam": 0.5}, "model.lam 0.3 -> 0.5"),
    ({"data.image_size": 64}, "data.image_size 32 -> 64"),
    ({"seed": 1}, "seed 0 -> 1"),
])
def test_changes_to_model_data_or_schedule_stop_and_keep_config_json(
        override, shown, trained, data_dir, cache_dir):
    saved = open(os.path.join(trained, "config.json")).read()
    with pytest.raises(ValueError) as e:
        loop.run(_config(data_dir, cache_dir, **override), trained)
    message = str(e.value)
    assert "\n" not in message and shown in message and "new --workdir" in message, message
    assert "allow_config_change" not in message
    assert open(os.path.join(trained, "config.json")).read() == saved


def test_num_epochs_needs_allow_config_change_then_extends_the_run(tmp_path, trained,
                                                                    data_dir, cache_dir):
    import shutil
    workdir = str(tmp_path / "run")
    shutil.copytree(trained, workdir)
    saved = open(os.path.join(workdir, "config.json")).read()
    with pytest.raises(ValueError, match=r"num_epochs 2 -> 3 may change only on purpose: add "
                                         r"--config.allow_config_change=num_epochs"):
        loop.run(_config(data_dir, cache_dir, num_epochs=3), workdir)
    assert open(os.path.join(workdir, "config.json")).read() == saved
    result = loop.run(_config(data_dir, cache_dir, num_epochs=3,
                              allow_config_change="num_epochs"), workdir)
    assert result["step"] == 18
    assert '"num_epochs": 3' in open(os.path.join(workdir, "config.json")).read()


def test_several_changes_are_listed_in_one_line_from_the_cli(trained, data_dir, cache_dir):
    saved = open(os.path.join(trained, "config.json")).read()
    proc = subprocess.run(
        [sys.executable, "-m", "csra_jax.main", "--config",
         os.path.join(ROOT, "configs/demo.py"), "--workdir", trained,
         f"--config.data.data_dir={data_dir}", "--config.data.builder_config=tiny",
         "--config.model.arch=resnet18", "--config.batch_size=16", "--config.num_epochs=5"],
        capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu",
                                                 PYTHONPATH=ROOT), cwd=ROOT, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: resuming"), proc.stderr
    for part in ('model.arch "small_cnn" -> "resnet18"', "batch_size 8 -> 16",
                 "allow_config_change=", "num_epochs 2 -> 5"):
        assert part in lines[0], lines[0]
    assert open(os.path.join(trained, "config.json")).read() == saved


def _params(workdir, step):
    import orbax.checkpoint as ocp
    from flax import traverse_util
    with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.restore(os.path.join(workdir, "checkpoints", str(step), "state"))
    return traverse_util.flatten_dict(tree["params"], sep="/")


def test_another_worker_count_resumes_bit_identically(tmp_path, trained, data_dir, cache_dir,
                                                      capsys):
    """0 workers to step 4, then 2 decoding processes to the end: the same batches, so
    the same parameters as the uninterrupted in-process run."""
    import numpy as np
    workdir = str(tmp_path / "run")
    loop.run(_config(data_dir, cache_dir, max_steps=4), workdir)
    result = loop.run(_config(data_dir, cache_dir, **{"data.num_workers": 2}), workdir)
    assert result["step"] == 12
    assert ("data position saved with data.num_workers=0 carried over to 2"
            in capsys.readouterr().out)
    want, got = _params(trained, 12), _params(workdir, 12)
    assert want.keys() == got.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_free_fields_and_evaluation_settings_pass(tmp_path, data_dir, cache_dir):
    base = _config(data_dir, cache_dir)
    write_run_config(str(tmp_path), base)
    free = _config(data_dir, cache_dir, mode="evaluate", eval_batch_size=4,
                   log_every_steps=5, keep_checkpoints=7, **{"data.num_workers": 0})
    assert check_resume(str(tmp_path), free, training=True) == []
    # Evaluating the saved weights may use another schedule, never another model.
    later = _config(data_dir, cache_dir, num_epochs=9, **{"optim.lr_head": 1.0})
    assert check_resume(str(tmp_path), later, training=False) == []
    with pytest.raises(ValueError, match="model.num_heads 2 -> 4"):
        check_resume(str(tmp_path), _config(data_dir, cache_dir, **{"model.num_heads": 4}),
                     training=False)


def test_another_optimizer_is_refused_even_when_optim_changes_are_allowed(tmp_path, data_dir,
                                                                          cache_dir):
    write_run_config(str(tmp_path), _config(data_dir, cache_dir))
    other = _config(data_dir, cache_dir, allow_config_change="optim",
                    **{"optim.name": "adamw", "optim.lr_head": 0.01})
    with pytest.raises(ValueError, match=r'optim.name "sgd" -> "adamw" change the model, the '
                                         r"data or the schedule of the saved run") as e:
        check_resume(str(tmp_path), other, training=True)
    assert "optim.lr_head" not in str(e.value)  # allowed, so not listed
