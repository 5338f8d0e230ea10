"""Users' own multi-label data from JSON annotation lists.

Two formats (`format=`):

(a) 'csra' -- the official CSRA annotation lists:
      [{"img_path": "path/to/img.jpg", "target": [t_0, ..., t_{C-1}]}, ...]
    with the meaning of target values chosen by `target_scheme`:
      'voc07': 1 positive, -1 negative, 0 difficult: positive-but-ignored (labels=1,
               ignore=1) in evaluation splits, like VOC difficult-only; negative in
               training splits
      'coco':  1 positive, 0 negative
      'wider': 1 positive, 0 negative, 99 unspecified: ignored (labels=0, ignore=1) in
               evaluation splits, negative in training splits
    For 'voc07' and 'wider' each split needs training or evaluation semantics:
    `train_splits` lists the training splits (every other split is an evaluation
    split). Without it, 'train' and 'trainval' are training splits, 'test', 'val',
    'valid', 'validation', 'eval' evaluation splits, and any other split name is an
    error (a wrong guess would silently turn a training file's 0s into ignored
    positives). An entry with a 'bbox' [x, y, w, h] (the official WIDER lists: one
    entry per person) is cropped to that box as the wider_attribute builder does
    (the official `Image.crop`, black outside the image; stored as `crop_format`, JPEG
    q95 or lossless PNG) and its id is "img_path#k" (k-th person of that image).
    Class names come from `class_names` or `class_names_file` (one name per line).

(b) 'simple' -- a documented format with class names:
      {"classes": ["cat", "dog", ...],                       # optional if given otherwise
       "images": [{"file": "a.jpg", "labels": ["cat"], "ignore": ["dog"]}, ...]}
    'ignore' is optional; an ignored class is labels=0, ignore=1.

Relative image paths are resolved against `image_root` (default: manual_dir, else the
annotation file's folder). Build with e.g.
  build_dataset('multilabel_json', data_dir, config_name='mydata', format='simple',
                annotations={'train': 'train.json', 'test': 'test.json'})
  python -m csra_jax.data.build multilabel_json --data_dir DIR --name voc --format csra \
      --target_scheme voc07 --class_names_file names.txt --annotations trainval=a.json \
      --annotations test=b.json --set 'train_splits=["trainval"]' 
and read with `config='mydata'`. The class names are stored in the dataset metadata.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Optional, Sequence

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from csra_jax.data import common, wider
from csra_jax.data.errors import DataError, require_file

TARGET_SCHEMES = {
    # scheme: (positive values, negative values, ignore values)
    "voc07": ((1,), (-1,), (0,)),
    "coco": ((1,), (0,), ()),
    "wider": ((1,), (0,), (99,)),
}
FORMATS = ("csra", "simple")
# Split names whose semantics are unambiguous when `train_splits` is not given.
TRAIN_NAMES = ("train", "trainval")
EVAL_NAMES = ("test", "val", "valid", "validation", "eval")
SPLIT_DEPENDENT = ("voc07", "wider")  # schemes whose values mean different things per split


@dataclasses.dataclass
class MultilabelJsonConfig(tfds.core.BuilderConfig):
    """`annotations` maps split name -> JSON file; `train_splits` get training semantics
    (None: by split name, see the module docstring)."""
    annotations: dict = dataclasses.field(default_factory=dict)
    format: str = "simple"
    target_scheme: str = "coco"
    class_names: Optional[Sequence[str]] = None
    class_names_file: Optional[str] = None
    image_root: Optional[str] = None
    train_splits: Optional[Sequence[str]] = None
    crop_format: str = "jpeg"  # entries with a 'bbox': 'jpeg' (q95) or 'png' (lossless)


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


def split_is_train(config: MultilabelJsonConfig, split: str) -> bool:
    """Whether `split` reads its targets with training semantics (see module docstring)."""
    if config.train_splits is not None:
        unknown = set(config.train_splits) - set(config.annotations)
        if isinstance(config.train_splits, str) or unknown:
            raise DataError(None, f"train_splits={config.train_splits!r} must be a list of "
                            f"split names from annotations ({sorted(config.annotations)}).")
        return split in config.train_splits
    if config.format != "csra" or config.target_scheme not in SPLIT_DEPENDENT:
        return split in TRAIN_NAMES  # the values mean the same in every split
    if split in TRAIN_NAMES or split in EVAL_NAMES:
        return split in TRAIN_NAMES
    zero = ("0 (difficult) is a negative when training but a positive-but-ignored label "
            "in evaluation" if config.target_scheme == "voc07" else
            "99 (unspecified) is a negative when training but ignored in evaluation")
    raise DataError(None, f"multilabel_json: is split {split!r} a training or an evaluation "
                    f"split? With target_scheme {config.target_scheme!r}, {zero}.",
                    "Name the training splits: train_splits=[...] (CLI: --set "
                    f"'train_splits=[\"{split}\"]' if it is one; an empty list if none).")


class MultilabelJson(common.MultiLabelBuilder):
    """Users' own multi-label data described by JSON annotation lists."""

    BUILDER_CONFIGS = [MultilabelJsonConfig(name="default")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Optional: the folder relative image paths start from."

    def class_names(self) -> tuple[str, ...]:
        return read_class_names(self.builder_config)

    def _info(self) -> tfds.core.DatasetInfo:
        info = super()._info()  # the training splits, so readers never train on a test split
        cfg = self.builder_config
        info.metadata["train_splits"] = [s for s in cfg.annotations if split_is_train(cfg, s)]
        return info

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
        if cfg.crop_format not in wider.CROP_FORMATS:
            raise DataError(None, f"crop_format must be one of {wider.CROP_FORMATS}, got "
                            f"{cfg.crop_format!r}.")
        self._train = {split: split_is_train(cfg, split) for split in cfg.annotations}
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
        train = self._train[split]
        data = common.load_json(ann, "multilabel_json annotation file")
        parse = self._parse_csra if cfg.format == "csra" else self._parse_simple
        counter = self._new_counter()
        if cfg.format == "csra" and cfg.target_scheme in SPLIT_DEPENDENT:
            print(f"[{self.name}/{split}] {cfg.target_scheme} targets read with "
                  f"{'training' if train else 'evaluation'} semantics", file=sys.stderr,
                  flush=True)
        persons: dict[str, int] = {}
        decoded = (None, None)  # (path, RGB image): consecutive persons share one decode
        yielded = 0
        for i, (rel, labels, ignore, bbox) in enumerate(parse(data, ann, names, train)):
            path = epath.Path(rel) if epath.Path(rel).is_absolute() else root / rel
            image = self._image(path, counter)
            if image is None:
                continue
            id_ = str(rel)
            if bbox is not None:
                k = persons[id_] = persons.get(id_, -1) + 1
                id_ = f"{rel}#{k}"
                if decoded[0] != path:
                    decoded = (path, common.open_rgb(path, image, counter))
                im = decoded[1]
                if im is None:
                    continue
                box = wider.crop_box(bbox, *im.size)
                if box is None:
                    raise DataError(ann, f"entry #{i} ({rel}): 'bbox' {list(bbox)} has no area.")
                image = wider.encode(im.crop(box), cfg.crop_format)
            yielded += 1
            yield f"{i}:{rel}", common.example(image, labels, ignore, id_)
        counter.report(self.name, split)
        if not yielded:
            raise DataError(ann, f"split {split!r} has no examples (every image was skipped "
                            "or the list is empty).")

    def _parse_csra(self, data, ann, names, train):
        pos, neg, ign = TARGET_SCHEMES[self.builder_config.target_scheme]
        if not isinstance(data, list):
            raise DataError(ann, "CSRA format expects a JSON list of {'img_path', 'target'}.")
        for i, entry in enumerate(data):
            if not isinstance(entry, dict) or "img_path" not in entry or "target" not in entry:
                raise DataError(ann, f"entry #{i} lacks 'img_path' or 'target'.")
            bbox = entry.get("bbox")
            if bbox is not None and not wider.valid_bbox(bbox):
                raise DataError(ann, f"entry #{i} ({entry['img_path']}): 'bbox' must be "
                                f"[x, y, w, h] (4 numbers), got {bbox!r}.")
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
            yield str(entry["img_path"]), labels, ignore, bbox

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
            yield str(entry["file"]), vecs[0] & (1 - vecs[1]), vecs[1], None
