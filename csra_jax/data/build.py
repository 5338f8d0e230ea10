"""Command line: build a dataset from local raw files into ArrayRecord (no TensorFlow).

  python -m csra_jax.data.build synthetic_shapes --data_dir ~/tensorflow_datasets
  python -m csra_jax.data.build voc2007 --data_dir DIR --manual_dir ~/raw/voc
  python -m csra_jax.data.build coco2014 --data_dir DIR --manual_dir ~/raw/coco [--config keep_empty]
  python -m csra_jax.data.build wider_attribute --data_dir DIR --manual_dir ~/raw/wider
  python -m csra_jax.data.build multilabel_json --data_dir DIR --name mydata \
      --annotations train=train.json --annotations test=test.json --format simple
  python -m csra_jax.data.build synthetic_shapes --data_dir DIR --set num_train=20000

A user-caused problem (missing folder, corrupt image, malformed annotation, label out
of range) ends with one line `error: <file>: <what is wrong> <what to do>` and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from etils import epath
import tensorflow_datasets as tfds

from csra_jax import cli_args
from csra_jax.data import registry
from csra_jax.data.errors import DataError

INCOMPLETE_PREFIX = "incomplete."  # tensorflow_datasets' temporary build directories
BUILD_LOCK = ".build.lock"


def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k, v


def _value(v: str):
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def remove_incomplete(data_dir: str, name: str) -> list:
    """Deletes the ``incomplete.*`` directories a killed build of ``name`` left under
    ``data_dir/name`` (tfds writes there and renames when done); returns their paths."""
    root = epath.Path(data_dir).expanduser() / name
    removed = []
    for parent in ([root, *(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []):
        for path in list(parent.iterdir()):
            if path.name.startswith(INCOMPLETE_PREFIX):
                (path.rmtree if path.is_dir() else path.unlink)()
                removed.append(str(path))
    if removed:
        print(f"removed {len(removed)} unfinished build output(s) of {name} left by an "
              f"interrupted build: {', '.join(removed)}", flush=True)
    return removed


def build_cleanly(name: str, data_dir: str, manual_dir=None, **kwargs):
    """``registry.build_dataset`` after removing a killed build's leftovers; one build of a
    dataset at a time (a second one would find the first's files half written)."""
    import fcntl
    root = epath.Path(data_dir).expanduser() / name
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    try:
        with open(root / BUILD_LOCK, "a+") as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise DataError(root, f"another build of {name} is running here.",
                                "Wait for it to finish.") from None
            remove_incomplete(data_dir, name)
            return registry.build_dataset(name, data_dir, manual_dir, **kwargs)
    except BaseException:
        # A build refused before writing anything (e.g. a bad config value) leaves no trace.
        if created and [p.name for p in root.iterdir()] == [BUILD_LOCK]:
            root.rmtree()
        raise


_KINDS = {"int": "a whole number", "float": "a number", "bool": "true or false",
          "str": "a string"}


def _fits(kind: str, value) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, {"int": int, "float": (int, float), "str": str}[kind])


def config_fields(dataset: str, sets) -> dict:
    """``--set KEY=VALUE`` pairs -> builder config kwargs; a field the dataset's config does
    not have, or a value of the wrong type, is a DataError naming it (before any build)."""
    if not sets:
        return {}
    config_cls = registry.DATASETS[dataset].config_cls
    if config_cls is None:
        raise DataError(None, f"--set {sets[0][0]}=...: {dataset} has no config fields to set.")
    base = {f.name for f in dataclasses.fields(tfds.core.BuilderConfig)}
    fields = {f.name: f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
              for f in dataclasses.fields(config_cls) if f.name not in base}
    out = {}
    for key, text in sets:
        value = _value(text)
        if key not in fields:
            raise DataError(None, f"--set {key}={text}: {dataset} has no config field {key!r}; "
                            f"its fields: {', '.join(fields)}.")
        kind = fields[key]
        if kind in _KINDS and not _fits(kind, value):
            raise DataError(None, f"--set {key}={value!r}: {key} takes {_KINDS[kind]}.")
        out[key] = value
    return out


def main(argv=None) -> int:
    p = cli_args.parser("csra_jax.data.build", __doc__.split("\n")[0])
    p.add_argument("dataset", choices=sorted(registry.DATASETS))
    p.add_argument("--data_dir", required=True, help="where prepared datasets go")
    p.add_argument("--manual_dir", help="folder holding the official downloads")
    p.add_argument("--config", help="builder config name (e.g. coco2014 keep_empty)")
    p.add_argument("--on_corrupt", choices=("error", "skip"), default="error")
    p.add_argument("--no_verify_images", action="store_true",
                   help="do not decode each image at build time (faster, finds nothing)")
    p.add_argument("--name", help="config name for multilabel_json / custom configs")
    p.add_argument("--annotations", type=_kv, action="append", default=[],
                   help="multilabel_json: SPLIT=PATH (repeat per split)")
    p.add_argument("--format", choices=("csra", "simple"))
    p.add_argument("--target_scheme", choices=("voc07", "coco", "wider"))
    p.add_argument("--class_names_file")
    p.add_argument("--image_root")
    p.add_argument("--set", type=_kv, action="append", default=[], dest="sets",
                   help="any config field, KEY=VALUE (JSON value), e.g. num_train=100")
    a = cli_args.parse(p, sys.argv[1:] if argv is None else argv)
    try:
        kwargs = config_fields(a.dataset, a.sets)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.annotations:
        kwargs["annotations"] = dict(a.annotations)
    for key in ("format", "target_scheme", "class_names_file", "image_root"):
        if getattr(a, key) is not None:
            kwargs[key] = getattr(a, key)
    if a.name:
        kwargs["config_name"] = a.name
    if a.config:
        kwargs["config"] = a.config
    try:
        builder = build_cleanly(a.dataset, a.data_dir, a.manual_dir, on_corrupt=a.on_corrupt,
                                verify_images=not a.no_verify_images, **kwargs)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    splits = {k: v.num_examples for k, v in builder.info.splits.items()}
    print(f"built {a.dataset} ({builder.builder_config.name if builder.builder_config else 'default'}) "
          f"in {builder.data_dir}: {splits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
