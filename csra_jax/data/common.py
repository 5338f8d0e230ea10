"""Shared pieces of the TensorFlow-free multi-label TFDS builders.

What works without TensorFlow here (tfds 4.9.10, checked): `GeneratorBasedBuilder`
with `file_format='array_record'`, `download_and_prepare(download_config=
DownloadConfig(manual_dir=...))`, `tfds.features.Tensor` (including `np.object_` bytes
scalars), `tfds.features.Text`, `tfds.core.MetadataDict`, `builder_from_directory` and
`as_data_source`. `self.dataset_info_from_configs` is avoided: it looks for metadata
files next to the builder's module. Images are stored as the *original encoded bytes*
(a bytes `Tensor`, not `tfds.features.Image`) so that nothing is re-encoded at build
time and the pipeline decodes with PIL itself (one resize).

Every example has the same four features:
  image:  encoded JPEG/PNG bytes
  labels: int8 multi-hot (C,), class order = `metadata['class_names']`
  ignore: int8 (C,), 1 = leave this label out of metrics (it is still in `labels`)
  id:     text id (VOC image id, COCO file name, WIDER "file#person", ...)
"""

from __future__ import annotations

import io
import json
import re
import sys
import xml.etree.ElementTree as ET
from typing import Any, Sequence

from absl import logging
from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from csra_jax.data.errors import DataError, PathLike, require_dir, require_file

ON_CORRUPT_CHOICES = ("error", "skip")
CORRUPT_FIX = ("Re-download / re-extract it, or build with on_corrupt='skip' to skip "
               "such images (they are counted and reported at the end).")


class CorruptImageCounter:
    """Counts images skipped with on_corrupt='skip' and reports them once at the end."""

    def __init__(self, policy: str):
        if policy not in ON_CORRUPT_CHOICES:
            raise ValueError(f"on_corrupt must be one of {ON_CORRUPT_CHOICES}, got {policy!r}")
        self.policy = policy
        self.skipped: list[str] = []

    def handle(self, path: PathLike, reason: str) -> None:
        if self.policy == "error":
            raise DataError(path, f"unreadable or truncated image ({reason}).", CORRUPT_FIX)
        self.skipped.append(str(path))
        logging.warning("Skipping corrupt image %s (%s)", path, reason)

    def report(self, dataset: str, split: str) -> None:
        """Prints the count (always, so a zero is visible too when skipping is enabled)."""
        if self.policy != "skip":
            return
        n = len(self.skipped)
        msg = f"[{dataset}/{split}] skipped {n} corrupt image(s)"
        if n:
            msg += ": " + ", ".join(self.skipped[:10]) + (" ..." if n > 10 else "")
        print(msg, file=sys.stderr, flush=True)
        logging.info(msg)


def image_error(e: Exception) -> str:
    """A short reason for a PIL failure, without the in-memory stream PIL names."""
    if isinstance(e, Image.UnidentifiedImageError):
        return "not a recognised image format"
    text = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the data", str(e))
    return f"{type(e).__name__}: {text}"


def verify_image_bytes(data: bytes) -> tuple[int, int]:
    """Fully decodes `data` (cheaply: JPEGs at 1/8 scale) and returns (width, height).

    Raises whatever PIL raises for unreadable or truncated files. Truncation is only
    detected by decoding the whole entropy-coded stream, hence `load()`.
    """
    with Image.open(io.BytesIO(data)) as im:
        size = im.size
        if im.format == "JPEG":
            im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
        im.load()
    return size


def read_image(path: epath.Path, counter: CorruptImageCounter,
               verify: bool = True) -> bytes | None:
    """Returns the file's bytes, or None if corrupt and the policy is 'skip'."""
    if not path.exists():
        raise DataError(path, "image listed in the annotations but not found (missing file).",
                        "Check that the image folder is complete and in the documented place.")
    data = path.read_bytes()
    if not data:  # checked even without verification: nothing can decode it
        counter.handle(path, "empty file, 0 bytes")
        return None
    if verify:
        try:
            verify_image_bytes(data)
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ...
            counter.handle(path, image_error(e))
            return None
    return data


def open_rgb(path: PathLike, data: bytes, counter: CorruptImageCounter) -> Image.Image | None:
    """`Image.open(...).convert("RGB")` (fully decoded), or None if corrupt and skipping;
    with on_corrupt='error' a corrupt file raises a DataError naming `path`."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ...
        counter.handle(path, image_error(e))
        return None


def load_json(path: epath.Path, what: str) -> Any:
    """json.loads with a DataError naming the file and the position on failure."""
    require_file(path, what)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON in {what}: {e.msg} at line {e.lineno} "
                        f"column {e.colno}.", "Re-download the file or fix its syntax.") from e
    except UnicodeDecodeError as e:
        raise DataError(path, f"{what} is not UTF-8 text ({e}).") from e


def parse_xml(path: epath.Path, what: str) -> ET.Element:
    """ElementTree parse with a DataError naming the file on failure."""
    require_file(path, what)
    try:
        return ET.fromstring(path.read_bytes())
    except ET.ParseError as e:
        raise DataError(path, f"malformed XML in {what}: {e}.",
                        "Re-extract the annotation archive.") from e


def resolve_manual_dir(dl_manager, builder_name: str) -> epath.Path:
    """The manual dir as a Path, with our message (not tfds' assert) when missing."""
    path = getattr(dl_manager, "_manual_dir", None)
    if path is None:
        raise DataError(None, f"{builder_name} needs manual_dir: the folder holding the "
                        "official downloads (see the README's Datasets section).")
    return require_dir(path, f"{builder_name} manual_dir",
                       "Pass the folder holding the official downloads (README, Datasets).")


class MultiLabelBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base class: common features, class-name metadata and the corrupt-image policy.

    Args (besides the usual tfds ones):
      on_corrupt: 'error' (default) raises on the first unreadable/truncated image;
        'skip' leaves such images out and prints how many were skipped per split.
      verify_images: decode every image once at build time (default True) so corrupt
        files are found now, not in the middle of training.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    CLASS_NAMES: Sequence[str] = ()
    HOMEPAGE = ""
    EXTRA_FEATURES: dict = {}

    def __init__(self, *, on_corrupt: str = "error", verify_images: bool = True, **kwargs):
        self._counter = CorruptImageCounter(on_corrupt)  # validates on_corrupt early
        self._on_corrupt = on_corrupt
        self._verify_images = verify_images
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    def class_names(self) -> tuple[str, ...]:
        return tuple(self.CLASS_NAMES)

    def _info(self) -> tfds.core.DatasetInfo:
        names = self.class_names()
        n = len(names)
        features = {
            "image": tfds.features.Tensor(shape=(), dtype=np.object_),
            "labels": tfds.features.Tensor(shape=(n,), dtype=np.int8),
            "ignore": tfds.features.Tensor(shape=(n,), dtype=np.int8),
            "id": tfds.features.Text(),
            **self.EXTRA_FEATURES,
        }
        return tfds.core.DatasetInfo(
            builder=self,
            description=(self.__doc__ or "").strip().split("\n")[0],
            features=tfds.features.FeaturesDict(features),
            metadata=tfds.core.MetadataDict(class_names=list(names)),
            homepage=self.HOMEPAGE or None,
        )

    def _new_counter(self) -> CorruptImageCounter:
        return CorruptImageCounter(self._on_corrupt)

    def _image(self, path: epath.Path, counter: CorruptImageCounter) -> bytes | None:
        return read_image(path, counter, verify=self._verify_images)


def example(image: bytes, labels: np.ndarray, ignore: np.ndarray, id_: str,
            **extra) -> dict[str, Any]:
    return {"image": image, "labels": np.asarray(labels, np.int8),
            "ignore": np.asarray(ignore, np.int8), "id": id_, **extra}
