"""The same train step on 1 device, 8 simulated devices and 2 processes (x2 devices each,
jax.distributed over localhost) reaches the same parameters on the same global batch."""

import os
import socket
import subprocess
import sys

import numpy as np

from repo_root import ROOT

WORKER = os.path.join(ROOT, "tests", "workers", "sharded_train.py")


def _env(devices):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run(args, devices, timeout=300):
    return subprocess.Popen([sys.executable, WORKER, *args], env=_env(devices),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(proc, timeout=300):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def _compare(ref, other):
    assert int(other["devices"]) != int(ref["devices"])
    np.testing.assert_allclose(other["loss"], ref["loss"], rtol=1e-5)
    for key in ref.files:
        if key.startswith(("params/", "batch_stats/")):
            np.testing.assert_allclose(other[key], ref[key], rtol=1e-3, atol=1e-5, err_msg=key)


def test_one_device_eight_devices_and_two_processes_agree(tmp_path):
    one, eight, two = (str(tmp_path / f"{n}.npz") for n in ("one", "eight", "two"))
    _wait(_run([one], 1))
    _wait(_run([eight], 8))
    port = str(_free_port())
    procs = [_run([two, "--process-id", str(i), "--num-processes", "2", "--port", port], 2)
             for i in range(2)]
    outs = [_wait(p) for p in procs]
    assert "done 1 4" in outs[1]
    ref = np.load(one)
    # The steps really trained: the first conv moved by far more than the tolerance.
    assert np.abs(ref["params/backbone/conv1/kernel"] - ref["init_conv1"]).max() > 1e-3
    assert int(np.load(eight)["devices"]) == 8 and int(np.load(two)["devices"]) == 4
    _compare(ref, np.load(eight))
    _compare(ref, np.load(two))
