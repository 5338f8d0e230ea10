"""synthetic_shapes: the embedded demo dataset, generated locally (no download).

Each image holds 1-4 small objects (about 8-20% of the image side) of distinct classes
at random non-overlapping positions, on a textured background (smooth random colour
field + stripes of random orientation + pixel noise). Object colours are random and
only constrained to contrast with the local background, so colour carries no class
information: a model must use shape. Small objects in clutter are where per-class
spatial attention (CSRA) is expected to help over global average pooling, but nothing
here is tuned for either head. Every image is a pure function of (seed, split, index).

Defaults (config 'default'): 128 px images, 2000 train / 500 test, JPEG quality 95;
builds in a few seconds on 2 cores. Other sizes: pass SyntheticShapesConfig(...) or
keyword arguments to `build_dataset('synthetic_shapes', ...)`.
"""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
from PIL import Image, ImageDraw
import tensorflow_datasets as tfds

from csra_jax.data import common
from csra_jax.data.errors import DataError

SHAPES = ("circle", "square", "triangle", "cross", "ring", "star", "stripes", "checker",
          "diamond", "hexagon")
_SPLIT_IDS = {"train": 0, "test": 1}
_SS = 4  # supersampling factor for anti-aliased masks


@dataclasses.dataclass
class SyntheticShapesConfig(tfds.core.BuilderConfig):
    image_size: int = 128
    num_train: int = 2000
    num_test: int = 500
    seed: int = 0
    min_objects: int = 1
    max_objects: int = 4
    min_size: float = 0.08   # object side as a fraction of the image side
    max_size: float = 0.20
    jpeg_quality: int = 95

    def __post_init__(self):
        """Values render() cannot draw (or that leave a split empty) fail here, by name."""
        checks = (
            ("num_train", self.num_train >= 1, "must be >= 1"),
            ("num_test", self.num_test >= 1, "must be >= 1"),
            ("image_size", self.image_size >= 8, "must be >= 8"),
            ("min_objects", 1 <= self.min_objects <= self.max_objects,
             f"must be in 1..max_objects={self.max_objects}"),
            ("max_objects", self.max_objects <= len(SHAPES),
             f"must be <= {len(SHAPES)} (at most one object per class)"),
            ("min_size", 0 < self.min_size <= self.max_size,
             f"must be in (0, max_size={self.max_size}]"),
            ("max_size", self.max_size <= 1, "must be <= 1 (a fraction of the image side)"),
            ("jpeg_quality", 1 <= self.jpeg_quality <= 100, "must be in 1..100"),
            ("seed", self.seed >= 0, "must be >= 0"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise DataError(None, f"synthetic_shapes config: {name}={getattr(self, name)!r} "
                                f"{rule}.")


def _polygon(n: int, r: float, c: float, phase: float) -> list[tuple[float, float]]:
    return [(c + r * math.cos(phase + 2 * math.pi * k / n),
             c + r * math.sin(phase + 2 * math.pi * k / n)) for k in range(n)]


def shape_mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased alpha mask in [0, 1] of shape (size, size) for one object."""
    s = size * _SS
    im = Image.new("L", (s, s), 0)
    d = ImageDraw.Draw(im)
    c, r = s / 2, s / 2 - 1
    rot = math.radians(rng.uniform(-15, 15))
    if shape == "circle":
        d.ellipse([c - r, c - r, c + r, c + r], fill=255)
    elif shape == "ring":
        d.ellipse([c - r, c - r, c + r, c + r], fill=255)
        q = r * 0.55
        d.ellipse([c - q, c - q, c + q, c + q], fill=0)
    elif shape in ("square", "stripes", "checker"):
        d.polygon(_polygon(4, r * 1.30, c, math.pi / 4 + rot), fill=255)
    elif shape == "diamond":
        d.polygon(_polygon(4, r, c, rot), fill=255)
    elif shape == "triangle":
        d.polygon(_polygon(3, r, c, -math.pi / 2 + rot), fill=255)
    elif shape == "hexagon":
        d.polygon(_polygon(6, r, c, rot), fill=255)
    elif shape == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * 0.42
            a = -math.pi / 2 + rot + math.pi * k / 5
            pts.append((c + rr * math.cos(a), c + rr * math.sin(a)))
        d.polygon(pts, fill=255)
    elif shape == "cross":
        w = r * 0.36
        d.rectangle([c - r, c - w, c + r, c + w], fill=255)
        d.rectangle([c - w, c - r, c + w, c + r], fill=255)
    else:
        raise ValueError(shape)
    m = np.asarray(im, np.float32) / 255.0
    if shape in ("stripes", "checker"):
        yy, xx = np.mgrid[0:s, 0:s]
        period = s / 4.0
        if shape == "stripes":
            pattern = (np.floor(xx / period * 2) % 2) if rng.random() < 0.5 else (
                np.floor(yy / period * 2) % 2)
        else:
            pattern = (np.floor(xx / period * 2) + np.floor(yy / period * 2)) % 2
        m = m * np.maximum(pattern, 0.0)
    small = Image.fromarray((m * 255).astype(np.uint8)).resize((size, size), Image.BOX)
    return np.asarray(small, np.float32) / 255.0


def background(size: int, rng: np.random.Generator) -> np.ndarray:
    """Textured, noisy float32 RGB background in [0, 255]."""
    grid = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(grid).resize((size, size), Image.BICUBIC), np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, math.pi)
    freq = rng.uniform(0.15, 0.6)
    waves = np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * freq)
    base += rng.uniform(5, 25) * waves[..., None] * rng.uniform(-1, 1, size=3)
    base += rng.normal(0, rng.uniform(4, 14), size=base.shape)
    return base


def _contrasting_colour(bg_mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    for _ in range(50):
        col = rng.uniform(0, 255, size=3)
        if np.abs(col - bg_mean).sum() > 160:
            return col
    return np.where(bg_mean > 127, 10.0, 245.0)


def render(cfg: SyntheticShapesConfig, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image (S, S, 3), int8 multi-hot labels (10,)) for one example."""
    rng = np.random.default_rng([cfg.seed, _SPLIT_IDS[split], index])
    n_img = cfg.image_size
    img = background(n_img, rng)
    k = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    classes = rng.choice(len(SHAPES), size=k, replace=False)
    placed: list[tuple[int, int, int]] = []
    labels = np.zeros(len(SHAPES), np.int8)
    for cls in classes:
        size = int(round(rng.uniform(cfg.min_size, cfg.max_size) * n_img))
        size = max(size, 4)
        for _ in range(100):
            x, y = (int(v) for v in rng.integers(0, n_img - size + 1, size=2))
            if all(x + size <= px or px + ps <= x or y + size <= py or py + ps <= y
                   for px, py, ps in placed):
                break
        else:
            continue  # no room: leave this class out (labels stay exact)
        placed.append((x, y, size))
        alpha = shape_mask(SHAPES[cls], size, rng)[..., None]
        region = img[y:y + size, x:x + size]
        col = _contrasting_colour(region.mean(axis=(0, 1)), rng)
        shade = col + rng.normal(0, 6, size=region.shape)
        img[y:y + size, x:x + size] = region * (1 - alpha) + shade * alpha
        labels[cls] = 1
    img += rng.normal(0, 3, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), labels


class SyntheticShapes(common.MultiLabelBuilder):
    """Synthetic multi-label shapes on textured backgrounds (10 classes; train / test)."""

    CLASS_NAMES = SHAPES
    BUILDER_CONFIGS = [SyntheticShapesConfig(name="default",
                                             description="128 px, 2000 train / 500 test.")]

    def _split_generators(self, dl_manager):
        del dl_manager
        cfg = self.builder_config
        return {"train": self._generate_examples("train", cfg.num_train),
                "test": self._generate_examples("test", cfg.num_test)}

    def _generate_examples(self, split: str, count: int):
        cfg = self.builder_config
        for i in range(count):
            img, labels = render(cfg, split, i)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, "JPEG", quality=cfg.jpeg_quality)
            key = f"{split}_{i:06d}"
            yield key, common.example(buf.getvalue(), labels, np.zeros_like(labels), key)
