"""Images/s of the jitted train step and of evaluation, plus compile times.

  python bench/train_throughput.py                     # resnet101@448, vit_b16@224; fp32, bf16
  python bench/train_throughput.py --archs vit_b16 --dtypes bfloat16 --batch 16
  python bench/train_throughput.py --with-data         # also: grain pipeline vs device batch
  python bench/train_throughput.py --quick             # smoke: resnet18@64, < 1 minute

Times the library's own steps: `make_train_step` (paper two-group SGD, donated state,
batch sharded over the `data` mesh) and `make_eval_step`, compiled ahead of time
(compile time reported separately), fed a fixed device-resident batch; steady-state
medians after warm-up, each call blocked with block_until_ready. The model is
backbone + CSRA head (`--num_heads`, default 1; 80 classes, COCO).

`--with-data` builds a small synthetic_shapes dataset (ArrayRecord, generated at the
model's resolution, in a temporary directory) and feeds the same train step from the
real grain train iterator (`csra_jax.data.create_train_iterator`, decode + random
resized crop + flip + normalise + placement on the mesh), alternating step by step with
the fixed device batch; it reports both step times and the gap (target < 5%), and the
pipeline's own images/s with no model running. In that mode the model has the
dataset's 10 classes.
"""

from __future__ import annotations

import gc
import tempfile
import time

import common  # bench/common.py (sets up sys.path for csra_jax)
from common import log

from csra_jax.models.registry import backbone_spec  # noqa: E402  (after common's sys.path)


def parse_args(argv=None):
    p = common.doc_parser(__doc__)
    p.add_argument("--archs", default="resnet101,vit_b16")
    p.add_argument("--dtypes", default="float32,bfloat16",
                   help="comma-separated computation dtypes (float32, bfloat16)")
    p.add_argument("--size", type=int, default=None,
                   help="image size for every arch (default 448 for ResNets, 224 for vit_b16)")
    p.add_argument("--batch", type=int, default=None,
                   help="batch size (default on CPU: 4 at 448, 8 at 224; accelerators: 32/128)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed train steps (default 3 on CPU, 20 elsewhere)")
    p.add_argument("--eval_repeats", type=int, default=None,
                   help="timed eval steps (default 2 x repeats)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps after compiling")
    p.add_argument("--num_heads", type=int, default=1)
    p.add_argument("--num_classes", type=int, default=80)
    p.add_argument("--with-data", "--with_data", dest="with_data", action="store_true",
                   help="also time the train step fed by the real grain pipeline")
    p.add_argument("--data_workers", type=int, default=0,
                   help="grain worker processes for --with-data (0: read threads in-process)")
    p.add_argument("--num_train", type=int, default=256,
                   help="synthetic_shapes train images to build for --with-data")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: resnet18 at 64 px, batch 2, float32, 2 steps")
    a = p.parse_args(argv)
    if a.quick:
        a.archs, a.size, a.dtypes = "resnet18", a.size or 64, "float32"
        a.batch, a.repeats = a.batch or 2, a.repeats or 2
        a.num_train = min(a.num_train, 32)
    a.repeats = a.repeats or (3 if common.on_cpu() else 20)
    a.eval_repeats = a.eval_repeats or 2 * a.repeats
    return a


def build_data(size: int, num_train: int, tmp: str) -> str:
    from csra_jax import data as data_lib
    t0 = time.perf_counter()
    data_lib.build_dataset("synthetic_shapes", tmp, config_name="bench", image_size=size,
                           num_train=num_train, num_test=8)
    log(f"  built synthetic_shapes ({num_train} images, {size}px) in "
        f"{time.perf_counter() - t0:.1f}s")
    return tmp


def pipeline_ips(it, batch: int, steps: int) -> float:
    for _ in range(2):
        common.block(next(it))
    t0 = time.perf_counter()
    for _ in range(steps):
        common.block(next(it))
    return steps * batch / (time.perf_counter() - t0)


def run(arch: str, dtype_name: str, a, data_dir) -> dict:
    size = a.size or common.default_size(arch)
    batch = a.batch or common.default_batch(size)
    mesh = common.steps_lib.make_mesh()
    num_classes = 10 if a.with_data else a.num_classes
    model = common.make_model(arch, num_classes, "csra", a.num_heads, size,
                              common.DTYPES[dtype_name])
    log(f"{arch}@{size} batch {batch} {dtype_name} csra H={a.num_heads} C={num_classes}")
    variables = common.init_variables(model, size)
    fixed = common.synthetic_batch(batch, size, num_classes, mesh)
    r = dict(model=f"{arch}@{size}", dtype=dtype_name, batch=batch)

    ev, r["eval_compile"], _ = common.build_eval(model, variables, mesh, fixed)
    log(f"  eval compiled in {r['eval_compile']:.1f}s")
    ts = common.interleaved({"eval": ev}, a.eval_repeats, a.warmup, log)["eval"]
    r["eval_ips"], r["eval_spread"] = batch / common.median(ts), common.spread(ts)
    del ev
    gc.collect()

    tr, r["train_compile"], _ = common.build_train(model, variables, mesh, fixed)
    log(f"  train compiled in {r['train_compile']:.1f}s")
    fns = {"device batch": tr}
    if a.with_data:
        from csra_jax import data as data_lib
        data_lib.ensure_absl_flags_parsed()
        spec = data_lib.InputSpec(size, backbone_spec(arch).normalization)
        it = data_lib.create_train_iterator(
            "synthetic_shapes", data_dir, spec, config="bench", global_batch_size=batch,
            num_workers=a.data_workers, mesh=mesh)
        r["pipeline_ips"] = pipeline_ips(it, batch, max(10, 2 * a.repeats))
        log(f"  pipeline alone: {r['pipeline_ips']:.1f} images/s")
        fns["grain pipeline"] = lambda: tr(next(it))
    times = common.interleaved(fns, a.repeats, a.warmup, log)
    ts = times["device batch"]
    r["train_ips"], r["train_spread"] = batch / common.median(ts), common.spread(ts)
    if a.with_data:
        td = times["grain pipeline"]
        r["data_ips"] = batch / common.median(td)
        r["data_gap"] = 100 * (common.median(td) / common.median(ts) - 1)
    if int(tr.state.nonfinite):
        log("  warning: the train step reported non-finite values")
    r["device"] = common.device_kind()
    del tr, fns
    gc.collect()
    return r


def main(argv=None):
    a = parse_args(argv)
    log(common.describe_machine())
    header = ["model", "dtype", "batch", "train img/s", "eval img/s", "train compile s",
              "eval compile s", "backend/device kind", "train spread", "eval spread"]
    print(f"# train / eval throughput ({common.describe_machine()})")
    print(f"# CSRA H={a.num_heads}; medians of {a.repeats} train / {a.eval_repeats} eval steps "
          f"after {a.warmup} warm-up; 'spread' = (max - min) / median of step times")
    print(common.markdown_table(header, []), flush=True)
    results, failed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        built = {}
        for arch in common.csv_list(a.archs):
            size = a.size or common.default_size(arch)
            data_dir = None
            if a.with_data:
                if size not in built:
                    built[size] = build_data(size, a.num_train, f"{tmp}/{size}")
                data_dir = built[size]
            for dtype_name in common.csv_list(a.dtypes):
                try:
                    r = run(arch, dtype_name, a, data_dir)
                except Exception as e:  # pylint: disable=broad-except
                    log(f"{arch} {dtype_name} failed: {type(e).__name__}: {e}")
                    failed.append(f"{arch}/{dtype_name}")
                    continue
                finally:
                    gc.collect()
                results.append(r)
                print(f"| {r['model']} | {r['dtype']} | {r['batch']} | {r['train_ips']:.2f} | "
                      f"{r['eval_ips']:.2f} | {r['train_compile']:.1f} | {r['eval_compile']:.1f} | "
                      f"{r['device']} | {r['train_spread']} | {r['eval_spread']} |", flush=True)
    if a.with_data and results:
        print(f"\n# --with-data: grain synthetic_shapes pipeline ({a.data_workers} workers) vs "
              "fixed device batch, steps alternated; gap target < 5%")
        print(common.markdown_table(
            ["model", "dtype", "batch", "device-batch img/s", "grain-fed img/s", "gap",
             "pipeline alone img/s"],
            [[r["model"], r["dtype"], r["batch"], f"{r['train_ips']:.2f}",
              f"{r['data_ips']:.2f}", f"{r['data_gap']:+.1f}%", f"{r['pipeline_ips']:.1f}"]
             for r in results]))
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")

if __name__ == "__main__":
    main()
