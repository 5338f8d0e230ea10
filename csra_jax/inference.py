"""Inference with a trained or converted model, using exactly the evaluation preprocessing.

    p = Predictor.from_workdir("/tmp/csra_demo")           # best checkpoint, else latest
    p = Predictor.from_converted("converted/coco_r101", class_names=names)
    probs = p.predict_probs(images)       # uint8 / [0, 1] float arrays or PIL images
    maps = p.attention_maps(image)        # (C, h, w) CSRA attention, csra_jax.visualize

Images are resized to (S, S) with PIL bilinear (the whole image, no crop, no JPEG draft
decoding: the official CSRA test transform) and normalised as the model's config says,
like ``csra_jax.data.transforms.decode_eval``; files go
through ``decode_eval`` itself (grayscale is replicated to RGB, an alpha channel dropped,
EXIF orientation ignored: all as in evaluation). The forward pass is jitted once per batch size; a short
last batch is padded, so any number of images costs one compilation.

A training workdir (a local path or ``gs://``) holds ``config.json`` and
``class_names.json`` (see ``csra_jax.run``), so it rebuilds its model without the config
file or the dataset.
"""

from __future__ import annotations

import io
import json
import os
import re
import warnings
from typing import Any, Optional, Sequence

import jax
import ml_collections
import numpy as np
from PIL import Image

from csra_jax.data import transforms
from csra_jax.data.input_spec import InputSpec
# read_class_names and save_run_config: re-exported for predict and existing callers.
from csra_jax.run.class_names import (default_class_names, load_class_names,
                                      read_class_names)  # noqa: F401
from csra_jax.run.config_file import load_run_config, save_run_config  # noqa: F401
from csra_jax.run.paths import RunDir
from csra_jax.run.restore import checkpoint_num_classes, find_checkpoint, restore_variables
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
# A task's ``activation`` name -> what turns logits (B, C) into class probabilities.
ACTIVATIONS = {"sigmoid": jax.nn.sigmoid, "softmax": lambda x: jax.nn.softmax(x, axis=-1)}


class ImageReadError(ValueError):
    """A file that is not a readable image of a supported format."""


# ------------------------------------------------------------ run configs
def config_from_file(path: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """A config file plus ``--config.field=value`` overrides, parsed as ``csra_jax.main`` does."""
    from absl import flags
    from ml_collections import config_flags
    from csra_jax.cli_checks import flag_error_message

    def parse(args, base=None):
        fv, argv = flags.FlagValues(), ["predict", f"--config={path}", *args]
        config_flags.DEFINE_config_file("config", None, "config file", flag_values=fv,
                                        lock_config=True, sys_argv=argv)
        try:
            fv(argv)
        except flags.Error as e:
            if base is None:
                raise ValueError(f"config {path!r}: {e}") from None
            raise ValueError(flag_error_message(e, argv, base)) from None
        return fv.config

    base = parse([])
    for item in overrides:
        field = item[len("--config."):].split("=", 1)[0]
        node = base
        for key in field.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or key not in node:
                raise ValueError(f"unknown config field {field!r} (the fields are in "
                                 "csra_jax/config.py)")
            node = node[key]
    return parse(list(overrides), base) if overrides else base


# ------------------------------------------------------------ class names
def dataset_class_names(config) -> Optional[tuple]:
    """Class names of the config's dataset: prepared metadata, else the static list."""
    from csra_jax import data as data_lib
    d = config.data
    try:
        info = data_lib.get_dataset_info(d.name, os.path.expanduser(d.data_dir),
                                         d.builder_config or None)
        return tuple(info.class_names)
    except (data_lib.DataError, OSError):  # not prepared on this machine: use the registry
        info = data_lib.DATASETS.get(d.name)
        return None if info is None or info.class_names is None else tuple(info.class_names)


def _check_names(names, num_classes: int, source: str) -> tuple:
    if names is None:
        return default_class_names(num_classes)
    if len(names) != num_classes:
        raise ValueError(f"{source} gives {len(names)} class names but the model has "
                         f"{num_classes} classes.")
    return tuple(names)


# ------------------------------------------------------------ images
def set_max_image_pixels(limit: Optional[int]) -> None:
    """Files with more pixels are refused (None or 0: no limit). This is PIL's process-wide
    decompression-bomb limit (default 89,478,485), so the evaluation decode sees the same
    one; PIL itself only warns above it (and fails above twice it), read_image_file refuses."""
    Image.MAX_IMAGE_PIXELS = limit or None


def _too_large(error: Exception) -> str:
    found = re.search(r"\((\d+) pixels\)", str(error))
    size = f"{int(found.group(1)):,} pixels" if found else "its size"
    return (f"image too large: {size}, above the limit of {Image.MAX_IMAGE_PIXELS:,} "
            "(PIL's decompression-bomb guard; decoding takes about 3 bytes a pixel); raise "
            "--max_image_pixels for a file you trust, or downscale it")


def read_image_file(path: str) -> bytes:
    """The file's bytes, after checking it opens as a supported image no larger than the
    pixel limit (``set_max_image_pixels``), with one-line errors. Only the header is read."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageReadError(f"cannot read file ({e.strerror or e})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            fmt = Image.open(io.BytesIO(data)).format
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ImageReadError(_too_large(e)) from None
    except Exception:
        raise ImageReadError("unknown format or corrupt file: not a readable image "
                             f"(supported: {', '.join(SUPPORTED_FORMATS)})") from None
    if fmt not in SUPPORTED_FORMATS:
        raise ImageReadError(f"unsupported format {fmt} (supported: "
                             f"{', '.join(SUPPORTED_FORMATS)})")
    return data


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Encoded bytes -> uint8 (size, size, 3) through the evaluation transform (the
    official test transform: full decode, no JPEG draft scaling)."""
    try:
        return transforms.decode_eval(data, size, draft=False)
    except Exception as e:  # truncated / corrupt payloads fail only when decoded
        raise ImageReadError(f"corrupt image ({e})") from None


def open_rgb(data: bytes) -> Image.Image:
    """The full-resolution RGB image (for overlays)."""
    return transforms._rgb(Image.open(io.BytesIO(data)))


# ------------------------------------------------------------ the predictor
class Predictor:
    """Images -> class probabilities and attention maps for one model.

    Args:
      model, variables: a ``Classifier`` and its ``{"params", ["batch_stats"]}``.
      image_size: S, the evaluation resolution.
      normalization: a name of ``transforms.NORMALIZATIONS`` or ``(mean, std)``.
      class_names: one per class (default ``class_0..``).
      batch_size: images per forward pass.
      activation: "sigmoid" (multi-label) or "softmax" (single-label runs).
    """

    def __init__(self, model, variables, image_size: int, normalization: Any = "resnet",
                 class_names: Optional[Sequence[str]] = None, batch_size: int = 16,
                 activation: str = "sigmoid"):
        # The evaluation transform: (S, S) resize and this normalisation (bad values fail here).
        self.spec = InputSpec(int(image_size), normalization)
        self.mean, self.std = self.spec.mean_std
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)} (a task's "
                             f"``activation``), got {activation!r}")
        self.model, self.variables = model, variables
        self.image_size, self.batch_size = int(image_size), int(batch_size)
        self.fixed_batch = False  # True: pad every batch to batch_size (one compilation)
        self.num_classes = int(model.head.num_classes)
        self.class_names = _check_names(class_names, self.num_classes, "class_names")
        act = ACTIVATIONS[activation]
        self._probs = jax.jit(lambda v, x: act(model.apply(v, x, train=False)))

        def with_attention(v, x):
            logits, maps = model.apply(v, x, method="logits_and_maps")
            return act(logits), maps.attention
        self._with_attention = jax.jit(with_attention)

    # ---------------------------------------------------------- loaders
    @classmethod
    def from_config(cls, config, step_dir: str, class_names=None, *, run_class_names=None,
                    **kwargs) -> "Predictor":
        """A training checkpoint (step dir) with the config it was trained with.

        Without ``class_names``: the run's recorded names (``run_class_names``), else the
        dataset's; either is passed over when its count is not the checkpoint's."""
        from csra_jax.models.from_config import model_from_config
        num_classes = checkpoint_num_classes(step_dir)
        model = model_from_config(config, num_classes)
        variables = restore_variables(step_dir, model, config.data.image_size)
        source = "class_names"
        if class_names is None and run_class_names is not None:
            class_names = run_class_names if len(run_class_names) == num_classes else None
        if class_names is None:
            class_names, source = dataset_class_names(config), f"dataset {config.data.name!r}"
            if class_names is not None and len(class_names) != num_classes:
                class_names = None  # e.g. another build of multilabel_json: keep going
        from csra_jax.tasks import get_task
        kwargs.setdefault("activation", get_task(config.task).activation)
        return cls(model, variables, config.data.image_size, config.data.normalization,
                   _check_names(class_names, num_classes, source), **kwargs)

    @classmethod
    def from_workdir(cls, workdir: str, config=None, which: str = "best", class_names=None,
                     **kwargs) -> "Predictor":
        """The best (else latest) checkpoint of a training run; ``config`` defaults to
        ``workdir/config.json``."""
        step_dir = find_checkpoint(workdir, which)
        config = config if config is not None else load_run_config(workdir)
        if config is None:
            raise FileNotFoundError(
                f"{str(RunDir(workdir).config)!r} not found (runs from before it was "
                "written); pass the training config: --config CFG [--config.field=value ...].")
        saved = load_class_names(workdir) if class_names is None else None
        return cls.from_config(config, step_dir, class_names, run_class_names=saved, **kwargs)

    @classmethod
    def from_converted(cls, path: str, image_size: Optional[int] = None,
                       normalization: Optional[Any] = None, class_names=None,
                       **kwargs) -> "Predictor":
        """A directory written by ``python -m csra_jax.convert`` (model.json + variables/).

        Defaults: S = model.json's img_size (448 if absent); the normalisation the arch's
        weights expect (its ``BackboneSpec.normalization``: "vit" for ViTs, "imagenet" for
        MobileNet/EfficientNet, torchvision's weights; "resnet", [0, 1], for the official
        CSRA ResNets).
        """
        from csra_jax.convert import load_converted
        from csra_jax.convert.converted_checkpoint import MODEL_JSON
        path = os.path.expanduser(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"checkpoint {path!r} does not exist.")
        model, variables = load_converted(path)  # explains a dir without model.json
        with open(os.path.join(path, MODEL_JSON)) as f:
            meta = json.load(f)
        if image_size is None:
            image_size = meta.get("img_size", 448)
        if normalization is None:
            from csra_jax.models.registry import backbone_spec
            normalization = backbone_spec(meta["arch"]).normalization
        return cls(model, variables, image_size, normalization, class_names, **kwargs)

    # ---------------------------------------------------------- inputs
    def _one(self, image) -> np.ndarray:
        s = (self.image_size, self.image_size)
        if isinstance(image, Image.Image):
            arr = np.asarray(transforms._rgb(image).resize(s, Image.BILINEAR))
            return transforms.normalize(arr, self.mean, self.std)
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
            raise ValueError(f"expected an image (H, W), (H, W, 1|3|4), got shape {arr.shape}")
        arr = np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else arr[..., :3]
        if arr.dtype == np.uint8:
            if arr.shape[:2] != s[::-1]:
                arr = np.asarray(Image.fromarray(arr).resize(s, Image.BILINEAR))
            return transforms.normalize(arr, self.mean, self.std)
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"expected uint8 (0-255) or float (0-1) images, got {arr.dtype}")
        arr = arr.astype(np.float32)
        if arr.shape[:2] != s[::-1]:
            arr = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., c]))
                                       .resize(s, Image.BILINEAR)) for c in range(3)], -1)
        return (arr - self.mean) / self.std

    def preprocess(self, images) -> np.ndarray:
        """A batch (B, H, W[, C]), one image (H, W[, C]) or a list of arrays / PIL images
        (any sizes; uint8 in 0-255 or float in 0-1) -> normalised float32 (B, S, S, 3)."""
        if isinstance(images, Image.Image):
            images = [images]
        elif not isinstance(images, (list, tuple)):
            arr = np.asarray(images)
            single = arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (1, 3, 4))
            images = [arr] if single else list(arr)
        if not len(images):
            raise ValueError("no images given")
        return np.stack([self._one(im) for im in images]).astype(np.float32)

    def _run(self, fn, images):
        x = self.preprocess(images)
        b = self.batch_size if self.fixed_batch else min(self.batch_size, len(x))
        outs = []
        for i in range(0, len(x), b):
            chunk = x[i:i + b]
            n = len(chunk)
            if n < b:  # same shape as the other batches: no second compilation
                chunk = np.concatenate([chunk, np.zeros((b - n,) + chunk.shape[1:], np.float32)])
            out = jax.device_get(fn(self.variables, chunk))
            outs.append(jax.tree.map(lambda a: np.asarray(a[:n]), out))
        return jax.tree.map(lambda *a: np.concatenate(a), *outs)

    # ---------------------------------------------------------- outputs
    def predict_probs(self, images) -> np.ndarray:
        """Class probabilities (B, C): sigmoid of the logits (softmax for single-label)."""
        return self._run(self._probs, images)

    def predict_with_attention(self, images):
        """``(probs (B, C), maps (B, C, h, w))`` in one backbone pass per batch."""
        return self._run(self._with_attention, images)

    def attention_maps(self, image) -> np.ndarray:
        """One image -> every class's map (C, h, w) on the feature grid (see visualize)."""
        return self.predict_with_attention([image])[1][0]

    def load_file(self, path: str) -> np.ndarray:
        """A JPEG/PNG file -> uint8 (S, S, 3), decoded exactly as in evaluation."""
        return decode_image(read_image_file(path), self.image_size)
