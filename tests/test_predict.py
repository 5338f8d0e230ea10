"""Prediction CLI and Python API on a tiny converted model and a tiny trained run: exact
eval preprocessing, any image mode/size, one error line per bad file, JSON/CSV output,
attention overlays at the input's size, clear failures for missing checkpoints."""

import csv
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from csra_jax import create_model, predict
from csra_jax.convert import save_converted
from csra_jax.data import build_dataset
from csra_jax.data import transforms
from csra_jax.data.synthetic_shapes import SHAPES
from csra_jax.inference import Predictor, load_run_config, save_run_config
from csra_jax.train import loop
from csra_jax.config import base_config
from csra_jax.train.state import model_from_config
from config_fixtures import tiny_config
from model_fixtures import random_variables

from repo_root import ROOT
GOOD = ("gray.png", "large.jpg", "rgb.jpg", "rgba.png")
BAD = ("corrupt.jpg", "notes.txt")
SIZES = {"gray.png": (50, 50), "large.jpg": (1001, 687), "rgb.jpg": (40, 30),
         "rgba.png": (33, 47)}
NAMES = ("cat", "dog", "bird", "fish")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, (w, h) in SIZES.items():
        channels = {"gray.png": (), "rgba.png": (4,)}.get(name, (3,))
        Image.fromarray(rng.integers(0, 256, (h, w) + channels, dtype=np.uint8)).save(d / name)
    jpeg = (d / "rgb.jpg").read_bytes()
    (d / "corrupt.jpg").write_bytes(jpeg[:len(jpeg) // 2])  # truncated JPEG
    (d / "notes.txt").write_text("not an image")
    return str(d)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    kwargs = dict(arch="resnet18", num_classes=4, head="csra", num_heads=1, lam=0.2,
                  img_size=64)
    model = create_model(**kwargs)
    variables = random_variables(model, 64)
    out = save_converted(str(tmp_path_factory.mktemp("conv") / "model"), variables, kwargs)
    return out, model, variables


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    base = tmp_path_factory.mktemp("run")
    data_dir = str(base / "tfds")
    build_dataset("synthetic_shapes", data_dir, num_train=48, num_test=20, image_size=32,
                  config_name="tiny")
    config = tiny_config(data_dir, str(base / "cache"), mode="train", num_epochs=1,
                         max_steps=2)
    loop.run(config, str(base / "work"))
    if not os.path.exists(base / "work" / "config.json"):  # the trainer writes it
        save_run_config(str(base / "work"), config)
    return str(base / "work"), config


def _reference(model, variables, path, size):
    """sigmoid(model.apply) on the evaluation transform, computed here independently."""
    arr = transforms.decode_eval(open(path, "rb").read(), size)
    mean, std = transforms.resolve_normalization("resnet")
    x = (arr[None].astype(np.float32) / 255.0 - mean) / std
    return np.asarray(jax.nn.sigmoid(model.apply(variables, jnp.asarray(x), train=False)))[0]


def _errors(text):
    return [l for l in text.splitlines() if l.startswith("error:")]


def test_cli_converted_folder_json_and_attention(converted, images, tmp_path, capsys):
    path, model, variables = converted
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES) + "\n")
    out, viz = tmp_path / "out" / "preds.json", tmp_path / "viz"
    rc = predict.main(["--checkpoint", path, "--class-names", str(names), "--top-k", "4",
                       "--output", str(out), "--attention-dir", str(viz), images])
    captured = capsys.readouterr()
    assert rc == 1
    errors = _errors(captured.err)
    assert len(errors) == 2 and all(any(b in e for e in errors) for b in BAD)
    assert "truncated" in " ".join(errors) and "not a readable image" in " ".join(errors)
    results = {os.path.basename(r["file"]): r for r in json.loads(out.read_text())}
    assert set(results) == set(GOOD) | set(BAD)
    for bad in BAD:
        assert results[bad]["error"] and results[bad]["labels"] == []
    for good in GOOD:
        r = results[good]
        assert "error" not in r and f"{good}:" in captured.out
        ref = _reference(model, variables, os.path.join(images, good), 64)
        got = {x["class"]: x["score"] for x in r["top_k"]}
        np.testing.assert_allclose([got[n] for n in NAMES], ref, atol=1e-5)
        assert [x["class"] for x in r["labels"]] == [NAMES[i] for i in np.argsort(-ref)
                                                     if ref[i] >= 0.5]
        shown = [x["class"] for x in r["labels"]] or [NAMES[int(np.argmax(ref))]]
        stem = os.path.splitext(good)[0]
        for cls in shown:
            assert Image.open(viz / f"{stem}_{cls}.png").size == SIZES[good]
        grid = Image.open(viz / f"{stem}_grid.png")
        assert grid.width > grid.height  # the input + one tile per class, in a row


def test_cli_workdir_csv_matches_restored_checkpoint(workdir, images, tmp_path, capsys):
    wd, config = workdir
    out = tmp_path / "preds.csv"
    rc = predict.main(["--workdir", wd, "--top-k", "10", "--threshold", "0.3",
                       "--output", str(out), images])
    captured = capsys.readouterr()
    assert rc == 1 and len(_errors(captured.err)) == 2
    # Independent restore: the latest step's raw state, no target.
    with ocp.StandardCheckpointer() as ckptr:
        state = ckptr.restore(os.path.join(wd, "checkpoints", "2", "state"))
    variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
    model = model_from_config(config, len(SHAPES))
    rows = {os.path.basename(r["file"]): r for r in csv.DictReader(open(out))}
    assert set(rows) == set(GOOD) | set(BAD)
    for good in GOOD:
        ref = _reference(model, variables, os.path.join(images, good), 32)
        got = dict(item.split(":") for item in rows[good]["top_k"].split(";"))
        np.testing.assert_allclose([float(got[n]) for n in SHAPES], ref, atol=1e-5)
        labels = [item.split(":")[0] for item in rows[good]["labels"].split(";") if item]
        assert labels == [SHAPES[i] for i in np.argsort(-ref) if ref[i] >= 0.3]
        assert rows[good]["error"] == ""
    assert all(rows[b]["error"] for b in BAD)
    # The step dir with the run's config.json two levels up works too.
    step = os.path.join(wd, "checkpoints", "2")
    assert predict.main(["--checkpoint", step, os.path.join(images, "rgb.jpg")]) == 0


def test_missing_checkpoints_give_one_line_and_exit_2(tmp_path, images, capsys):
    proc = subprocess.run([sys.executable, "-m", "csra_jax.predict", "--workdir",
                           str(tmp_path / "absent"), images], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: workdir {str(tmp_path / 'absent')!r} does not exist."]
    (tmp_path / "empty").mkdir()
    for args in (["--workdir", str(tmp_path / "empty")],
                 ["--checkpoint", str(tmp_path / "absent")],
                 ["--checkpoint", str(tmp_path / "empty")]):
        assert predict.main(args + [images]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:"), err



@pytest.mark.parametrize("override, message", [
    ("--config.batch_size=abc",
     "error: --config.batch_size=abc: config.batch_size takes a whole number (the config has 32)"),
    ("--config.batch_sise=4", "error: unknown config field 'batch_sise' (the fields are in "
                              "csra_jax/config.py)"),
])
def test_bad_config_override_is_the_same_one_line_as_main(tmp_path, images, capsys, override,
                                                          message):
    args = ["--checkpoint", str(tmp_path), "--config", os.path.join(ROOT, "configs", "demo.py"),
            override, images]
    assert predict.main(args) == 2
    assert capsys.readouterr().err.strip().splitlines() == [message]

def test_predictor_api_arrays_pil_and_batching(converted):
    path, model, variables = converted
    p = Predictor.from_converted(path, batch_size=2)
    assert p.image_size == 64 and p.class_names[0] == "class_0"
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    ref = jax.nn.sigmoid(model.apply(variables, jnp.asarray(batch / 255.0, jnp.float32)))
    np.testing.assert_allclose(p.predict_probs(batch), ref, atol=1e-5)  # 2 + 1 padded
    np.testing.assert_allclose(p.predict_probs(batch.astype(np.float32) / 255.0), ref,
                               atol=1e-5)
    assert p._probs._cache_size() == 1  # one compilation for any number of images
    pil = [Image.fromarray(rng.integers(0, 256, (50, 70), dtype=np.uint8)),
           Image.fromarray(rng.integers(0, 256, (90, 40, 4), dtype=np.uint8))]
    resized = np.stack([np.asarray(im.convert("RGB").resize((64, 64), Image.BILINEAR))
                        for im in pil])
    ref = jax.nn.sigmoid(model.apply(variables, jnp.asarray(resized / 255.0, jnp.float32)))
    np.testing.assert_allclose(p.predict_probs(pil), ref, atol=1e-5)
    assert p.predict_probs(batch[0]).shape == (1, 4)  # one (H, W, 3) image
    maps = p.attention_maps(batch[0])
    assert maps.shape == (4, 2, 2)  # resnet18 at 64 px: a 2 x 2 feature grid
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1.0, atol=1e-5)


def test_run_config_round_trip(tmp_path):
    c = base_config()
    c.model.num_heads = 2
    c.model.temperatures = (1.0, math.inf)
    c.data.image_size = 96
    save_run_config(str(tmp_path), c)
    back = load_run_config(str(tmp_path))
    assert back.model.temperatures == (1.0, math.inf) and back.data.image_size == 96
    assert back.to_dict() == c.to_dict()
    assert load_run_config(str(tmp_path / "nothing")) is None
