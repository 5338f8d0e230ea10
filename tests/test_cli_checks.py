"""Bad command lines end in one `error:` line and exit 2, before anything is built or
compiled: wrong value types, a missing config file, a missing/unusable workdir, bad
`data.build --set` fields."""

import errno
import json
import os
import shutil
import subprocess
import sys

import pytest

from repo_root import ROOT


def _run(module, *args, prefix=()) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    return subprocess.run([*prefix, sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _one_error_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [l for l in lines if l.startswith("error: ")]
    assert len(errors) == 1, r.stderr[-3000:]
    return errors[0]


def _main(*args, **kw):
    return _run("csra_jax.main", *args, **kw)


# ------------------------------------------------------------ value types
@pytest.mark.parametrize("args", [["--config.batch_size=abc"], ["--config.batch_size=8.5"],
                                  ["--config.batch_size", "8.5"]])
def test_batch_size_of_the_wrong_type(tmp_path, args):
    line = _one_error_line(_main("--config", "configs/demo.py", "--workdir",
                                 str(tmp_path / "w"), *args))
    value = args[0].split("=", 1)[1] if "=" in args[0] else args[1]
    assert f"--config.batch_size={value}" in line and "whole number" in line, line
    assert not (tmp_path / "w").exists()


def test_a_group_of_fields_cannot_be_set_as_one_value(tmp_path):
    line = _one_error_line(_main("--config", "configs/demo.py", "--workdir",
                                 str(tmp_path / "w"), "--config.model=3"))
    assert "config.model is a group of fields" in line and "--config.model.arch" in line


def test_crop_scale_that_is_not_two_numbers(tmp_path):
    line = _one_error_line(_main("--config", "configs/demo.py", "--workdir",
                                 str(tmp_path / "w"), "--config.data.crop_scale=abc"))
    assert "data.crop_scale" in line and "two numbers" in line


# ------------------------------------------------------------ config file and workdir
@pytest.mark.parametrize("form", ["--config configs/nope.py", "--config=configs/nope.py:arg"])
def test_missing_config_file(tmp_path, form):
    line = _one_error_line(_main(*form.split(" "), "--workdir", str(tmp_path / "w"),
                                 "--config.batch_size=4"))
    assert "config file 'configs/nope.py' does not exist" in line


@pytest.mark.parametrize("missing", ["workdir", "config"])
def test_missing_required_flag(tmp_path, missing):
    args = {"config": ["--config", "configs/demo.py"], "workdir": ["--workdir", str(tmp_path)]}
    line = _one_error_line(_main(*[a for k, v in args.items() if k != missing for a in v]))
    assert f"--{missing} is required" in line


def test_unknown_flag(tmp_path):
    line = _one_error_line(_main("--config", "configs/demo.py", "--wrkdir", str(tmp_path)))
    assert "wrkdir" in line and "workdir" in line


def test_stray_argument(tmp_path):
    line = _one_error_line(_main("--config", "configs/demo.py", "--workdir",
                                 str(tmp_path / "w"), "batch_size=8"))
    assert "unexpected arguments 'batch_size=8'" in line


@pytest.mark.parametrize("sub", ["", "sub"])
def test_workdir_that_is_a_file(tmp_path, sub):
    f = tmp_path / "afile"
    f.write_text("x")
    line = _one_error_line(_main("--config", "configs/demo.py", "--workdir",
                                 str(f / sub) if sub else str(f)))
    assert str(f) in line and "not a folder" in line
    assert f.read_text() == "x"


def _read_only_prefix(folder):
    """A command prefix under which `folder` is read-only, for root too: a private mount
    namespace with `folder` bind-mounted read-only onto itself (chmod does not stop root).
    Non-root users without namespaces get plain permission bits instead."""
    if shutil.which("unshare"):
        cmd = ["unshare", "-rm", "sh", "-c",
               f"mount --bind -o ro '{folder}' '{folder}' && touch '{folder}/probe'"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 and "Read-only" in r.stderr:
            return ["unshare", "-rm", "sh", "-c",
                    f"mount --bind -o ro '{folder}' '{folder}' && exec \"$0\" \"$@\""]
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        return []
    pytest.skip("cannot make a read-only folder here (no unshare/mount namespace, root)")


def test_read_only_workdir_new_run(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    prefix = _read_only_prefix(str(parent))
    try:
        line = _one_error_line(_main("--config", "configs/demo.py", "--workdir",
                                     str(parent / "run"), prefix=prefix))
    finally:
        os.chmod(parent, 0o755)
    assert str(parent / "run") in line and "not writable" in line
    assert not (parent / "run").exists()


def test_read_only_workdir_evaluate_existing_run(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"batch_size": 8}))
    prefix = _read_only_prefix(str(run))
    try:
        line = _one_error_line(_main("--config", "configs/demo.py", "--workdir", str(run),
                                     "--config.mode=evaluate", prefix=prefix))
    finally:
        os.chmod(run, 0o755)
    assert str(run) in line and "not writable" in line
    assert json.loads((run / "config.json").read_text()) == {"batch_size": 8}


def test_check_workdir_reports_the_write_error(tmp_path, monkeypatch):
    """In-process, for machines where no read-only folder can be made: the check is a real
    write, so whatever the OS refuses (EROFS, EACCES) becomes the one line."""
    from csra_jax import cli_checks as cli

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(cli.tempfile, "TemporaryFile", refuse)
    with pytest.raises(ValueError, match=r"is not writable: Read-only file system"):
        cli.check_workdir(str(tmp_path))
    with pytest.raises(ValueError, match=r"its parent .* cannot be written"):
        cli.check_workdir(str(tmp_path / "new" / "run"))
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    assert cli.check_workdir(str(tmp_path / "new" / "run")) == str(tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()  # checking makes nothing


# ------------------------------------------------------------ data.build --set
@pytest.mark.parametrize("setting, words", [
    ("num_train=-5", ["num_train=-5", ">= 1"]),
    ("num_train=abc", ["num_train='abc'", "whole number"]),
    ("min_size=0.5", ["min_size", "max_size"]),
    ("bogus_field=1", ["bogus_field", "num_train"]),
])
def test_build_set_rejects_bad_fields(tmp_path, setting, words):
    line = _one_error_line(_run("csra_jax.data.build", "synthetic_shapes", "--data_dir",
                                str(tmp_path / "d"), "--set", setting))
    for w in words:
        assert w in line, line
    assert not (tmp_path / "d" / "synthetic_shapes").exists()


def test_build_set_on_a_dataset_without_config_fields(tmp_path):
    line = _one_error_line(_run("csra_jax.data.build", "voc2007", "--data_dir",
                                str(tmp_path / "d"), "--manual_dir", str(tmp_path),
                                "--set", "num_train=3"))
    assert "voc2007" in line and "num_train" in line


# ------------------------------------------------------------ predict: pixel limit
@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    from csra_jax import create_model
    from csra_jax.convert import save_converted
    from model_fixtures import random_variables
    kwargs = dict(arch="small_cnn", num_classes=3, head="csra", num_heads=1, lam=0.2)
    variables = random_variables(create_model(**kwargs), 32)
    return save_converted(str(tmp_path_factory.mktemp("conv") / "model"), variables, kwargs)


def _predict(capsys, *args):
    from csra_jax import predict
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = predict.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, [l for l in err.splitlines() if l.startswith("error: ")], caught


def test_predict_refuses_an_image_above_the_pixel_limit(tmp_path, capsys, monkeypatch,
                                                         small_model):
    from PIL import Image
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after
    big, small = tmp_path / "big.png", tmp_path / "small.png"
    Image.new("1", (10000, 10000)).save(big)  # 1 bit a pixel: a cheap 100 M pixel file
    Image.new("RGB", (40, 30), (200, 10, 10)).save(small)
    out = tmp_path / "preds.json"
    rc, stdout, errors, caught = _predict(capsys, "--checkpoint", small_model, "--image-size",
                                          32, "--output", out, big, small)
    assert rc == 1
    assert errors == [f"error: {big}: image too large: 100,000,000 pixels, above the limit of "
                      "89,478,485 (PIL's decompression-bomb guard; decoding takes about 3 "
                      "bytes a pixel); raise --max_image_pixels for a file you trust, or "
                      "downscale it"], errors
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    results = {os.path.basename(r["file"]): r for r in json.loads(out.read_text())}
    assert results["big.png"]["error"] == errors[0].split(": ", 2)[2]  # kept in the output
    assert "error" not in results["small.png"] and f"{small}:" in stdout


def test_predict_pixel_limit_is_a_flag(tmp_path, capsys, monkeypatch, small_model):
    from PIL import Image
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    img = tmp_path / "img.png"
    Image.new("RGB", (64, 64), (0, 90, 10)).save(img)  # 4096 pixels
    rc, _, errors, _ = _predict(capsys, "--checkpoint", small_model, "--image-size", 32,
                                "--max-image-pixels", 4000, img)
    assert rc == 1 and len(errors) == 1 and "4,096 pixels, above the limit of 4,000" in errors[0]
    rc, stdout, errors, _ = _predict(capsys, "--checkpoint", small_model, "--image-size", 32,
                                     "--max-image-pixels", 4096, img)
    assert rc == 0 and errors == [] and f"{img}:" in stdout


def test_predict_missing_config_file(tmp_path, capsys, small_model):
    rc, _, errors, _ = _predict(capsys, "--checkpoint", small_model, "--config",
                                tmp_path / "nope.py", tmp_path)
    assert rc == 2 and errors == [f"error: config file '{tmp_path / 'nope.py'}' does not exist."]
