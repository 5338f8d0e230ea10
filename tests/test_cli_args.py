"""Every command line tool spells its flags --snake_case, accepts --hyphen-ated as an
alias, lists one name per flag in --help and names itself as users type it."""

import os
import subprocess
import sys

import pytest

from csra_jax import cli_args
from csra_jax.convert import __main__ as convert_cli
from csra_jax.data import build as build_cli
from csra_jax import predict as predict_cli

from repo_root import ROOT


def _help(fn, capsys):
    with pytest.raises(SystemExit) as e:
        fn(["--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("module,fn", [
    ("csra_jax.predict", lambda a: predict_cli.parse_args(a)),
    ("csra_jax.convert", lambda a: convert_cli.parse_args(a)),
    ("csra_jax.data.build", lambda a: build_cli.main(a)),
])
def test_help_names_the_module_and_one_spelling(module, fn, capsys):
    text = _help(fn, capsys)
    assert text.startswith(f"usage: python -m {module} ")
    listed = text.replace(cli_args.ALIAS_NOTE, "")
    flags = [w.strip("[],") for w in listed.split() if w.startswith(("--", "[--"))]
    flags = [f.lstrip("[") for f in flags]
    assert flags and all("-" not in f[2:].split("=")[0] for f in flags), flags
    assert cli_args.ALIAS_NOTE in text


def test_predict_accepts_both_spellings():
    snake, _ = predict_cli.parse_args(["--workdir", "w", "--top_k", "3", "--class_names=n.txt",
                                       "--max_image_pixels", "0", "a.jpg"])
    hyphen, _ = predict_cli.parse_args(["--workdir", "w", "--top-k", "3", "--class-names=n.txt",
                                        "--max-image-pixels", "0", "a.jpg"])
    assert vars(snake) == vars(hyphen)
    assert (snake.top_k, snake.class_names, snake.max_image_pixels) == (3, "n.txt", 0)


def test_predict_config_overrides_are_respelt():
    _, overrides = predict_cli.parse_args(["--workdir", "w", "--config", "c.py",
                                           "--config.data.image-size=64", "a.jpg"])
    assert overrides == ["--config.data.image_size=64"]


def test_values_and_positionals_are_left_alone():
    args, _ = predict_cli.parse_args(["--workdir", "my-run", "--output=out-file.json",
                                      "--", "--odd-name.jpg"])
    assert (args.workdir, args.output, args.inputs) == ("my-run", "out-file.json",
                                                        ["--odd-name.jpg"])


def test_convert_spellings_and_old_img_size():
    base = ["--source", "torchvision", "--arch", "resnet18", "in.pth", "out"]
    for extra in (["--num_classes", "5", "--image_size", "224"],
                  ["--num-classes", "5", "--image-size", "224"],
                  ["--num-classes", "5", "--img-size", "224"],
                  ["--num_classes", "5", "--img_size=224"]):
        args = convert_cli.parse_args(base + extra)
        assert (args.num_classes, args.image_size) == (5, 224), extra
    assert convert_cli.parse_args(base + ["--num_classes", "5"]).image_size == 448


def test_unknown_flags_still_fail(capsys):
    with pytest.raises(SystemExit) as e:
        predict_cli.parse_args(["--workdir", "w", "--top-kk", "3", "a.jpg"])
    assert e.value.code == 2
    assert "--top-kk" in capsys.readouterr().err


def test_build_accepts_hyphenated_data_dir(tmp_path, capsys):
    # A bad --set value fails before any build: the flags themselves were understood.
    code = build_cli.main(["synthetic_shapes", "--data-dir", str(tmp_path),
                           "--set", "no_such_field=1"])
    assert code == 2
    assert "no config field 'no_such_field'" in capsys.readouterr().err


def _main(*args):
    return subprocess.run([sys.executable, "-m", "csra_jax.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": ROOT})


def test_main_help_names_the_module():
    out = _main("--help")  # absl exits 1 after --help
    assert "\npython -m csra_jax.main:\n" in out.stdout and "main.py:" not in out.stdout


def test_main_config_fields_accept_hyphens(tmp_path):
    outs = [_main("--config", "configs/demo.py", "--workdir", str(tmp_path / "w"),
                  f"--config.{name}=abc") for name in ("batch_size", "batch-size")]
    assert [o.returncode for o in outs] == [2, 2]
    lines = [o.stderr.strip().splitlines()[-1] for o in outs]
    assert lines[0] == lines[1] and lines[0].startswith("error: --config.batch_size=abc: ")
