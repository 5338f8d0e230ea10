"""Per-example image transforms (PIL + numpy), run inside grain workers.

Fidelity and speed (figures from bench/input_pipeline.py):
- Evaluation (`decode_eval`, used by the eval iterator and `Predictor`) is the official
  CSRA test transform exactly: PIL `convert("RGB")`, `resize((S, S), BILINEAR)` (what
  torchvision's `Resize((S, S))` does to a PIL image), then `normalize`, equal to
  `ToTensor` + `Normalize` up to float32 rounding (tests/data/test_data_fidelity.py).
- JPEG draft mode is an opt-in for training only (`draft=True`, config `data.draft`):
  `Image.draft` makes libjpeg decode at 1/2, 1/4 or 1/8 scale via DCT scaling, at the
  smallest scale where the crop keeps at least as many pixels as the output in each
  direction. It only fires when the crop is >= 2x the output in both sides, and then
  changes the pixels (DCT-domain instead of pixel-domain antialiasing): on generated
  640x480 / 1280x960 JPEGs, 1.15-1.64x faster where it fires, inputs off by up to 17
  grey levels. Hence off by default and never used for evaluation.
- Crop and resize happen in one `Image.resize(box=...)` call (bilinear, antialiased
  when reducing, like torchvision on PIL images).
- Images leave the workers as uint8; normalisation to float32 happens once per batch
  (`normalize`), on the accelerator when the pipeline has a mesh.

Augmentation follows the official CSRA training transform: random resized crop
(scale 0.7-1.0, aspect ratio 3/4-4/3, torchvision's sampling), horizontal flip, resize
to the training resolution; optional RandAugment (timm-style 'rand-m9-n2' subset).
Evaluation: resize the whole image to (S, S) (no aspect-preserving crop), as the
official code does.
"""

from __future__ import annotations

import io
import math
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

NORMALIZATIONS = {
    "resnet": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),   # [0, 1] as the official CSRA ResNets
    "vit": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),      # timm ViT: [-1, 1]
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def resolve_normalization(normalization="resnet", mean=None, std=None):
    """(mean, std) as float32 arrays of shape (3,) in [0, 1] units."""
    if mean is not None or std is not None:
        if mean is None or std is None:
            raise ValueError("give both mean and std, or neither")
    else:
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {tuple(NORMALIZATIONS)} or explicit "
                             f"mean/std, got {normalization!r}")
        mean, std = NORMALIZATIONS[normalization]
    mean = np.broadcast_to(np.asarray(mean, np.float32), (3,))
    std = np.broadcast_to(np.asarray(std, np.float32), (3,))
    return mean, std


def normalize(images: np.ndarray, mean: np.ndarray, std: np.ndarray, xp=np):
    """uint8 (..., 3) -> float32 (x / 255 - mean) / std; `xp` may be jax.numpy."""
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    offset = (-mean / std).astype(np.float32)
    return images.astype(xp.float32) * scale + offset


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _draft(im: Image.Image, box: Sequence[float], out: int) -> tuple[Image.Image, tuple]:
    """Applies JPEG draft scaling keeping >= `out` pixels across the crop box."""
    w, h = im.size
    bw, bh = box[2] - box[0], box[3] - box[1]
    req = (max(1, math.ceil(w * out / bw)), max(1, math.ceil(h * out / bh)))
    if im.format == "JPEG" and (req[0] * 2 <= w and req[1] * 2 <= h):
        im.draft("RGB", req)
        sx, sy = im.size[0] / w, im.size[1] / h
        box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    return im, box


def _rgb(im: Image.Image) -> Image.Image:
    return im if im.mode == "RGB" else im.convert("RGB")


def random_resized_crop_box(width: int, height: int, rng: np.random.Generator,
                            scale=(0.7, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple:
    """torchvision RandomResizedCrop.get_params, as (left, top, right, bottom)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        ar = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * ar)))
        h = int(round(math.sqrt(target / ar)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return (left, top, left + w, top + h)
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return (left, top, left + w, top + h)


def decode_train(data: bytes, size: int, rng: np.random.Generator, scale=(0.7, 1.0),
                 ratio=(3 / 4, 4 / 3), hflip: bool = True,
                 randaugment: Optional[tuple[int, int]] = None,
                 draft: bool = False) -> np.ndarray:
    """Encoded image -> uint8 (size, size, 3): crop, resize, flip, RandAugment.

    `draft=True` trades exactness for decode speed on large JPEGs (module docstring)."""
    im = _open(data)
    box = random_resized_crop_box(*im.size, rng, scale, ratio)
    if draft:
        im, box = _draft(im, box, size)
    im = _rgb(im).resize((size, size), Image.BILINEAR, box=box)
    if randaugment is not None:
        im = rand_augment(im, rng, *randaugment)
    arr = np.asarray(im)
    if hflip and rng.random() < 0.5:
        arr = arr[:, ::-1]
    return np.ascontiguousarray(arr)


def decode_eval(data: bytes, size: int, draft: bool = False) -> np.ndarray:
    """Encoded image -> uint8 (size, size, 3), the whole image resized: the official test
    transform before ToTensor. `draft=True` (not the official transform) is for speed
    studies only."""
    im = _open(data)
    box = (0, 0, *im.size)
    if draft:
        im, box = _draft(im, box, size)
    return np.asarray(_rgb(im).resize((size, size), Image.BILINEAR, box=box))


# --- RandAugment (timm 'rand-m{M}-n{N}' op set, magnitudes out of 10) ---------------
_FILL = (128, 128, 128)


def _affine(im, m, kind, rng):
    sign = 1 if rng.random() < 0.5 else -1
    if kind == "rotate":
        return im.rotate(sign * 30.0 * m / 10, resample=Image.BILINEAR, fillcolor=_FILL)
    if kind == "shear_x":
        data = (1, sign * 0.3 * m / 10, 0, 0, 1, 0)
    elif kind == "shear_y":
        data = (1, 0, 0, sign * 0.3 * m / 10, 1, 0)
    elif kind == "translate_x":
        data = (1, 0, sign * 0.45 * m / 10 * im.size[0], 0, 1, 0)
    else:
        data = (1, 0, 0, 0, 1, sign * 0.45 * m / 10 * im.size[1])
    return im.transform(im.size, Image.AFFINE, data, Image.BILINEAR, fillcolor=_FILL)


def _enhance(cls):
    def op(im, m, rng):
        sign = 1 if rng.random() < 0.5 else -1
        return cls(im).enhance(max(0.1, 1.0 + sign * 0.9 * m / 10))
    return op


_RA_OPS = {
    "auto_contrast": lambda im, m, rng: ImageOps.autocontrast(im),
    "equalize": lambda im, m, rng: ImageOps.equalize(im),
    "rotate": lambda im, m, rng: _affine(im, m, "rotate", rng),
    "posterize": lambda im, m, rng: ImageOps.posterize(im, max(1, 8 - int(4 * m / 10))),
    "solarize": lambda im, m, rng: ImageOps.solarize(im, 256 - int(256 * m / 10)),
    "color": _enhance(ImageEnhance.Color),
    "contrast": _enhance(ImageEnhance.Contrast),
    "brightness": _enhance(ImageEnhance.Brightness),
    "sharpness": _enhance(ImageEnhance.Sharpness),
    "shear_x": lambda im, m, rng: _affine(im, m, "shear_x", rng),
    "shear_y": lambda im, m, rng: _affine(im, m, "shear_y", rng),
    "translate_x": lambda im, m, rng: _affine(im, m, "translate_x", rng),
    "translate_y": lambda im, m, rng: _affine(im, m, "translate_y", rng),
}
_RA_NAMES = tuple(_RA_OPS)


def parse_randaugment(spec) -> Optional[tuple[int, int]]:
    """None / (num_ops, magnitude) / 'rand-m9-n2' -> (num_ops, magnitude) or None."""
    if spec is None or spec is False or spec == "":
        return None
    if isinstance(spec, str):
        parts = dict((p[0], int(p[1:])) for p in spec.split("-")[1:])
        return parts.get("n", 2), parts.get("m", 9)
    n, m = spec
    return int(n), int(m)


def rand_augment(im: Image.Image, rng: np.random.Generator, num_ops: int = 2,
                 magnitude: int = 9) -> Image.Image:
    """Applies `num_ops` random ops at `magnitude` (0..10), each with probability 0.5."""
    for k in rng.choice(len(_RA_NAMES), size=num_ops):
        if rng.random() < 0.5:
            im = _RA_OPS[_RA_NAMES[k]](im, magnitude, rng)
    return im
