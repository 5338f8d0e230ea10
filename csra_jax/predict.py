r"""Predict labels (and CSRA attention maps) for image files with a trained or converted model.

    python -m csra_jax.predict --workdir DIR IMAGES_OR_FOLDERS... [--top_k 5]
        [--threshold 0.5] [--output preds.json|preds.csv] [--attention_dir viz/]
    python -m csra_jax.predict --checkpoint converted/coco_r101 --class_names coco.txt img.jpg
    python -m csra_jax.predict --checkpoint DIR/checkpoints/1200 --config configs/demo.py \
        [--config.field=value ...] img.jpg

``--workdir`` takes the best checkpoint (else the latest) and ``DIR/config.json``
(``--config`` replaces it). Folders contribute their files (not recursive, hidden files
skipped). Every image is decoded and resized exactly as in evaluation.

Exit status: 0 when every image was predicted; 1 when some failed (one ``error:`` line
each, the others still predicted and written); 2 when the model could not be loaded.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from typing import List, Optional, Tuple

import numpy as np

from csra_jax import cli_args
from csra_jax.cli_checks import snake_case_config_field
from csra_jax.data.transforms import NORMALIZATIONS


def _split_config_overrides(argv: List[str]) -> Tuple[List[str], List[str]]:
    """``--config.field=value`` (or ``--config.field value``) go to the config parser."""
    rest, overrides, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            if "=" not in arg and i + 1 < len(argv):
                arg, i = f"{arg}={argv[i + 1]}", i + 1
            overrides.append(snake_case_config_field(arg))
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def parse_args(argv: List[str]):
    rest, overrides = _split_config_overrides(argv)
    p = cli_args.parser(
        "csra_jax.predict",
        "Multi-label predictions and CSRA attention maps for image files.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--workdir", help="training run: best checkpoint, else the latest")
    src.add_argument("--checkpoint", help="a `python -m csra_jax.convert` output dir, or an "
                     "orbax step dir of a training run (DIR/checkpoints/<step>)")
    p.add_argument("--config", help="training config file (+ --config.field=value overrides); "
                   "default: the run's config.json")
    p.add_argument("--class_names", help="file with one class name per line (or a JSON list)")
    p.add_argument("--top_k", type=int, default=5)
    p.add_argument("--threshold", type=float, default=0.5,
                   help="a label is predicted when its probability is >= this")
    p.add_argument("--output", help="write predictions to this .json (default) or .csv file")
    p.add_argument("--attention_dir", help="write attention overlays and a grid per image here")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--image_size", type=int, help="override the model's resolution")
    p.add_argument("--normalization", choices=sorted(NORMALIZATIONS),
                   help="override the input normalisation")
    p.add_argument("--which", choices=("best", "latest"), default="best",
                   help="with --workdir: the best (default) or the latest checkpoint")
    p.add_argument("--max_image_pixels", type=int, default=89_478_485,
                   help="refuse files with more pixels (default PIL's 89478485, ~9459x9459, "
                   "about 270 MB decoded; 0: no limit)")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    args = cli_args.parse(p, rest)
    if overrides and not args.config:
        p.error("--config.field=value overrides need --config CFG")
    if args.top_k < 0 or args.batch_size < 1 or args.max_image_pixels < 0:
        p.error("--top_k and --max_image_pixels must be >= 0 and --batch_size >= 1")
    return args, overrides


def load_predictor(args, overrides):
    from csra_jax.inference import (Predictor, config_from_file, load_run_config,
                                    read_class_names)
    if args.config and not os.path.isfile(args.config.split(":", 1)[0]):
        raise FileNotFoundError(f"config file {args.config!r} does not exist.")
    config = config_from_file(args.config, overrides) if args.config else None
    names = read_class_names(args.class_names) if args.class_names else None
    kwargs = dict(batch_size=args.batch_size)
    if config is not None:
        if args.image_size:
            config.data.image_size = args.image_size
        if args.normalization:
            config.data.normalization = args.normalization
    if args.workdir:
        if config is None:
            config = load_run_config(args.workdir)
            if config is not None and (args.image_size or args.normalization):
                config.data.image_size = args.image_size or config.data.image_size
                config.data.normalization = args.normalization or config.data.normalization
        return Predictor.from_workdir(args.workdir, config, args.which, names, **kwargs)
    from csra_jax.convert.converted_checkpoint import MODEL_JSON
    from csra_jax.run.paths import as_path
    path = as_path(args.checkpoint)  # a local path or gs://
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {args.checkpoint!r} does not exist.")
    if (path / MODEL_JSON).exists():
        return Predictor.from_converted(os.fspath(path), args.image_size, args.normalization,
                                        names, **kwargs)
    step_dir = path.parent if path.name == "state" else path
    if config is None:  # DIR/checkpoints/<step> -> DIR/config.json
        config = load_run_config(step_dir.parent.parent)
    step_dir = os.fspath(step_dir)
    if config is None:
        raise FileNotFoundError(
            f"{args.checkpoint!r} has no model.json (not a converted model) and no run "
            "config.json two levels up; for a training step dir pass --config CFG.")
    return Predictor.from_config(config, step_dir, names, **kwargs)


def expand_inputs(inputs: List[str]) -> List[Tuple[str, Optional[str]]]:
    """(path, error) per file: folders give their non-hidden files in sorted order."""
    out = []
    for item in inputs:
        if os.path.isdir(item):
            files = sorted(os.path.join(item, n) for n in os.listdir(item)
                           if not n.startswith(".") and os.path.isfile(os.path.join(item, n)))
            out.extend((f, None) for f in files)
            if not files:
                out.append((item, "folder holds no files"))
        elif os.path.isfile(item):
            out.append((item, None))
        else:
            out.append((item, "no such file or folder"))
    return out


def _scored(probs: np.ndarray, names, indices) -> list:
    return [{"class": names[i], "score": round(float(probs[i]), 6)} for i in indices]


def _result(path, probs, names, threshold, top_k) -> dict:
    order = np.argsort(-probs, kind="stable")
    above = [i for i in order if probs[i] >= threshold]
    return {"file": path, "labels": _scored(probs, names, above),
            "top_k": _scored(probs, names, order[:top_k])}


def _summary(r: dict, threshold: float) -> str:
    if r["labels"]:
        return f"{r['file']}: " + ", ".join(f"{l['class']} {l['score']:.3f}" for l in r["labels"])
    top = r["top_k"][0] if r["top_k"] else None
    best = f" (top: {top['class']} {top['score']:.3f})" if top else ""
    return f"{r['file']}: no label >= {threshold:g}{best}"


def _unique_stem(path: str, used: set) -> str:
    stem = os.path.splitext(os.path.basename(path))[0] or "image"
    candidate, k = stem, 2
    while candidate in used:
        candidate, k = f"{stem}_{k}", k + 1
    used.add(candidate)
    return candidate


def write_output(path: str, results: list) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.lower().endswith(".csv"):
        fmt = lambda items: ";".join(f"{x['class']}:{x['score']:.6f}" for x in items)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["file", "labels", "top_k", "error"])
            for r in results:
                w.writerow([r["file"], fmt(r["labels"]), fmt(r["top_k"]), r.get("error", "")])
        return
    with open(path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)


class _Run:
    """Streams the files through the predictor in batches, in input order."""

    def __init__(self, predictor, args):
        self.p, self.args = predictor, args
        self.results: list = []
        self.pending: list = []   # (result index, path, encoded bytes, eval array)
        self.stems: set = set()
        self.failed = 0

    def fail(self, path: str, message: str) -> None:
        print(f"error: {path}: {message}", file=sys.stderr, flush=True)
        self.results.append({"file": path, "labels": [], "top_k": [], "error": message})
        self.failed += 1

    def add(self, path: str) -> None:
        from csra_jax.inference import ImageReadError, decode_image, read_image_file
        try:
            data = read_image_file(path)
            arr = decode_image(data, self.p.image_size)
        except ImageReadError as e:
            return self.fail(path, str(e))
        self.results.append(None)
        self.pending.append((len(self.results) - 1, path, data, arr))
        if len(self.pending) == self.p.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        a, p = self.args, self.p
        arrays = [x[3] for x in self.pending]
        if a.attention_dir:
            probs, maps = p.predict_with_attention(arrays)
        else:
            probs, maps = p.predict_probs(arrays), None
        for j, (slot, path, data, _) in enumerate(self.pending):
            r = _result(path, probs[j], p.class_names, a.threshold, a.top_k)
            self.results[slot] = r
            print(_summary(r, a.threshold), flush=True)
            if maps is not None:
                self.save_attention(path, data, probs[j], maps[j])
        self.pending = []

    def save_attention(self, path, data, probs, maps) -> None:
        from csra_jax.inference import open_rgb
        from csra_jax.visualize import save_attention_images
        classes = [i for i in np.argsort(-probs, kind="stable") if probs[i] >= self.args.threshold]
        classes = classes or [int(np.argmax(probs))]  # nothing predicted: show the top class
        labels = [(self.p.class_names[i], float(probs[i])) for i in classes]
        save_attention_images(self.args.attention_dir, _unique_stem(path, self.stems),
                              open_rgb(data), [maps[i] for i in classes], labels)


def _quiet() -> None:
    from absl import logging
    logging.set_verbosity(logging.ERROR)  # orbax's restore chatter


def main(argv: Optional[List[str]] = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else list(argv))
    _quiet()
    from csra_jax.inference import set_max_image_pixels
    set_max_image_pixels(args.max_image_pixels)
    try:
        predictor = load_predictor(args, overrides)
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    entries = expand_inputs(args.inputs)
    # Pad every batch to the same size, so the forward pass compiles once.
    predictor.fixed_batch = len(entries) > predictor.batch_size
    run = _Run(predictor, args)
    for path, error in entries:
        if error:
            run.fail(path, error)
        else:
            run.add(path)
    run.flush()
    if args.output:
        write_output(args.output, run.results)
        print(f"wrote {args.output}")
    if run.failed:
        print(f"{run.failed} of {len(entries)} inputs failed", file=sys.stderr)
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
