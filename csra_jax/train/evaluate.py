"""Evaluation over a whole split: every example exactly once, metrics, saved predictions,
the per-class AP table, the lambda sweep (paper Table 1) and VOC2012 server files."""

from __future__ import annotations

import io
import json
from typing import Callable, Dict, Optional, Sequence, Union

import jax
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from csra_jax.tasks import Task, get_task


def _local_ids(batch) -> Dict[int, str]:
    """This process' rows: global data-source index -> image id (ids never leave the host)."""
    if "id" not in batch:
        return {}
    shards = sorted(batch["index"].addressable_shards, key=lambda s: s.index[0].start or 0)
    seen, local_index = set(), []
    for s in shards:  # a row replicated on several local devices appears once
        key = s.index[0].start or 0
        if key not in seen:
            seen.add(key)
            local_index.append(np.asarray(s.data))
    local_index = np.concatenate(local_index)
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in batch["id"]]
    return {int(i): d for i, d in zip(local_index, ids) if i >= 0}


def collect(step_fn: Callable, variables, eval_iter, progress: Optional[Callable] = None):
    """Runs ``step_fn`` over the iterator; returns host arrays of the valid rows only."""
    outputs, ids = [], {}
    for batch in eval_iter:
        out = step_fn(variables, {k: v for k, v in batch.items() if k != "id"})
        ids.update(_local_ids(batch))
        outputs.append(out)
        if progress:
            progress()
    host = jax.device_get(outputs)
    merged = {k: np.concatenate([o[k] for o in host]) for k in host[0]}
    valid = merged.pop("mask") > 0
    merged = {k: v[valid] for k, v in merged.items()}
    order = np.argsort(merged["index"], kind="stable")
    merged = {k: v[order] for k, v in merged.items()}
    if len(np.unique(merged["index"])) != len(merged["index"]):
        raise RuntimeError("evaluation saw an example twice; the eval iterator is broken.")
    return merged, ids


def gather_ids(ids: Dict[int, str], workdir: str, tag: str) -> Dict[int, str]:
    """Every process' (index -> id) pairs, on process 0 (through the shared workdir, a
    local path or ``gs://``)."""
    if jax.process_count() == 1:
        return ids
    workdir = epath.Path(workdir)
    (workdir / f".ids_{tag}_{jax.process_index()}.json").write_text(json.dumps(ids))
    multihost_utils.sync_global_devices(f"ids_{tag}")
    if jax.process_index() != 0:
        return ids
    merged = {}
    for p in range(jax.process_count()):
        path = workdir / f".ids_{tag}_{p}.json"
        merged.update({int(k): v for k, v in json.loads(path.read_text()).items()})
        path.unlink()
    return merged


def score(results: dict, task: Union[str, Task], threshold: float,
          protocol: str = "default") -> dict:
    """The task's metrics of the collected results; ``protocol`` ("default" | "official")
    picks the multi-label evaluation rules (see ``csra_jax.metrics``)."""
    return get_task(task).metrics(results["logits"], results["labels"], results.get("ignore"),
                                  threshold=threshold, protocol=protocol)


def metric_prefix(protocol: str) -> str:
    """metrics.jsonl / TensorBoard prefix: ``eval/mAP`` (default), ``eval/official/mAP``."""
    return "eval/" if protocol == "default" else f"eval/{protocol}/"


def save_predictions(path, results: dict, ids: Dict[int, str],
                     class_names: Sequence[str]) -> None:
    """One .npz (a local path or ``gs://``): index, id, logits, labels, ignore (sorted by
    index), class_names."""
    id_array = np.array([ids.get(int(i), "") for i in results["index"]], dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, index=results["index"], id=id_array.astype(str),
             logits=results["logits"], labels=results["labels"], ignore=results["ignore"],
             class_names=np.array(class_names))
    epath.Path(path).write_bytes(buffer.getvalue())


def write_voc_comp2(out_dir, results: dict, ids: Dict[int, str],
                    class_names: Sequence[str]) -> str:
    """PASCAL VOC evaluation-server classification files (comp2: any training data):
    ``results/VOC2012/Main/comp2_cls_test_<class>.txt`` with lines ``<image id> <score>``."""
    main = epath.Path(out_dir) / "results" / "VOC2012" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    probs = 1.0 / (1.0 + np.exp(-results["logits"].astype(np.float64)))
    names = [ids.get(int(i), str(int(i))) for i in results["index"]]
    for c, cls in enumerate(class_names):
        (main / f"comp2_cls_test_{cls}.txt").write_text(
            "".join(f"{n} {p:.6f}\n" for n, p in zip(names, probs[:, c])))
    return str(main)


# DatasetInfo.server_format -> the writer of an evaluation server's result files.
SERVER_WRITERS = {"voc_comp2": write_voc_comp2}


def summary_line(m: dict, task: Union[str, Task]) -> str:
    return get_task(task).summary_line(m)


def lambda_sweep(results: dict, lams: Sequence[float], threshold: float,
                 protocol: str = "default", task: Union[str, Task] = "multi_label") -> dict:
    """mean + lam * max for each lam, rated by the task's ``best_key``; returns
    {lam: metrics} and the Table-1 row (``baseline_<key>``, ``best_<key>``)."""
    task = get_task(task)
    key = task.best_key
    rate = lambda logits: task.metrics(logits, results["labels"], results["ignore"],
                                       threshold=threshold, protocol=protocol)
    rows = {float(lam): rate(results["mean"] + lam * results["max"]) for lam in lams}
    base = rows.get(0.0) or rate(results["mean"])
    best_lam = max(rows, key=lambda l: rows[l][key])
    return {"per_lam": rows, f"baseline_{key}": base[key], "best_lam": best_lam,
            f"best_{key}": rows[best_lam][key], "gain": rows[best_lam][key] - base[key],
            "protocol": protocol, "key": key}


def lambda_sweep_table(sweep: dict) -> str:
    key = sweep.get("key", "mAP")
    lines = [f"lam      {key}  [{sweep.get('protocol', 'default')} protocol]"]
    lines += [f"{lam:<8g} {m[key]:.2f}" for lam, m in sweep["per_lam"].items()]
    lines.append(f"baseline {sweep[f'baseline_{key}']:.2f} | best lam {sweep['best_lam']:g}: "
                 f"{sweep[f'best_{key}']:.2f} ({sweep['gain']:+.2f})")
    return "\n".join(lines)
