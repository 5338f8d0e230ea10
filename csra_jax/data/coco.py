"""MS-COCO 2014 multi-label builder (train2014/, val2014/, annotations/ JSON).

80 classes in ascending COCO category-id order (the id gaps 12, 26, 29, 30, 45, 66,
68, 69, 71, 83 are skipped), i.e. `COCO_CLASSES[i]` is the i-th smallest category id.
All instance annotations count, crowd ones included, as in the official CSRA
preparation. Images without any annotation are dropped by default (config
'default'; use config='keep_empty' to keep them as all-negative examples). The JSON
is parsed with the standard library; pycocotools is not needed.
"""

from __future__ import annotations

import dataclasses

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from csra_jax.data import common
from csra_jax.data.errors import DataError, require_dir

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "stop sign", "parking meter", "bench",
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
    "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis",
    "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
    "surfboard", "tennis racket", "bottle", "wine glass", "cup", "fork", "knife",
    "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)


@dataclasses.dataclass
class Coco2014Config(tfds.core.BuilderConfig):
    drop_empty: bool = True


def parse_instances(path: epath.Path) -> tuple[list[dict], dict[int, set[int]], list[int]]:
    """Returns (images, {image_id: set(category_id)}, sorted category ids)."""
    data = common.load_json(path, "COCO instances file")
    if not isinstance(data, dict):
        raise DataError(path, "expected a JSON object with 'images', 'annotations', "
                        "'categories'.")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(path, f"missing or non-list key {key!r} (not a COCO instances file?).")
    try:
        cat_ids = sorted(int(c["id"]) for c in data["categories"])
        images = [{"id": int(im["id"]), "file_name": str(im["file_name"])}
                  for im in data["images"]]
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(path, f"malformed category/image entry ({type(e).__name__}: {e}).") from e
    known_images = {im["id"] for im in images}
    known_cats = set(cat_ids)
    cats_of: dict[int, set[int]] = {}
    for i, ann in enumerate(data["annotations"]):
        try:
            image_id, cat_id = int(ann["image_id"]), int(ann["category_id"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(path, f"annotation #{i} is malformed ({type(e).__name__}: {e}).") from e
        if cat_id not in known_cats:
            raise DataError(path, f"annotation #{i} (id {ann.get('id')}) has category_id "
                            f"{cat_id}, not among the file's categories (label out of range).")
        if image_id not in known_images:
            raise DataError(path, f"annotation #{i} (id {ann.get('id')}) refers to image_id "
                            f"{image_id}, which is not in 'images'.")
        cats_of.setdefault(image_id, set()).add(cat_id)
    return images, cats_of, cat_ids


class Coco2014(common.MultiLabelBuilder):
    """MS-COCO 2014 multi-label classification (80 classes; train / val)."""

    CLASS_NAMES = COCO_CLASSES
    HOMEPAGE = "https://cocodataset.org/"
    BUILDER_CONFIGS = [
        Coco2014Config(name="default", description="Images without annotations dropped."),
        Coco2014Config(name="keep_empty", drop_empty=False,
                       description="Images without annotations kept (all negative)."),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download train2014.zip, val2014.zip and annotations_trainval2014.zip from
  cocodataset.org and extract them into manual_dir, giving manual_dir/train2014/,
  manual_dir/val2014/ and manual_dir/annotations/instances_{train,val}2014.json.
  """

    def _split_generators(self, dl_manager):
        root = common.resolve_manual_dir(dl_manager, self.name)
        out = {}
        for split in ("train", "val"):
            require_dir(root / f"{split}2014", f"COCO {split}2014 image folder",
                        f"Extract {split}2014.zip into manual_dir.")
            ann = root / "annotations" / f"instances_{split}2014.json"
            common.require_file(ann, "COCO instances file",
                                "Extract annotations_trainval2014.zip into manual_dir.")
            out[split] = self._generate_examples(root, split)
        return out

    def _generate_examples(self, root: epath.Path, split: str):
        ann = root / "annotations" / f"instances_{split}2014.json"
        images, cats_of, cat_ids = parse_instances(ann)
        if len(cat_ids) != len(COCO_CLASSES):
            raise DataError(ann, f"has {len(cat_ids)} categories; COCO 2014 has 80.")
        index = {c: i for i, c in enumerate(cat_ids)}
        counter = self._new_counter()
        for im in images:
            cats = cats_of.get(im["id"], set())
            if not cats and self.builder_config.drop_empty:
                continue
            labels = np.zeros(len(COCO_CLASSES), np.int8)
            labels[[index[c] for c in cats]] = 1
            image = self._image(root / f"{split}2014" / im["file_name"], counter)
            if image is None:
                continue
            yield im["file_name"], common.example(image, labels, np.zeros_like(labels),
                                                  im["file_name"])
        counter.report(self.name, split)
