"""One run per workdir: a second run exits 2 naming the holder; a dead holder's lock is
taken over with a message; only process 0 takes the lock."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from csra_jax.train import multihost
from csra_jax.train.run_lock import LOCK_FILE, RunLock, WorkdirLockedError

from repo_root import ROOT
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)

HOLD = ("import sys, time\n"
        "from csra_jax.train.run_lock import RunLock\n"
        "RunLock(sys.argv[1]).acquire()\n"
        "print('locked', flush=True)\n"
        "time.sleep(600)\n")


def _holder(workdir):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], stdout=subprocess.PIPE,
                            text=True, env=ENV, cwd=ROOT)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_run_exits_2_naming_the_holder_then_takes_over_a_dead_lock(tmp_path, capsys):
    workdir = tmp_path / "run"
    workdir.mkdir()
    first = _holder(workdir)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "csra_jax.main", "--config",
             os.path.join(ROOT, "configs/demo.py"), "--workdir", str(workdir)],
            capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
        assert second.returncode == 2, second.stderr[-2000:]
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"pid {first.pid} on host {socket.gethostname()}" in lines[0]
        assert "in use by another run" in lines[0] and LOCK_FILE in lines[0]
        assert not (workdir / "config.json").exists()  # the second run wrote nothing
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The holder died without releasing: its lock is stale and taken over, with a message.
    lock = RunLock(workdir).acquire()
    try:
        out = capsys.readouterr().out
        assert f"took over the lock of a run that is no longer running (pid {first.pid}" in out
        assert json.loads((workdir / LOCK_FILE).read_text())["pid"] == os.getpid()
    finally:
        lock.release()
    # A cleanly finished run leaves nothing to take over.
    RunLock(workdir).acquire().release()
    assert "took over" not in capsys.readouterr().out


def test_lock_file_without_flock_refuses_live_or_foreign_holders(tmp_path):
    """The path used where flock is unavailable (object stores): pid liveness decides."""
    path = tmp_path / LOCK_FILE
    host = socket.gethostname()
    for holder in ({"host": host, "pid": os.getppid()},       # alive here
                   {"host": "other-host", "pid": _dead_pid()}):  # cannot be checked
        path.write_text(json.dumps(holder))
        with pytest.raises(WorkdirLockedError, match=f"pid {holder['pid']} on host"):
            RunLock(tmp_path)._acquire_file()
    dead = _dead_pid()
    path.write_text(json.dumps({"host": host, "pid": dead}))
    lock = RunLock(tmp_path)
    lock._acquire_file()
    assert lock.taken_over["pid"] == dead
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not path.exists()


def test_only_process_0_takes_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(multihost, "is_main", lambda: False)
    lock = multihost.lock_workdir(str(tmp_path))
    assert not (tmp_path / LOCK_FILE).exists()
    lock.release()
    monkeypatch.setattr(multihost, "is_main", lambda: True)
    lock = multihost.lock_workdir(str(tmp_path))
    assert (tmp_path / LOCK_FILE).exists()
    second = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom csra_jax.train.run_lock import RunLock\n"
         "try:\n    RunLock(sys.argv[1]).acquire()\nexcept Exception as e:\n"
         "    print(e); sys.exit(3)\n", str(tmp_path)],
        capture_output=True, text=True, env=ENV, timeout=120)
    assert second.returncode == 3 and f"pid {os.getpid()} on host" in second.stdout
    lock.release()


def test_two_process_job_on_a_locked_workdir_fails_on_every_process(tmp_path):
    """jax.distributed over localhost: process 0 names the holder, process 1 fails with it
    instead of waiting in a collective."""
    worker = os.path.join(ROOT, "tests", "workers", "locked_run.py")
    workdir = tmp_path / "run"
    workdir.mkdir()
    holder = _holder(workdir)
    try:
        with socket.socket() as s:
            s.bind(("localhost", 0))
            port = str(s.getsockname()[1])
        env = dict(ENV, XLA_FLAGS="--xla_force_host_platform_device_count=2")
        procs = [subprocess.Popen([sys.executable, worker, str(workdir), str(tmp_path / "none"),
                                   "--process-id", str(i), "--num-processes", "2",
                                   "--port", port], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for i in range(2)]
        outs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert all(p.returncode == 0 for p in procs), outs
    assert f"locked-out: workdir {workdir} is in use by another run: pid {holder.pid}" in outs[0]
    assert "locked-out: process 0 could not lock the workdir" in outs[1], outs[1][-2000:]
