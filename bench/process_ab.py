"""A/B of settings that hold for a whole process: ``XLA_FLAGS`` and the source tree.

  python bench/process_ab.py --variants "concurrency=--xla_cpu_enable_concurrency_optimized_scheduler=true,default="
  python bench/process_ab.py --arch resnet101 --size 448 --batch 4 --steps 3 --rounds 3
  python bench/process_ab.py --trees before=/tmp/base_checkout,after=.   # two checkouts
  python bench/process_ab.py --envs "system=,kept=CSRA_JAX_HOST_HEAP=kept"     # environment
  python bench/process_ab.py --quick                                   # smoke, < 1 minute

Children import bench/common.py, which sets what ``python -m csra_jax.main`` sets
(``csra_jax.xla_flags``: XLA:CPU's memory-minimising scheduler) unless ``XLA_FLAGS``
already names that flag; ``...=true`` in a variant restores XLA's default scheduler.

XLA reads ``XLA_FLAGS`` once, when the backend starts, so two flag settings cannot be
compared inside one process as ``conv_impl_ab.py`` compares implementations. Here every
variant runs in its own subprocess, ``--rounds`` times, the order rotating each round so
that drifts in the machine's load hit every variant alike. Each child compiles the
library's train step (``make_train_step``, paper SGD, donated state) on a fixed
device-resident batch, runs one untimed step and ``--steps`` timed ones, and reports:
XLA's buffer plan of the compiled step (``memory_analysis()`` temp bytes: activations and
scratch), the process's peak RSS, the compile time, the median train step time, the
minor page faults per timed train step (``ru_minflt``) and the median time of the eval
step (``make_eval_step``) on the same batch. The parent
prints each variant's medians over rounds and the median per-round ratio to the first
variant (< 1: faster / smaller).

A variant is ``name=FLAGS`` (``--variants``: appended to any ``XLA_FLAGS`` already set)
or ``name=PATH`` (``--trees``: the ``csra_jax`` package is imported from that checkout,
e.g. a ``git worktree`` of an earlier commit) or ``name=KEY=VALUE;KEY=VALUE`` (``--envs``:
environment variables of the child, e.g. ``CSRA_JAX_HOST_HEAP=kept`` for the heap that
keeps freed memory mapped, see ``csra_jax.host_heap``); the lists combine as a product.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--arch", default="small_cnn")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--num_classes", type=int, default=80)
    p.add_argument("--head", default="csra")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--variants", default="default=",
                   help="comma-separated name=XLA_FLAGS (empty: none added)")
    p.add_argument("--trees", default="",
                   help="comma-separated name=PATH of checkouts to import csra_jax from "
                        "(default: this one)")
    p.add_argument("--envs", default="",
                   help="comma-separated name=KEY=VALUE;KEY=VALUE environments of the child "
                        "(empty after name=: none added)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per child")
    p.add_argument("--rounds", type=int, default=3, help="children per variant")
    p.add_argument("--quick", action="store_true", help="smoke: small_cnn@32 b4")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.quick:
        a.arch, a.size, a.batch, a.steps, a.rounds = "small_cnn", 32, 4, 2, 1
        if a.variants == "default=":
            a.variants = "concurrency=--xla_cpu_enable_concurrency_optimized_scheduler=true,default="
    return a


def _pairs(text: str, what: str):
    out = []
    for item in [s for s in text.split(",") if s.strip()]:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"{what}: {item!r} is not name=value")
        out.append((name.strip(), value.strip()))
    return out


def _env(text: str) -> dict:
    """'A=1;B=2' -> {'A': '1', 'B': '2'}; '' -> {}."""
    out = {}
    for item in [s for s in text.split(";") if s.strip()]:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--envs: {item!r} is not KEY=VALUE")
        out[key.strip()] = value
    return out


def child(a) -> None:
    """One variant, one process: compile, warm up, time; prints one JSON line."""
    # Import csra_jax from the chosen checkout (default: this one) before bench/common
    # adds this one to sys.path.
    sys.path.insert(0, os.path.abspath(a.child or os.path.dirname(_HERE)))
    import csra_jax  # noqa: F401  (binds the package to the chosen tree)
    sys.path.insert(0, _HERE)
    import common  # bench/common.py

    mesh = common.steps_lib.make_mesh()
    model = common.make_model(a.arch, a.num_classes, a.head, 1, a.size, common.DTYPES[a.dtype])
    variables = common.init_variables(model, a.size)
    batch = common.synthetic_batch(a.batch, a.size, a.num_classes, mesh)
    evaluate, _, _ = common.build_eval(model, variables, mesh, batch)
    common.timed(evaluate)
    eval_times = [common.timed(evaluate) for _ in range(a.steps)]
    runner, compile_s, _ = common.build_train(model, variables, mesh, batch)
    del variables, evaluate
    temp = runner.compiled.memory_analysis().temp_size_in_bytes
    common.timed(runner)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = [common.timed(runner) for _ in range(a.steps)]
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / max(a.steps, 1)
    print("RESULT " + json.dumps({
        "package": os.path.dirname(csra_jax.__file__), "temp_gib": temp / 2 ** 30,
        "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
        "compile_s": compile_s, "faults": faults, "step_s": statistics.median(times),
        "eval_s": statistics.median(eval_times)}), flush=True)


def main(argv=None) -> None:
    a = parse_args(argv)
    if a.child is not None:
        return child(a)
    flags = _pairs(a.variants, "--variants")
    trees = _pairs(a.trees, "--trees") or [("", "")]
    envs = [(n, _env(v)) for n, v in _pairs(a.envs, "--envs")] or [("", {})]
    variants = [("/".join(n for n in (fn, tn, en) if n), fv, tv, ev)
                for fn, fv in flags for tn, tv in trees for en, ev in envs]
    base_flags = os.environ.get("XLA_FLAGS", "")
    print(f"# {a.arch}@{a.size} batch {a.batch} {a.dtype}, train step, {a.steps} timed "
          f"steps per child, {a.rounds} rounds; XLA_FLAGS before: {base_flags or '(none)'}")
    results = {name: [] for name, *_ in variants}
    for r in range(a.rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for name, fv, tv, ev in order:
            env = dict(os.environ, XLA_FLAGS=" ".join(f for f in (base_flags, fv) if f), **ev)
            cmd = [sys.executable, os.path.abspath(__file__), "--child", tv or "",
                   "--arch", a.arch, "--size", str(a.size), "--batch", str(a.batch),
                   "--num_classes", str(a.num_classes), "--head", a.head,
                   "--dtype", a.dtype, "--steps", str(a.steps)]
            t0 = time.perf_counter()
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
            if out.returncode or not line:
                sys.stderr.write(out.stderr[-3000:])
                raise SystemExit(f"variant {name!r} failed (rc {out.returncode})")
            res = json.loads(line[0][len("RESULT "):])
            results[name].append(res)
            print(f"# round {r + 1} {name}: step {res['step_s']:.3f}s "
                  f"({res['faults']:.0f} page faults), eval "
                  f"{res['eval_s']:.3f}s, temp "
                  f"{res['temp_gib']:.3f} GiB, RSS {res['rss_gib']:.2f} GiB, compile "
                  f"{res['compile_s']:.1f}s ({time.perf_counter() - t0:.0f}s, "
                  f"{res['package']})", flush=True)
    base = variants[0][0]
    med = lambda name, key: statistics.median(x[key] for x in results[name])
    ratio = lambda name, key: statistics.median(
        x[key] / b[key] for x, b in zip(results[name], results[base]))
    print("| variant | train step s | ratio | page faults / step | eval step s | ratio | "
          "temp GiB | ratio | peak RSS GiB | compile s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, *_ in variants:
        print(f"| {name} | {med(name, 'step_s'):.3f} | {ratio(name, 'step_s'):.3f} | "
              f"{med(name, 'faults'):.0f} | "
              f"{med(name, 'eval_s'):.3f} | {ratio(name, 'eval_s'):.3f} | "
              f"{med(name, 'temp_gib'):.3f} | {ratio(name, 'temp_gib'):.3f} | "
              f"{med(name, 'rss_gib'):.2f} | {med(name, 'compile_s'):.1f} |")


if __name__ == "__main__":
    main()
