"""The run directory has one owner (csra_jax.run) and serving does not import training."""

import ast
import os

from csra_jax.run.paths import RunDir, as_path, is_cloud

from repo_root import ROOT


def _train_imports(path):
    tree = ast.parse(open(os.path.join(ROOT, path)).read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
            found.update(n for n in [node.module, *names] if n.startswith("csra_jax.train."))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("csra_jax.train"))
    return found


def test_serving_reads_the_run_directory_without_the_training_modules():
    # Serving (inference, predict, the run directory and the config schema it reads)
    # imports nothing from csra_jax.train: checkpoints, checksums and config.json come
    # from csra_jax.run, the schema from csra_jax.config, the model from csra_jax.models.
    paths = ["csra_jax/inference.py", "csra_jax/predict.py", "csra_jax/config.py"]
    run_dir = os.path.join(ROOT, "csra_jax", "run")
    paths += [f"csra_jax/run/{n}" for n in sorted(os.listdir(run_dir)) if n.endswith(".py")]
    for path in paths:
        assert not _train_imports(path), (path, _train_imports(path))


def test_layout_of_a_local_and_a_gs_workdir(tmp_path):
    local = RunDir(str(tmp_path / "run") + "/")
    assert os.fspath(local.config) == str(tmp_path / "run" / "config.json")
    assert os.fspath(local.predictions(12)).endswith("run/eval/predictions_step12.npz")
    assert not local.cloud and not local.has_steps()
    remote = RunDir("gs://bucket/runs/a/")
    assert remote.cloud and is_cloud(remote.root)
    assert os.fspath(remote.checkpoints) == "gs://bucket/runs/a/checkpoints"
    assert os.fspath(remote.ap_table(3)) == "gs://bucket/runs/a/eval/ap_table_step3.txt"
    assert os.fspath(as_path("~/x")) == os.path.expanduser("~/x")


def test_config_and_class_names_round_trip(tmp_path):
    from csra_jax.run.class_names import load_class_names, save_class_names
    from csra_jax.run.config_file import load_run_config, save_run_config
    from csra_jax.config import base_config
    c = base_config()
    c.model.arch = "resnet18"
    c.data.crop_scale = (0.5, 1.0)
    assert load_run_config(tmp_path) is None and load_class_names(tmp_path) is None
    save_run_config(tmp_path, c)
    back = load_run_config(tmp_path)
    assert back.model.arch == "resnet18" and back.data.crop_scale == (0.5, 1.0)
    assert not (tmp_path / "config.json.tmp").exists()
    save_class_names(tmp_path, ["cat", "dog"])
    assert load_class_names(tmp_path) == ("cat", "dog")


def test_best_rating_survives_a_restart(tmp_path):
    """The rating of best/'s step is read back by a new process (a resumed run), which
    re-rates an interrupted best/ save against it; orbax keeps metrics only in memory."""
    import numpy as np
    from csra_jax.run.checkpoints import Checkpoints
    ckpts = Checkpoints(tmp_path, keep=2, best_metric="top1")
    state = {"w": np.arange(3.0)}
    ckpts.save_best(5, state, {"top1": 71.25}, {"step": 5, "epoch": 1})
    ckpts.wait()
    assert ckpts.best_metric() == 71.25
    reopened = Checkpoints(tmp_path, keep=2, best_metric="top1")
    assert reopened.best_metric() == 71.25
    reopened.save_best(9, state, {"top1": 80.0}, {"step": 9, "epoch": 2})
    reopened.wait()
    assert reopened.best.all_steps() == [9]  # the better step replaced the old one
    assert Checkpoints(tmp_path, keep=2, best_metric="top1").best_metric() == 80.0


def test_importing_serving_loads_no_training_module():
    import subprocess
    import sys
    code = ("import sys, csra_jax.inference, csra_jax.predict, csra_jax.config, "
            "csra_jax.run.restore; "
            "print(sorted(m for m in sys.modules if m.startswith('csra_jax.train')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert out.stdout.strip() == "[]", out.stdout


def test_best_is_rated_by_the_task_key_or_the_key_older_runs_stored(tmp_path):
    """Single-label runs saved before top-1 had its own name rated best/ under "mAP"."""
    from csra_jax.run.checkpoints import Checkpoints
    ckpts = Checkpoints(str(tmp_path / "run"), keep=1, best_metric="top1")
    assert ckpts._rating({"top1": 2.0, "mAP": 1.0}) == 2.0
    assert ckpts._rating({"mAP": 1.0}) == 1.0
    assert ckpts._rating({"loss": 0.3}) is None
    assert ckpts.best_metric() is None  # nothing in best/ yet
