"""Damaged checkpoints: each kind of damage is named in one warning line, training resumes
from the newest step that verifies (and ends bit-identical to the undamaged run),
evaluate and predict use the next good step; leftovers of a killed best/ save are
removed and that step is rated again."""

import os
import shutil

import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util

from csra_jax.train import checksums, loop
from csra_jax.train.checkpoints import CheckpointError
from config_fixtures import tiny_config
from repo_root import ROOT


def _config(data_dir, cache_dir, **overrides):
    return tiny_config(data_dir, cache_dir, **{"model.arch": "small_cnn", **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir, cache_dir):
    """A finished 12-step run: checkpoints/8, 10, 12 and best/<step>."""
    workdir = str(tmp_path_factory.mktemp("trained") / "run")
    loop.run(_config(data_dir, cache_dir), workdir)
    return workdir


def _params(step_dir):
    with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.restore(os.path.join(step_dir, "state"))
    return traverse_util.flatten_dict(tree["params"], sep="/")


def _largest_data_file(step_dir):
    files = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(step_dir, "state"))
             for f in fs if "/d/" in os.path.join(r, f)]
    return max(files, key=os.path.getsize)


def _flip_bit(step_dir):
    path = _largest_data_file(step_dir)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte ^ 0x10]))


def _overwrite_4k(step_dir):
    path = _largest_data_file(step_dir)
    with open(path, "r+b") as f:
        f.seek(min(4096, os.path.getsize(path) // 4))
        f.write(os.urandom(4096))


def _truncate(step_dir):
    path = _largest_data_file(step_dir)
    os.truncate(path, os.path.getsize(path) // 2)


def _delete_metadata(step_dir):
    os.remove(os.path.join(step_dir, "state", "_METADATA"))


def _delete_state(step_dir):
    shutil.rmtree(os.path.join(step_dir, "state"))


def _empty_ocdbt_manifest(step_dir):
    open(os.path.join(step_dir, "state", "manifest.ocdbt"), "w").close()


def _empty_checksums(step_dir):
    open(os.path.join(step_dir, checksums.MANIFEST), "w").close()


DAMAGE = {"flipped_bit": (_flip_bit, "does not match its sha256"),
          "4KiB_overwritten": (_overwrite_4k, "does not match its sha256"),
          "truncated_data_file": (_truncate, "bytes, "),
          "deleted_METADATA": (_delete_metadata, "missing (e.g. state/_METADATA)"),
          "deleted_state": (_delete_state, "missing (e.g. state/"),
          "emptied_ocdbt_manifest": (_empty_ocdbt_manifest, "state/manifest.ocdbt has 0 bytes"),
          "emptied_checksums": (_empty_checksums, "checksums.json is unreadable")}


def test_every_saved_step_has_a_manifest_that_verifies(trained):
    for sub in ("checkpoints", "best"):
        for step in os.listdir(os.path.join(trained, sub)):
            where = os.path.join(trained, sub, step)
            assert checksums.has_manifest(where), where
            assert checksums.verify(where) is None, where


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_newest_step_warns_and_training_resumes_from_the_one_before(
        kind, tmp_path, trained, data_dir, cache_dir, capsys):
    damage, phrase = DAMAGE[kind]
    workdir = str(tmp_path / "run")
    shutil.copytree(trained, workdir)
    reference = _params(os.path.join(trained, "checkpoints", "12"))
    damage(os.path.join(workdir, "checkpoints", "12"))
    capsys.readouterr()

    result = loop.run(_config(data_dir, cache_dir, mode="train"), workdir)
    out = capsys.readouterr().out
    warnings = [l for l in out.splitlines() if l.startswith("warning: checkpoint")]
    assert len(warnings) == 1, out
    assert "checkpoints/12 is damaged" in warnings[0] and phrase in warnings[0], warnings[0]
    assert "resuming from step 10" in warnings[0] and "12.damaged" in warnings[0]
    assert result["step"] == 12
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "12.damaged"))
    # Steps 11 and 12 were trained again from step 10: the same bits as before.
    again = _params(os.path.join(workdir, "checkpoints", "12"))
    for k in reference:
        np.testing.assert_array_equal(reference[k], again[k], err_msg=k)
    assert checksums.verify(os.path.join(workdir, "checkpoints", "12")) is None


def test_stop_instead_of_falling_back(tmp_path, trained, data_dir, cache_dir):
    workdir = str(tmp_path / "run")
    shutil.copytree(trained, workdir)
    _flip_bit(os.path.join(workdir, "checkpoints", "12"))
    with pytest.raises(CheckpointError, match=r"checkpoints/12 is damaged.*sha256.*fallback"):
        loop.run(_config(data_dir, cache_dir, mode="train", on_damaged_checkpoint="stop"),
                 workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10", "12", "8"]


def test_every_step_damaged_stops_and_moves_nothing(tmp_path, trained, data_dir, cache_dir):
    workdir = str(tmp_path / "run")
    shutil.copytree(trained, workdir)
    for step in ("8", "10", "12"):
        _flip_bit(os.path.join(workdir, "checkpoints", step))
    with pytest.raises(CheckpointError, match=r"no checkpoint can be used.*12 is damaged.*"
                                              r"2 older step"):
        loop.run(_config(data_dir, cache_dir, mode="train"), workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10", "12", "8"]


def test_evaluate_and_predict_skip_a_damaged_best_step(tmp_path, trained, data_dir, cache_dir,
                                                      capsys):
    from csra_jax.inference import Predictor
    workdir = str(tmp_path / "run")
    shutil.copytree(trained, workdir)
    (best,) = os.listdir(os.path.join(workdir, "best"))
    _truncate(os.path.join(workdir, "best", best))
    capsys.readouterr()
    result = loop.run(_config(data_dir, cache_dir, mode="evaluate"), workdir)
    out = capsys.readouterr().out
    assert f"warning: checkpoint {workdir}/best/{best} is damaged" in out
    assert "evaluating step 12 (checkpoints/) instead" in out
    assert f"evaluating {workdir}/checkpoints/12" in out and np.isfinite(result["mAP"])
    assert os.path.isdir(os.path.join(workdir, "best", best))  # evaluation moves nothing

    predictor = Predictor.from_workdir(workdir)
    err = capsys.readouterr().err
    assert f"best/{best} is damaged" in err and "using checkpoints/12 instead" in err
    image = np.zeros((32, 32, 3), np.uint8)
    assert predictor.predict_probs(image).shape == (1, 10)
    with pytest.raises(CheckpointError, match="is damaged"):
        Predictor.from_config(_config(data_dir, cache_dir),
                              os.path.join(workdir, "best", best))


def test_killed_best_save_is_removed_and_that_step_rated_again(tmp_path, data_dir, cache_dir,
                                                               capsys):
    workdir = str(tmp_path / "run")
    config = lambda: _config(data_dir, cache_dir, max_steps=6)
    loop.run(config(), workdir)  # step 6 = the end: evaluated, saved to best/6
    assert os.listdir(os.path.join(workdir, "best")) == ["6"]
    # What a SIGKILL during that save leaves: the temporary dir, never renamed.
    os.rename(os.path.join(workdir, "best", "6"),
              os.path.join(workdir, "best", "6.orbax-checkpoint-tmp"))
    capsys.readouterr()
    loop.run(config(), workdir)
    out = capsys.readouterr().out
    assert "removed 1 unfinished save(s) of step(s) 6" in out
    assert "re-evaluating step 6: its best/ save was interrupted" in out
    assert os.listdir(os.path.join(workdir, "best")) == ["6"]
    assert checksums.verify(os.path.join(workdir, "best", "6")) is None


def test_two_process_job_writes_one_manifest_covering_every_process(tmp_path, data_dir):
    """jax.distributed over localhost: process 0 hashes every process's files before the
    commit, and the step verifies."""
    import json
    import socket
    import subprocess
    import sys
    worker = os.path.join(ROOT, "tests", "workers", "locked_run.py")
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = str(s.getsockname()[1])
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT,
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    workdir = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, worker, str(workdir), data_dir, "--process-id",
                               str(i), "--num-processes", "2", "--port", port], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all("trained" in o for o in outs), [o[-2000:] for o in outs]
    step = workdir / "checkpoints" / "2"
    files = json.loads((step / checksums.MANIFEST).read_text())["files"]
    assert any("ocdbt.process_1/" in f for f in files) and "data/process_1-of-2.json" in files
    assert checksums.verify(step) is None


def test_lost_best_save_of_an_older_step_is_rated_from_checkpoints(tmp_path, trained,
                                                                   data_dir, cache_dir, capsys):
    workdir = str(tmp_path / "run")
    shutil.copytree(trained, workdir)
    os.makedirs(os.path.join(workdir, "best", "8.orbax-checkpoint-tmp", "state"))
    capsys.readouterr()
    loop.run(_config(data_dir, cache_dir), workdir)
    out = capsys.readouterr().out
    assert "re-evaluating step 8: its best/ save was interrupted" in out
    assert "[eval step 8]" in out
    assert os.path.exists(os.path.join(workdir, "eval", "predictions_step8.npz"))
    assert not os.path.exists(os.path.join(workdir, "best", "8.orbax-checkpoint-tmp"))
    # A step that checkpoints/ no longer holds cannot be rated again: said so.
    os.makedirs(os.path.join(workdir, "best", "2.orbax-checkpoint-tmp"))
    loop.run(_config(data_dir, cache_dir), workdir)
    out = capsys.readouterr().out
    assert "the best/ save of step 2 was interrupted and checkpoints/ no longer holds step 2" \
        in out
