"""WIDER-Attribute builder: one example per annotated person, cropped by its bbox.

Input: manual_dir/Image/... (the released image folder) and
manual_dir/wider_attribute_{trainval,test}.json (the released annotation files; also
accepted under manual_dir/wider_attribute_annotation/). Each JSON 'images' entry has a
'file_name' and 'targets' [{'bbox': [x, y, w, h], 'attribute': [14 values]}].
Attribute values: 1 positive, -1 negative, 0 unspecified -> negative in trainval,
ignored in test (labels=0, ignore=1), as the CSRA evaluation does.

The crop (bbox clipped to the image, as the official code crops with PIL) is
re-encoded: JPEG quality 95 by default (config 'default'), lossless PNG with
config='png'. Boxes that are empty after clipping are skipped and counted (printed).
"""

from __future__ import annotations

import dataclasses
import io
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


@dataclasses.dataclass
class WiderAttributeConfig(tfds.core.BuilderConfig):
    crop_format: str = "jpeg"  # 'jpeg' (quality 95) or 'png'


def crop_box(bbox, width: int, height: int) -> tuple[int, int, int, int] | None:
    """[x, y, w, h] -> integer (left, top, right, bottom) clipped to the image."""
    x, y, w, h = (float(v) for v in bbox)
    left, top = max(0, int(round(x))), max(0, int(round(y)))
    right, bottom = min(width, int(round(x + w))), min(height, int(round(y + h)))
    if right - left < 1 or bottom - top < 1:
        return None
    return left, top, right, bottom


def encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "png":
        im.save(buf, "PNG")
    else:
        im.save(buf, "JPEG", quality=95)
    return buf.getvalue()


class WiderAttribute(common.MultiLabelBuilder):
    """WIDER-Attribute: 14 person attributes, one example per person (trainval / test)."""

    CLASS_NAMES = WIDER_ATTRIBUTES
    HOMEPAGE = "http://mmlab.ie.cuhk.edu.hk/projects/WIDERAttribute.html"
    EXTRA_FEATURES = {"bbox": tfds.features.Tensor(shape=(4,), dtype=np.float32)}
    BUILDER_CONFIGS = [
        WiderAttributeConfig(name="default", description="Crops stored as JPEG q95."),
        WiderAttributeConfig(name="png", crop_format="png",
                             description="Crops stored as lossless PNG."),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
  From the WIDER-Attribute page download the images (Image.zip) and the annotations
  (wider_attribute_annotation.zip); extract so that manual_dir/Image/ and
  manual_dir/wider_attribute_trainval.json, manual_dir/wider_attribute_test.json exist.
  """

    def _split_generators(self, dl_manager):
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
        empty_boxes = []
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
            with Image.open(io.BytesIO(data_bytes)) as im:
                im = im.convert("RGB")
                for p, target in enumerate(targets):
                    attr = np.asarray(target.get("attribute", ()), dtype=np.float64) \
                        if isinstance(target, dict) else np.zeros(0)
                    bbox = target.get("bbox") if isinstance(target, dict) else None
                    if attr.shape != (len(WIDER_ATTRIBUTES),) or not np.isin(attr, (-1, 0, 1)).all():
                        raise DataError(ann, f"images[{i}] ({file_name}) person {p}: 'attribute' must be "
                                        f"{len(WIDER_ATTRIBUTES)} values in {{-1, 0, 1}} (label out of "
                                        f"range), got {target.get('attribute') if isinstance(target, dict) else target!r}.")
                    if bbox is None or len(bbox) != 4:
                        raise DataError(ann, f"images[{i}] ({file_name}) person {p}: 'bbox' must be "
                                        f"[x, y, w, h], got {bbox!r}.")
                    box = crop_box(bbox, *im.size)
                    key = f"{file_name}#{p}"
                    if box is None:
                        empty_boxes.append(key)
                        continue
                    labels = (attr == 1).astype(np.int8)
                    ignore = (attr == 0).astype(np.int8) if test else np.zeros_like(labels)
                    crop = encode(im.crop(box), self.builder_config.crop_format)
                    yield key, common.example(crop, labels, ignore, key,
                                              bbox=np.asarray(bbox, np.float32))
        counter.report(self.name, split)
        if empty_boxes:
            print(f"[{self.name}/{split}] skipped {len(empty_boxes)} person(s) whose bbox is "
                  f"empty after clipping to the image: {', '.join(empty_boxes[:10])}",
                  file=sys.stderr, flush=True)
