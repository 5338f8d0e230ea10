"""A full disk (a real one: a small tmpfs, so root is needed) ends in one line naming the
path and the space, exit 2: during a save, at start-up, and when rerunning a finished
run. The saved steps stay intact, and a rerun with space resumes bit-identically."""

import os
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util

from csra_jax.train import checksums

from repo_root import ROOT


@pytest.fixture
def disk(tmp_path):
    """A 6 MiB file system: two small_cnn checkpoints fit, the third does not."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _cli(workdir, data_dir, cache_dir):
    args = [sys.executable, "-m", "csra_jax.main", "--config",
            os.path.join(ROOT, "configs/demo.py"), "--workdir", str(workdir),
            f"--config.data.data_dir={data_dir}", "--config.data.builder_config=tiny",
            "--config.data.image_size=32", "--config.batch_size=8", "--config.eval_batch_size=8",
            "--config.num_epochs=2", "--config.model.arch=small_cnn", "--config.mode=train",
            "--config.checkpoint_every_steps=2", "--config.log_every_steps=2",
            f"--config.compilation_cache_dir={cache_dir}"]
    return subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT))


def _one_error_line(proc, path):
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output and "RESOURCE_EXHAUSTED" not in output, output[-3000:]
    errors = [l for l in output.splitlines() if "error" in l.lower()]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"error: no space left on the disk of {path}"), errors[0]
    assert "free" in errors[0] and "rerun the same command to resume" in errors[0]
    return errors[0]


def _params(step_dir):
    with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.restore(os.path.join(step_dir, "state"))
    return traverse_util.flatten_dict(tree["params"], sep="/")


def test_full_disk_during_save_at_startup_and_on_a_finished_run(disk, tmp_path, data_dir):
    cache = str(tmp_path / "cache")
    straight = tmp_path / "straight"
    assert _cli(straight, data_dir, cache).returncode == 0

    workdir = disk / "run"
    line = _one_error_line(_cli(workdir, data_dir, cache), workdir)
    assert "a checkpoint needs about" in line
    saved = sorted(int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit())
    assert saved and max(saved) < 12
    for step in saved:  # what was committed is whole
        assert checksums.verify(workdir / "checkpoints" / str(step)) is None

    # With space again the same command resumes and ends with the same bits.
    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
    proc = _cli(workdir, data_dir, cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _params(straight / "checkpoints" / "12"), _params(workdir / "checkpoints" / "12")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)

    # The disk fills up: rerunning the finished run, and starting a new one.
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
        except OSError:
            pass
    _one_error_line(_cli(workdir, data_dir, cache), workdir)
    _one_error_line(_cli(disk / "new_run", data_dir, cache), disk / "new_run")


def test_enospc_of_any_write_or_save_thread_is_recognised(tmp_path, monkeypatch, data_dir):
    """Without root: our own write failing with ENOSPC, and orbax's text-only error."""
    import errno
    from csra_jax.train import disk_space, loop, resume_check
    from config_fixtures import tiny_config
    target = str(tmp_path / "run" / "config.json.tmp")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", target)
    monkeypatch.setattr(resume_check, "write_run_config", full)
    with pytest.raises(disk_space.DiskFullError,
                       match=f"no space left on the disk of {target} \\(.* free\\)"):
        loop.run(tiny_config(data_dir, str(tmp_path / "cache")), str(tmp_path / "run"))
    orbax_error = ValueError('RESOURCE_EXHAUSTED: Error writing "params" in OCDBT database: '
                             "Failed to write 580342 bytes to file 20: No space left on device "
                             "[os_error_code='28']")
    assert disk_space.is_disk_full(RuntimeError("save failed").with_traceback(None)) is False
    wrapped = RuntimeError("save failed")
    wrapped.__cause__ = orbax_error
    assert disk_space.is_disk_full(wrapped)


def _abandoned_task_logs(error, caplog):
    """What asyncio logs when a failed task nobody awaited is collected, as when orbax
    gives up a save while one of its write tasks has already failed."""
    import asyncio
    import gc

    async def write():
        raise error

    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(write())
        loop.run_until_complete(asyncio.sleep(0))
        assert task.done()
        caplog.clear()
        del task
        gc.collect()
    finally:
        loop.close()
    return [r for r in caplog.records if r.name == "asyncio"]


def test_an_abandoned_save_task_that_hit_a_full_disk_is_not_logged(caplog):
    import errno
    from csra_jax.train import disk_space
    disk_space.quiet_disk_full_logs()
    full = ValueError("RESOURCE_EXHAUSTED: Failed to write 425226 bytes to file 10: "
                      "No space left on device [os_error_code='28']")
    assert _abandoned_task_logs(full, caplog) == []
    assert _abandoned_task_logs(OSError(errno.ENOSPC, "No space left on device"), caplog) == []
    # Any other failure of such a task is still reported.
    other = _abandoned_task_logs(ValueError("a real bug"), caplog)
    assert len(other) == 1 and "never retrieved" in other[0].getMessage()
