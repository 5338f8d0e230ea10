"""Users' own multi-label data from JSON annotation lists.

Two formats (`format=`):

(a) 'csra' -- the official CSRA annotation lists:
      [{"img_path": "path/to/img.jpg", "target": [t_0, ..., t_{C-1}]}, ...]
    with the meaning of target values chosen by `target_scheme`:
      'voc07': 1 positive, -1 negative, 0 ignored (positive-but-ignored: labels=1, ignore=1
               in eval splits, like VOC difficult-only; negative in the train split)
      'coco':  1 positive, 0 negative
      'wider': 1 positive, 0 negative, 99 ignored (labels=0, ignore=1 in eval splits,
               negative in the train split)
    Class names come from `class_names` or `class_names_file` (one name per line).

(b) 'simple' -- a documented format with class names:
      {"classes": ["cat", "dog", ...],                       # optional if given otherwise
       "images": [{"file": "a.jpg", "labels": ["cat"], "ignore": ["dog"]}, ...]}
    'ignore' is optional; an ignored class is labels=0, ignore=1.

Relative image paths are resolved against `image_root` (default: manual_dir, else the
annotation file's folder). Build with e.g.
  build_dataset('multilabel_json', data_dir, config_name='mydata', format='simple',
                annotations={'train': 'train.json', 'test': 'test.json'})
and read with `config='mydata'`. The class names are stored in the dataset metadata.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from csra_jax.data import common
from csra_jax.data.errors import DataError, require_file

TARGET_SCHEMES = {
    # scheme: (positive values, negative values, ignore values)
    "voc07": ((1,), (-1,), (0,)),
    "coco": ((1,), (0,), ()),
    "wider": ((1,), (0,), (99,)),
}
FORMATS = ("csra", "simple")


@dataclasses.dataclass
class MultilabelJsonConfig(tfds.core.BuilderConfig):
    """`annotations` maps split name -> JSON file; `train_split` gets training semantics."""
    annotations: dict = dataclasses.field(default_factory=dict)
    format: str = "simple"
    target_scheme: str = "coco"
    class_names: Optional[Sequence[str]] = None
    class_names_file: Optional[str] = None
    image_root: Optional[str] = None
    train_split: str = "train"


def read_class_names(config: MultilabelJsonConfig) -> tuple[str, ...]:
    """Class names from the config, the names file, or (simple format) the JSON."""
    if config.class_names:
        names = tuple(config.class_names)
    elif config.class_names_file:
        path = require_file(config.class_names_file, "class names file")
        names = tuple(l.strip() for l in path.read_text().splitlines() if l.strip())
    elif config.format == "simple" and config.annotations:
        first = epath.Path(next(iter(config.annotations.values())))
        data = common.load_json(first, "multilabel_json annotation file")
        if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
            raise DataError(first, "no 'classes' list, and no class_names / class_names_file "
                            "given.", "Add \"classes\": [...] or pass class_names.")
        names = tuple(str(c) for c in data["classes"])
    else:
        raise DataError(None, "multilabel_json needs class names: pass class_names=[...] or "
                        "class_names_file=PATH (one name per line).")
    if not names:
        raise DataError(config.class_names_file, "the class name list is empty.")
    if len(set(names)) != len(names):
        raise DataError(config.class_names_file, f"duplicate class names in {names}.")
    return names


class MultilabelJson(common.MultiLabelBuilder):
    """Users' own multi-label data described by JSON annotation lists."""

    BUILDER_CONFIGS = [MultilabelJsonConfig(name="default")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Optional: the folder relative image paths start from."

    def class_names(self) -> tuple[str, ...]:
        return read_class_names(self.builder_config)

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        if cfg.format not in FORMATS:
            raise DataError(None, f"multilabel_json format must be one of {FORMATS}, got "
                            f"{cfg.format!r}.")
        if cfg.format == "csra" and cfg.target_scheme not in TARGET_SCHEMES:
            raise DataError(None, f"target_scheme must be one of {tuple(TARGET_SCHEMES)}, got "
                            f"{cfg.target_scheme!r}.")
        if not cfg.annotations:
            raise DataError(None, "multilabel_json needs annotations={'train': PATH, ...}.")
        manual = getattr(dl_manager, "_manual_dir", None)  # tfds defaults it; use if real
        if manual is not None and not (epath.Path(manual).is_dir() and
                                       any(epath.Path(manual).iterdir())):
            manual = None
        out = {}
        for split, path in cfg.annotations.items():
            ann = require_file(path, f"multilabel_json annotation file for split {split!r}")
            root = epath.Path(cfg.image_root or manual or ann.parent)
            out[split] = self._generate_examples(ann, root, split)
        return out

    def _generate_examples(self, ann: epath.Path, root: epath.Path, split: str):
        cfg = self.builder_config
        names = self.class_names()
        train = split == cfg.train_split
        data = common.load_json(ann, "multilabel_json annotation file")
        parse = self._parse_csra if cfg.format == "csra" else self._parse_simple
        counter = self._new_counter()
        for i, (rel, labels, ignore) in enumerate(parse(data, ann, names, train)):
            path = epath.Path(rel) if epath.Path(rel).is_absolute() else root / rel
            image = self._image(path, counter)
            if image is None:
                continue
            yield f"{i}:{rel}", common.example(image, labels, ignore, str(rel))
        counter.report(self.name, split)

    def _parse_csra(self, data, ann, names, train):
        pos, neg, ign = TARGET_SCHEMES[self.builder_config.target_scheme]
        if not isinstance(data, list):
            raise DataError(ann, "CSRA format expects a JSON list of {'img_path', 'target'}.")
        for i, entry in enumerate(data):
            if not isinstance(entry, dict) or "img_path" not in entry or "target" not in entry:
                raise DataError(ann, f"entry #{i} lacks 'img_path' or 'target'.")
            t = np.asarray(entry["target"])
            if t.shape != (len(names),):
                raise DataError(ann, f"entry #{i} ({entry['img_path']}): 'target' has shape "
                                f"{t.shape}, expected ({len(names)},) for {len(names)} classes.")
            bad = ~np.isin(t, pos + neg + ign)
            if bad.any():
                raise DataError(ann, f"entry #{i} ({entry['img_path']}): target value "
                                f"{t[bad][0].item()!r} at class {int(np.argmax(bad))} is out of range for "
                                f"scheme {self.builder_config.target_scheme!r} (allowed "
                                f"{sorted(pos + neg + ign)}).")
            ignored = np.isin(t, ign)
            labels = np.isin(t, pos)
            if train:
                ignore = np.zeros_like(labels)
            else:
                ignore = ignored
                if self.builder_config.target_scheme == "voc07":
                    labels = labels | ignored  # difficult-only: positive-but-ignored
            yield str(entry["img_path"]), labels, ignore

    def _parse_simple(self, data, ann, names, train):
        del train  # explicit 'ignore' lists mean the same in every split
        index = {c: k for k, c in enumerate(names)}
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise DataError(ann, "simple format expects {'classes': [...], 'images': [...]}.")
        if "classes" in data and list(data["classes"]) != list(names):
            raise DataError(ann, f"'classes' {data['classes']} differs from the class names "
                            f"used for this dataset {list(names)}.")
        for i, entry in enumerate(data["images"]):
            if not isinstance(entry, dict) or "file" not in entry:
                raise DataError(ann, f"images[{i}] lacks 'file'.")
            vecs = []
            for key in ("labels", "ignore"):
                v = np.zeros(len(names), np.int8)
                for c in entry.get(key, []):
                    if c not in index:
                        raise DataError(ann, f"images[{i}] ({entry['file']}): unknown class {c!r} in "
                                        f"'{key}' (label out of range; classes are {list(names)}).")
                    v[index[c]] = 1
                vecs.append(v)
            yield str(entry["file"]), vecs[0] & (1 - vecs[1]), vecs[1]
