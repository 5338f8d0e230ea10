"""PASCAL VOC 2007 / 2012 classification builders (VOCdevkit folders, no TensorFlow).

Labels follow the official VOC classification protocol as the CSRA code uses it:
a class is positive if the image has at least one object of it. If *all* its objects
in an image are `difficult`, the class is positive-but-ignored in the test split
(labels=1, ignore=1; VOC's evaluation leaves such images out of that class's AP) and
negative in trainval (labels=0, ignore=0), as the official CSRA preparation does.
VOC2012 test has no public labels: its examples have labels=0 and ignore=1 everywhere
(predictions go to the evaluation server).
"""

from __future__ import annotations

from etils import epath
import numpy as np

from csra_jax.data import common
from csra_jax.data.errors import DataError, require_dir, require_file

# The standard VOC class order (alphabetical), index = position in `labels`.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
_CLASS_INDEX = {c: i for i, c in enumerate(VOC_CLASSES)}


def find_voc_root(manual_dir: epath.Path, year: str) -> epath.Path:
    """Accepts `<dir>/VOCdevkit/VOC<year>`, `<dir>=VOCdevkit` or `<dir>=VOC<year>`."""
    for cand in (manual_dir / "VOCdevkit" / f"VOC{year}", manual_dir / f"VOC{year}",
                 manual_dir):
        if (cand / "Annotations").is_dir() or (cand / "ImageSets").is_dir():
            return cand
    raise DataError(manual_dir / "VOCdevkit" / f"VOC{year}",
                    f"VOC{year} folder not found (missing directory).",
                    f"Extract the VOC{year} archives into manual_dir so that "
                    f"manual_dir/VOCdevkit/VOC{year}/{{Annotations,JPEGImages,ImageSets}} "
                    "exist.")


def read_image_ids(path: epath.Path) -> list[str]:
    require_file(path, "VOC image-set list",
                 "Extract the VOC archive(s) holding this split (ImageSets/Main).")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(path, "image-set list is empty.")
    return ids


def parse_annotation(xml_path: epath.Path, test: bool) -> tuple[np.ndarray, np.ndarray]:
    """(labels, ignore) for one VOC XML file under the split's protocol."""
    root = common.parse_xml(xml_path, "VOC annotation")
    has_easy = np.zeros(len(VOC_CLASSES), bool)
    has_difficult = np.zeros(len(VOC_CLASSES), bool)
    for obj in root.iter("object"):
        name_el = obj.find("name")
        if name_el is None or not (name_el.text or "").strip():
            raise DataError(xml_path, "an <object> has no <name>.", "Re-extract the annotations.")
        name = name_el.text.strip()
        if name not in _CLASS_INDEX:
            raise DataError(xml_path, f"unknown VOC class {name!r} (label out of range; expected "
                            f"one of {', '.join(VOC_CLASSES)}).")
        diff_el = obj.find("difficult")
        text = (diff_el.text or "0").strip() if diff_el is not None else "0"
        if text not in ("0", "1"):
            raise DataError(xml_path, f"<difficult> of a {name!r} object is {text!r}, not 0 or 1.")
        (has_difficult if text == "1" else has_easy)[_CLASS_INDEX[name]] = True
    difficult_only = has_difficult & ~has_easy
    if test:
        labels = has_easy | difficult_only
        ignore = difficult_only
    else:
        labels = has_easy
        ignore = np.zeros_like(has_easy)
    return labels.astype(np.int8), ignore.astype(np.int8)


class _VocBase(common.MultiLabelBuilder, skip_registration=True):
    """PASCAL VOC multi-label classification (20 classes)."""

    YEAR = ""
    CLASS_NAMES = VOC_CLASSES
    HOMEPAGE = "http://host.robots.ox.ac.uk/pascal/VOC/"
    OPTIONAL_SPLITS = ()

    def _split_generators(self, dl_manager):
        root = find_voc_root(common.resolve_manual_dir(dl_manager, self.name), self.YEAR)
        require_dir(root / "JPEGImages", f"VOC{self.YEAR} JPEGImages folder")
        splits = {}
        for split in ("trainval", "test"):
            if split in self.OPTIONAL_SPLITS and not (root / "ImageSets/Main" / f"{split}.txt").exists():
                print(f"[{self.name}] {root}/ImageSets/Main/{split}.txt not found: building without "
                      f"the {split} split.")
                continue
            splits[split] = self._generate_examples(root, split)
        return splits

    def _generate_examples(self, root: epath.Path, split: str):
        counter = self._new_counter()
        test = split == "test"
        unlabelled = test and self.YEAR == "2012"
        for image_id in read_image_ids(root / "ImageSets/Main" / f"{split}.txt"):
            if unlabelled:
                labels = np.zeros(len(VOC_CLASSES), np.int8)
                ignore = np.ones(len(VOC_CLASSES), np.int8)
            else:
                labels, ignore = parse_annotation(root / "Annotations" / f"{image_id}.xml", test)
            image = self._image(root / "JPEGImages" / f"{image_id}.jpg", counter)
            if image is None:
                continue
            yield image_id, common.example(image, labels, ignore, image_id)
        counter.report(self.name, split)


class Voc2007(_VocBase):
    """PASCAL VOC 2007 multi-label classification (trainval / test)."""

    YEAR = "2007"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar and extract both
  into manual_dir (they merge into manual_dir/VOCdevkit/VOC2007/).
  """


class Voc2012(_VocBase):
    """PASCAL VOC 2012 multi-label classification (trainval; test = images only)."""

    YEAR = "2012"
    OPTIONAL_SPLITS = ("test",)
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download VOCtrainval_11-May-2012.tar (and, for the unlabelled test split, the
  VOC2012 test tar from the evaluation server) and extract into manual_dir
  (manual_dir/VOCdevkit/VOC2012/).
  """
