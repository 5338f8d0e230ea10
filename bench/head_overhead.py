"""Cost of the CSRA and attend-and-rectify heads over the GAP baseline: eval forward and
train step time.

  python bench/head_overhead.py                       # resnet101@448 and vit_b16@224
  python bench/head_overhead.py --archs resnet101 --batch 8 --repeats 5
  python bench/head_overhead.py --archs mobilenet_v2,efficientnet_b3 --no_attend_rectify
  python bench/head_overhead.py --quick               # smoke: resnet18@64, < 1 minute

For each arch, the same backbone with head gap, csra H=1, csra H=8 and attend_rectify
(depth 3, K=2; 80 classes, COCO) is timed through the library's own jitted steps
(`make_eval_step`, and `make_train_step` with the paper's two-group SGD; state donated,
sharded over a `data` mesh). Everything
is compiled ahead of time (compile time is reported per variant), then each timed round
calls every variant once in rotating order, so background load hits all variants
alike; the table reports medians and the overhead of each head relative to gap. The
XLA FLOP estimate of each compiled step is printed too (a noise-free view of the head's
cost). Target (issue Core): <= 1% train step and <= 2% eval at H=8; the paper reports
0.8% train / 8% test overhead. The attend-and-rectify head is also compared with the
largest CSRA variant (a line after each arch's rows).
"""

from __future__ import annotations

import gc

import common  # bench/common.py (sets up sys.path for csra_jax)
from common import log

import jax
import jax.numpy as jnp
import numpy as np


def head_fns(model, variables, images):
    """Jitted (eval, train) functions of the head alone on the backbone's output (feature
    map, or stage outputs for attend-and-rectify): eval = head forward; train = forward +
    gradients w.r.t. head params and features (what the head adds to a train step).
    Returns (eval_fn, train_fn), argument-free."""
    backbone_vars = {k: v["backbone"] for k, v in variables.items() if "backbone" in v}
    feat = jax.eval_shape(lambda v, x: model.backbone.apply(v, x, train=False),
                          backbone_vars, images)
    rng = np.random.default_rng(0)
    x = jax.tree.map(lambda f: jnp.asarray(rng.standard_normal(f.shape), f.dtype), feat)
    head_vars = {k: v["head"] for k, v in variables.items() if "head" in v}
    apply = lambda p, f: model.head.apply({**head_vars, "params": p}, f)
    fwd = jax.jit(apply)
    grad = jax.jit(jax.grad(lambda p, f: jnp.sum(apply(p, f)), argnums=(0, 1)))
    hp = variables["params"]["head"]
    return (lambda: fwd(hp, x)), (lambda: grad(hp, x))


def paired(ts, base):
    """Median over rounds of (variant / gap - 1) within the same round, in percent: robust
    to load that changes between rounds (both calls of a round see similar load)."""
    return 100 * common.median([t / b - 1 for t, b in zip(ts, base)])


def parse_args(argv=None):
    p = common.doc_parser(__doc__)
    p.add_argument("--archs", default="resnet101,vit_b16",
                   help="comma-separated archs (default resnet101,vit_b16)")
    p.add_argument("--size", type=int, default=None,
                   help="image size for every arch (default 448 for ResNets, 224 for vit_b16)")
    p.add_argument("--batch", type=int, default=None,
                   help="batch size (default on CPU: 4 at 448, 8 at 224; accelerators: 32/128)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed train rounds (default 3 on CPU, 20 elsewhere)")
    p.add_argument("--eval_repeats", type=int, default=None,
                   help="timed eval rounds (default 2 x repeats)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds after compiling")
    p.add_argument("--dtype", default="float32", choices=sorted(common.DTYPES))
    p.add_argument("--num_heads", default="1,8", help="CSRA head counts to compare with gap")
    p.add_argument("--no_attend_rectify", action="store_true",
                   help="skip the attend-and-rectify head")
    p.add_argument("--num_classes", type=int, default=80)
    p.add_argument("--head_repeats", type=int, default=50,
                   help="timed calls of the head alone (on the backbone's feature map)")
    p.add_argument("--no_train", action="store_true", help="time eval only")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: resnet18 at 64 px, batch 2, 2 rounds")
    a = p.parse_args(argv)
    if a.quick:
        a.archs, a.size = "resnet18", a.size or 64
        a.batch, a.repeats = a.batch or 2, a.repeats or 2
        a.num_heads = "8"  # gap vs H=8 only: each train compile is ~10 s on 2 cores
    a.repeats = a.repeats or (3 if common.on_cpu() else 20)
    a.eval_repeats = a.eval_repeats or 2 * a.repeats
    return a


def run_arch(arch: str, a) -> list:
    size = a.size or common.default_size(arch)
    batch = a.batch or common.default_batch(size)
    dtype = common.DTYPES[a.dtype]
    mesh = common.steps_lib.make_mesh()
    variants = {"gap": ("gap", 1)}
    variants.update({f"csra H={h}": ("csra", h) for h in map(int, common.csv_list(a.num_heads))})
    if not a.no_attend_rectify:
        variants["attend_rectify"] = ("attend_rectify", 1)
    log(f"{arch}@{size} batch {batch} {a.dtype}: variants {list(variants)}")
    data = common.synthetic_batch(batch, size, a.num_classes, mesh)
    models, variables = {}, {}
    for name, (head, h) in variants.items():
        models[name] = common.make_model(arch, a.num_classes, head, h, size, dtype)
        variables[name] = common.init_variables(models[name], size)
        # Same backbone weights for every variant (not needed for speed, but tidy).
        if name != "gap":
            variables[name] = {**variables[name], "params": {
                **variables[name]["params"], "backbone": variables["gap"]["params"]["backbone"]}}
    res = {n: {} for n in variants}

    # The head alone, many short calls: a low-noise view of what it adds.
    heads = {n: head_fns(models[n], variables[n], data["image"]) for n in variants}
    for i, kind in enumerate(("head_eval_s", "head_train_s")):
        times = common.interleaved({n: f[i] for n, f in heads.items()}, a.head_repeats,
                                   warmup=2)
        for name, ts in times.items():
            res[name][kind] = common.median(ts)
    log("  head alone (ms, eval / train): " + ", ".join(
        f"{n} {1e3 * res[n]['head_eval_s']:.2f} / {1e3 * res[n]['head_train_s']:.2f}"
        for n in variants))

    evals = {}
    for name in variants:
        runner, secs, flops = common.build_eval(models[name], variables[name], mesh, data)
        evals[name] = runner
        res[name].update(eval_compile=secs, eval_flops=flops)
        log(f"  eval compiled {name}: {secs:.1f}s, {flops and flops / 1e9:.1f} GFLOP")
    times = common.interleaved(evals, a.eval_repeats, a.warmup, log)
    for name, ts in times.items():
        res[name].update(eval_s=common.median(ts), eval_spread=common.spread(ts),
                         eval_paired=paired(ts, times["gap"]))
    del evals
    gc.collect()

    if not a.no_train:
        trains = {}
        for name in variants:
            runner, secs, flops = common.build_train(models[name], variables[name], mesh, data)
            trains[name] = runner
            res[name].update(train_compile=secs, train_flops=flops)
            log(f"  train compiled {name}: {secs:.1f}s, {flops and flops / 1e9:.1f} GFLOP")
        times = common.interleaved(trains, a.repeats, a.warmup, log)
        for name, ts in times.items():
            res[name].update(train_s=common.median(ts), train_spread=common.spread(ts),
                             train_paired=paired(ts, times["gap"]))
        for name, r in trains.items():
            if int(r.state.nonfinite):
                log(f"  warning: {name} train step reported non-finite values")
        del trains
        gc.collect()

    def pct(name, key):
        base, val = res["gap"].get(key), res[name].get(key)
        if not base or val is None:
            return "-"
        return "-" if name == "gap" else f"{100 * (val / base - 1):+.2f}%"

    def est(name, head_key, full_key):
        # (head time - gap head time) / full gap step time
        base = res["gap"].get(full_key)
        if name == "gap" or not base:
            return "-"
        return f"{100 * (res[name][head_key] - res['gap'][head_key]) / base:+.2f}%"

    rows = []
    for name in variants:
        r = res[name]
        ms = lambda k: f"{1e3 * r[k]:.1f}" if k in r else "-"
        gf = lambda k: f"{r[k] / 1e9:.1f}" if r.get(k) else "-"
        sec = lambda k: f"{r[k]:.1f}" if k in r else "-"
        pp = lambda k: f"{r[k]:+.2f}%" if k in r and name != "gap" else "-"
        rows.append([arch, size, batch, a.dtype, name,
                     ms("eval_s"), pct(name, "eval_s"), pp("eval_paired"),
                     r.get("eval_spread", "-"),
                     ms("train_s"), pct(name, "train_s"), pp("train_paired"),
                     r.get("train_spread", "-"),
                     f"{1e3 * r['head_eval_s']:.2f}", est(name, "head_eval_s", "eval_s"),
                     f"{1e3 * r['head_train_s']:.2f}", est(name, "head_train_s", "train_s"),
                     sec("eval_compile"), sec("train_compile"),
                     gf("eval_flops"), pct(name, "eval_flops"),
                     gf("train_flops"), pct(name, "train_flops")])
    return rows, versus_csra(res, variants)


def versus_csra(res: dict, variants: dict) -> str:
    """attend_rectify relative to the largest CSRA variant, as a comment line."""
    csra = [n for n in variants if n.startswith("csra")]
    if "attend_rectify" not in res or not csra:
        return ""
    ar, ref = res["attend_rectify"], res[csra[-1]]
    parts = [f"{label} {100 * (ar[k] / ref[k] - 1):+.2f}%"
             for label, k in (("eval", "eval_s"), ("train", "train_s"),
                              ("eval FLOPs", "eval_flops"), ("train FLOPs", "train_flops"))
             if ar.get(k) and ref.get(k)]
    return f"# attend_rectify vs {csra[-1]}: " + ", ".join(parts)


HEADER = ["model", "size", "batch", "dtype", "head",
          "eval ms", "eval ovh", "eval paired ovh", "eval spread",
          "train ms", "train ovh", "train paired ovh", "train spread",
          "head eval ms", "head-only eval ovh", "head train ms", "head-only train ovh",
          "eval compile s", "train compile s",
          "eval GFLOP", "eval FLOP ovh", "train GFLOP", "train FLOP ovh"]


def main(argv=None):
    a = parse_args(argv)
    log(common.describe_machine())
    print(f"# head overhead vs gap ({common.describe_machine()})")
    print(f"# medians of {a.eval_repeats} eval / {a.repeats} train interleaved rounds after "
          f"{a.warmup} warm-up; ovh = median / gap median - 1; paired ovh = median over rounds of "
          "(variant / gap - 1) in the same round; 'spread' = (max - min) / median; "
          "GFLOP = XLA cost analysis")
    print("# head eval/train ms: the head alone on the backbone's feature map (forward; "
          f"forward + grads w.r.t. params and features), median of {a.head_repeats}; "
          "head-only ovh = (head - gap head) / full gap step")
    print(common.markdown_table(HEADER, []), flush=True)
    failed = []
    for arch in common.csv_list(a.archs):
        try:
            rows, comparison = run_arch(arch, a)
        except Exception as e:  # pylint: disable=broad-except
            log(f"{arch} failed: {type(e).__name__}: {e}")
            failed.append(arch)
            continue
        finally:
            gc.collect()
        print(common.markdown_table(HEADER, rows).split("\n", 2)[2], flush=True)
        if comparison:
            print(comparison, flush=True)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
