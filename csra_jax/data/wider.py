"""WIDER-Attribute builder: one example per annotated person, cropped by its bbox.

Input: manual_dir/Image/... (the released image folder) and
manual_dir/wider_attribute_{trainval,test}.json (the released annotation files; also
accepted under manual_dir/wider_attribute_annotation/). Each JSON 'images' entry has a
'file_name' and 'targets' [{'bbox': [x, y, w, h], 'attribute': [14 values]}].
Attribute values: 1 positive, -1 negative, 0 unspecified -> negative in trainval,
ignored in test (labels=0, ignore=1), as the CSRA evaluation does.

The crop is the official one: `Image.crop([x, y, x + w, y + h])` on the RGB image, so
PIL rounds the corners and fills the part of the box outside the image with black
(crop_mode='pad'). crop_mode='clip' (a custom config, e.g. `--set crop_mode=clip`)
clips the box to the image instead, which is not what the official code trains or
evaluates on. Boxes with no area are skipped and counted (printed).

The crop is stored re-encoded: JPEG quality 95 without chroma subsampling (config
'default', smaller), which moves pixels by a few grey levels against the official crop
(bench/wider_crops.py measures it), or lossless PNG (config 'png': the official pixels
exactly).
"""

from __future__ import annotations

import dataclasses
import io
import math
import sys

from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from csra_jax.data import common
from csra_jax.data.errors import DataError, require_dir

# Order of the 14 attributes (= attribute_id_map of the released JSON, ids 0..13).
WIDER_ATTRIBUTES = (
    "Male", "longHair", "sunglass", "Hat", "Tshirt", "longSleeve", "formal", "shorts",
    "jeans", "longPants", "skirt", "faceMask", "logo", "stripe",
)


CROP_FORMATS = ("jpeg", "png")
CROP_MODES = ("pad", "clip")


@dataclasses.dataclass
class WiderAttributeConfig(tfds.core.BuilderConfig):
    crop_format: str = "jpeg"  # 'jpeg' (quality 95) or 'png' (lossless)
    crop_mode: str = "pad"     # 'pad': official PIL crop, black outside; 'clip': clip box


def valid_bbox(bbox) -> bool:
    """True for [x, y, w, h] of four finite numbers (the released files' person boxes)."""
    return (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and
            all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in bbox))


def crop_box(bbox, width: int, height: int,
             mode: str = "pad") -> tuple[int, int, int, int] | None:
    """[x, y, w, h] -> integer (left, top, right, bottom), rounded as `Image.crop` rounds
    [x, y, x + w, y + h]; 'clip' also clips it to the image. None if it has no area."""
    x, y, w, h = (float(v) for v in bbox)
    left, top, right, bottom = (int(round(v)) for v in (x, y, x + w, y + h))
    if mode == "clip":
        left, top = max(0, left), max(0, top)
        right, bottom = min(width, right), min(height, bottom)
    if right - left < 1 or bottom - top < 1:
        return None
    return left, top, right, bottom


def encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "png":
        im.save(buf, "PNG")
    else:
        im.save(buf, "JPEG", quality=95, subsampling=0)  # 4:4:4: no colour bleeding at
        # the black padding's edge (4:2:0 there moved pixels by up to ~50 grey levels)
    return buf.getvalue()


class WiderAttribute(common.MultiLabelBuilder):
    """WIDER-Attribute: 14 person attributes, one example per person (trainval / test)."""

    CLASS_NAMES = WIDER_ATTRIBUTES
    HOMEPAGE = "http://mmlab.ie.cuhk.edu.hk/projects/WIDERAttribute.html"
    EXTRA_FEATURES = {"bbox": tfds.features.Tensor(shape=(4,), dtype=np.float32)}
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Initial release (boxes clipped to the image).",
                     "1.1.0": "Official crop: the part of a box outside the image is black."}
    BUILDER_CONFIGS = [
        WiderAttributeConfig(name="default", description="Official crops stored as JPEG q95."),
        WiderAttributeConfig(name="png", crop_format="png",
                             description="Official crops stored as lossless PNG (exact)."),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
  From the WIDER-Attribute page download the images (Image.zip) and the annotations
  (wider_attribute_annotation.zip); extract so that manual_dir/Image/ and
  manual_dir/wider_attribute_trainval.json, manual_dir/wider_attribute_test.json exist.
  """

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        if cfg.crop_format not in CROP_FORMATS or cfg.crop_mode not in CROP_MODES:
            raise DataError(None, f"wider_attribute: crop_format must be one of {CROP_FORMATS} "
                            f"and crop_mode one of {CROP_MODES}, got {cfg.crop_format!r} / "
                            f"{cfg.crop_mode!r}.")
        root = common.resolve_manual_dir(dl_manager, self.name)
        require_dir(root / "Image", "WIDER-Attribute Image folder",
                    "Extract Image.zip into manual_dir.")
        return {split: self._generate_examples(root, self._annotation(root, split), split)
                for split in ("trainval", "test")}

    @staticmethod
    def _annotation(root: epath.Path, split: str) -> epath.Path:
        name = f"wider_attribute_{split}.json"
        for cand in (root / name, root / "wider_attribute_annotation" / name):
            if cand.exists():
                return cand
        return common.require_file(root / name, "WIDER-Attribute annotation file",
                                   "Extract wider_attribute_annotation.zip into manual_dir.")

    @staticmethod
    def _image_path(root: epath.Path, file_name: str) -> epath.Path:
        for cand in (root / "Image" / file_name, *(root / "Image" / sub / file_name
                                                   for sub in ("train", "val", "test"))):
            if cand.exists():
                return cand
        return root / "Image" / file_name  # read_image reports it as missing

    def _generate_examples(self, root: epath.Path, ann: epath.Path, split: str):
        data = common.load_json(ann, "WIDER-Attribute annotation file")
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise DataError(ann, "expected a JSON object with an 'images' list.")
        counter = self._new_counter()
        empty_boxes, yielded = [], 0
        test = split == "test"
        for i, entry in enumerate(data["images"]):
            try:
                file_name = str(entry["file_name"])
                targets = list(entry["targets"])
            except (KeyError, TypeError) as e:
                raise DataError(ann, f"images[{i}] lacks 'file_name' or 'targets' ({e}).") from e
            path = self._image_path(root, file_name)
            data_bytes = self._image(path, counter)
            if data_bytes is None:
                continue
            im = common.open_rgb(path, data_bytes, counter)
            if im is None:
                continue
            for p, target in enumerate(targets):
                attr = np.asarray(target.get("attribute", ()), dtype=np.float64) \
                    if isinstance(target, dict) else np.zeros(0)
                bbox = target.get("bbox") if isinstance(target, dict) else None
                if attr.shape != (len(WIDER_ATTRIBUTES),) or not np.isin(attr, (-1, 0, 1)).all():
                    raise DataError(ann, f"images[{i}] ({file_name}) person {p}: 'attribute' must be "
                                    f"{len(WIDER_ATTRIBUTES)} values in {{-1, 0, 1}} (label out of "
                                    f"range), got {target.get('attribute') if isinstance(target, dict) else target!r}.")
                if not valid_bbox(bbox):
                    raise DataError(ann, f"images[{i}] ({file_name}) person {p}: 'bbox' must be "
                                    f"[x, y, w, h] (4 numbers), got {bbox!r}.")
                box = crop_box(bbox, *im.size, mode=self.builder_config.crop_mode)
                key = f"{file_name}#{p}"
                if box is None:
                    empty_boxes.append(key)
                    continue
                labels = (attr == 1).astype(np.int8)
                ignore = (attr == 0).astype(np.int8) if test else np.zeros_like(labels)
                crop = encode(im.crop(box), self.builder_config.crop_format)
                yielded += 1
                yield key, common.example(crop, labels, ignore, key,
                                          bbox=np.asarray(bbox, np.float32))
        counter.report(self.name, split)
        if empty_boxes:
            print(f"[{self.name}/{split}] skipped {len(empty_boxes)} person(s) whose bbox has "
                  f"no area ({self.builder_config.crop_mode}): {', '.join(empty_boxes[:10])}",
                  file=sys.stderr, flush=True)
        if not yielded:
            raise DataError(ann, f"split {split!r} has no examples: every person was skipped "
                            "(see the counts above).", "Fix or restore the listed images.")
