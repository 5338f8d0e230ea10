"""A ``gs://`` workdir, for real, against a local GCS emulator (gcp-storage-emulator)
started here: gcsfs (epath) and tensorstore (orbax) are pointed at it. A tiny run trains,
is interrupted (with the leftovers of a kill: an uncommitted step, the lock of a dead
process), resumes bit-identically to an uninterrupted run, and predicts, all in gs://.
The object lock's conditional writes are tested on tensorstore's in-memory store, which
enforces ``if_equal`` (the emulator ignores GCS preconditions)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from config_fixtures import tiny_config

emulator = pytest.importorskip("gcp_storage_emulator.server")
pytest.importorskip("gcsfs")

BUCKET = "csra-test"


def _report_generations():
    """GCS sends an object's generation (``x-goog-generation``) with its bytes; the
    emulator does not, and tensorstore's OCDBT (orbax's array store) needs it for its
    conditional manifest writes. This adds the header to the emulator's reads."""
    from gcp_storage_emulator import server
    from gcp_storage_emulator.handlers import objects

    def with_generation(read):
        def handler(request, response, storage, *args, **kwargs):
            params = request.params
            try:
                obj = storage.get_file_obj(params["bucket_name"], params["object_id"])
                response["x-goog-generation"] = str(obj["generation"])
            except Exception:  # pylint: disable=broad-except
                pass  # not found: the handler answers 404
            return read(request, response, storage, *args, **kwargs)
        handler.wrapped = True
        return handler
    for _, methods in server.HANDLERS:
        for method, fn in methods.items():
            if fn in (objects.download, objects.get) and not getattr(fn, "wrapped", False):
                methods[method] = with_generation(fn)


@pytest.fixture(scope="module")
def gcs():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _report_generations()
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    url = f"http://127.0.0.1:{port}"
    env = {"STORAGE_EMULATOR_HOST": url,            # gcsfs, google-cloud-storage
           "TENSORSTORE_GCS_HTTP_URL": url,          # tensorstore (orbax's arrays)
           "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test",  # tensorstore: no credential lookup
           "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}  # no bucket-layout RPC
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield f"gs://{BUCKET}"
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    import gc
    gc.collect()  # tensorboardX's GCS writers upload again when collected
    server.stop()


def _params(step_dir):
    import orbax.checkpoint as ocp
    from etils import epath
    from flax import traverse_util
    with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.restore(epath.Path(step_dir) / "state")
    return traverse_util.flatten_dict(tree["params"], sep="/")


def test_gs_workdir_trains_resumes_bit_identically_and_predicts(gcs, data_dir, cache_dir,
                                                                tmp_path, capsys):
    from csra_jax import predict
    from csra_jax.run import checksums
    from csra_jax.run.paths import RunDir, as_path
    from csra_jax.train import loop

    def config(**kw):
        kw = {"mode": "train", **kw}  # small_cnn: kilobytes a step through the emulator
        return tiny_config(data_dir, cache_dir, num_epochs=1, checkpoint_every_steps=2,
                           keep_checkpoints=2, **{"model.arch": "small_cnn"}, **kw)

    straight, resumed = f"{gcs}/straight", f"{gcs}/resumed"
    assert loop.run(config(), straight)["step"] == 6
    assert loop.run(config(max_steps=3), resumed)["step"] == 3
    root = as_path(resumed)
    # What a SIGKILL leaves: a step orbax did not commit, the lock of a dead process.
    half = root / "checkpoints" / "5"
    (half / "state").mkdir(parents=True)
    (half / "state" / "partial").write_text("cut short")
    root_lock = root / "run.lock"
    root_lock.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(),
                                     "since": 0, "renewed": 0}))
    capsys.readouterr()
    result = loop.run(config(), resumed)
    out = capsys.readouterr().out
    assert result["step"] == 6 and "resumed from step 3" in out
    assert "removed 1 unfinished save(s) of step(s) 5" in out and "took over the lock" in out
    assert not root_lock.exists()  # released at the end
    a, b = _params(f"{straight}/checkpoints/6"), _params(f"{resumed}/checkpoints/6")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert checksums.verify(root / "checkpoints" / "6") is None
    # Everything of the run is in the bucket.
    names = {p.name for p in root.iterdir()}
    assert {"config.json", "class_names.json", "metrics.jsonl", "tensorboard",
            "checkpoints"} <= names, names
    steps = [json.loads(l)["step"] for l in (root / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 3, 4, 6], steps  # the first run's lines kept
    assert list((root / "tensorboard").iterdir())
    # Predict from the gs:// workdir alone: config and class names come from the bucket.
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(images / "a.png")
    names = json.loads((root / "class_names.json").read_text())
    assert len(names) == 10
    output = tmp_path / "preds.json"
    assert predict.main(["--workdir", resumed, "--which", "latest", "--output", str(output),
                         "--top-k", "10", str(images)]) == 0
    saved = json.loads(output.read_text())
    assert sorted(x["class"] for x in saved[0]["top_k"]) == sorted(names)
    assert all(0.0 <= x["score"] <= 1.0 for x in saved[0]["top_k"])
    # evaluate mode: predictions and the AP table go to the bucket too.
    m = loop.run(config(mode="evaluate"), resumed)
    run = RunDir(resumed)
    with run.predictions(6).open("rb") as f:
        assert np.load(f)["logits"].shape == (20, 10)
    table = run.ap_table(6).read_text()
    assert 0.0 <= m["mAP"] <= 100.0 and names[0] in table and "mAP" in table


def test_second_run_on_a_gs_workdir_is_refused(gcs):
    from csra_jax.run.lock import RunLock, WorkdirLockedError
    workdir = f"{gcs}/locked"
    with RunLock(workdir):
        with pytest.raises(WorkdirLockedError, match=r"in use by another run: pid \d+"):
            RunLock(workdir).acquire()
    again = RunLock(workdir).acquire()  # released: free again
    again.release()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _memory_lock(context, me, **kw):
    import tensorstore as ts
    from csra_jax.run.object_lock import ObjectLock
    kv = ts.KvStore.open({"driver": "memory"}, context=context).result()
    return ObjectLock(kv, "run.lock", me, "mem://run.lock", **kw)


def test_object_lock_writes_only_over_the_generation_it_read():
    import tensorstore as ts
    from csra_jax.run.lock import WorkdirLockedError, _stale

    def refuse(holder):
        raise WorkdirLockedError(f"held by {holder.get('host')}")
    ctx = ts.Context()
    here = {"host": "h1", "pid": os.getpid(), "since": 0.0}
    first = _memory_lock(ctx, here, renew_s=0.05)
    assert first.acquire(refuse, _stale) is None
    other = {"host": "h2", "pid": 1, "since": 0.0}
    with pytest.raises(WorkdirLockedError, match="held by h1"):  # live and renewed
        _memory_lock(ctx, other).acquire(refuse, _stale)
    import time
    g = first.generation
    time.sleep(0.3)
    assert first.generation != g  # the holder renews over its own generation
    first.release()
    # A lock from another host that was not renewed for a lease is taken over.
    late = _memory_lock(ctx, other, lease_s=0.0)
    stale_holder = {"host": "h3", "pid": 7, "since": 0.0, "renewed": 0.0}
    late.kv.write("run.lock", json.dumps(stale_holder).encode()).result()
    assert late.acquire(refuse, _stale)["host"] == "h3"
    # A write over a generation that changed meanwhile does not happen.
    late.kv.write("run.lock", b'{"host": "h4", "pid": 9, "renewed": 1e18}').result()
    assert late._write_over(late.generation) is False
    assert json.loads(late.kv.read("run.lock").result().value)["host"] == "h4"
    late._stop.set()
    late.release()  # not ours any more: left alone
    assert json.loads(late.kv.read("run.lock").result().value)["host"] == "h4"
