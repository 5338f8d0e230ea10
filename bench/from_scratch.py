r"""The from-scratch recipe (configs/demo.py) on small-object variants x heads: one table.

    python bench/small_object_sets.py --out /tmp/small_sets --data_dir /tmp/small_tfds
    python bench/from_scratch.py --data_dir /tmp/small_tfds --variants heldout tiny \
        --heads csra gap [--set optim.lr_backbone=0.03 --set optim.lr_head=0.03] \
        [--max_steps 124] [--workdir /tmp/from_scratch]

Each cell trains configs/demo.py (or --config) from scratch on ``small_<variant>``
(multilabel_json) at the recipe's budget unless --max_steps cuts it, and reports test
mAP, the training loss at the end of the first epoch and at the end against the
label-prior entropy H (a loss at H means the net only predicts the label frequencies),
the share of test images with a positive prediction (score > 0.5), the wall time, the
process CPU time (user + system, all threads) and the 1-minute load average at the end.
``--variants demo`` runs the embedded synthetic_shapes demo data instead.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402


def _set(config, key: str, text: str) -> None:
    *path, leaf = key.split(".")
    node = config
    for p in path:
        node = node[p]
    old = node[leaf]
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    if isinstance(old, tuple) and isinstance(value, list):
        value = tuple(value)
    elif isinstance(old, float) and isinstance(value, int):
        value = float(value)
    node[leaf] = value


def _cpu_s() -> float:
    """User + system CPU seconds of this process (all its threads): on a shared machine
    the wall time depends on the other jobs, this does far less."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _read_jsonl(path: str) -> list:
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def run_cell(args, variant: str, head: str) -> dict:
    from csra_jax.config import sibling_config
    from csra_jax.run.paths import RunDir
    from csra_jax.train.loop import run
    from csra_jax.train.stall import prior_entropy
    config = sibling_config(os.path.join(_ROOT, "configs", "x.py"), args.config)
    config.model.head = head
    if variant != "demo":
        config.data.name = "multilabel_json"
        config.data.builder_config = f"small_{variant}"
        config.data.data_dir = args.data_dir
        config.data.build_if_missing = False
    for kv in args.set:
        k, v = kv.split("=", 1)
        _set(config, k, v)
    if args.max_steps:
        config.max_steps = args.max_steps
    config.eval_every_epochs = 10 ** 6  # only at the end
    config.checkpoint_every_steps = 10 ** 6
    workdir = os.path.join(args.workdir, f"{variant}_{head}")
    shutil.rmtree(workdir, ignore_errors=True)
    start, cpu0 = time.time(), _cpu_s()
    out = run(config, workdir)
    wall, cpu = time.time() - start, _cpu_s() - cpu0
    records = _read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    train = [r for r in records if "train/loss" in r]
    p = np.load(RunDir(workdir).predictions(out["step"]))  # the final evaluation's file
    logits, labels = p["logits"], p["labels"]
    # the first logged loss after one epoch of the 2,000-image sets
    epoch1 = next((r["train/loss"] for r in train if r["step"] >= 2000 // config.batch_size), None)
    h = prior_entropy(labels.mean(0))
    return {"variant": variant, "head": head, "mAP": float(out.get("mAP", float("nan"))),
            "loss_ep1": epoch1, "loss_end": train[-1]["train/loss"] if train else None,
            "H": h, "pos_share": float((logits > 0).any(1).mean()),
            "stalled": any("train/stall" in r for r in records), "wall_s": wall,
            "cpu_s": cpu, "load_avg_1m": os.getloadavg()[0],
            "steps": out["step"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", default="/tmp/small_tfds")
    p.add_argument("--variants", nargs="+", default=["heldout"])
    p.add_argument("--heads", nargs="+", default=["csra", "gap"])
    p.add_argument("--config", default="demo", help="a file in configs/ (without .py)")
    p.add_argument("--set", action="append", default=[], help="config KEY=VALUE (JSON)")
    p.add_argument("--max_steps", type=int, default=0)
    p.add_argument("--workdir", default="/tmp/from_scratch")
    p.add_argument("--json", help="append each row as JSON to this file")
    a = p.parse_args(argv)
    rows = []
    print(f"config {a.config} {' '.join(a.set)} max_steps={a.max_steps or 'all'}", flush=True)
    for v in a.variants:
        for h in a.heads:
            r = run_cell(a, v, h)
            r["overrides"] = a.set
            rows.append(r)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps(r) + "\n")
            print(f"ROW {v:12s} {h:5s} mAP {r['mAP']:6.2f}  loss ep1 {r['loss_ep1'] or float('nan'):.4f} "
                  f"end {r['loss_end']:.4f} (H {r['H']:.4f})  positives in "
                  f"{100 * r['pos_share']:.0f}% of images  {r['wall_s']:.0f}s wall, {r['cpu_s']:.0f}s CPU, "
                  f"load {r['load_avg_1m']:.1f}", flush=True)
    print("\n| variant | head | mAP | loss ep1 | loss end | H | img w/ pos | wall s | CPU s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['head']} | {r['mAP']:.1f} | {r['loss_ep1'] or float('nan'):.3f} "
              f"| {r['loss_end']:.3f} | {r['H']:.3f} | {100 * r['pos_share']:.0f}% | {r['wall_s']:.0f} "
              f"| {r['cpu_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
