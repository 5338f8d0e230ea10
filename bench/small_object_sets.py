r"""Small-object multi-label sets in the official CSRA JSON format, for recipe checks.

Writes ``OUT/<variant>/{images/, train.json, test.json, classes.txt}`` where each JSON is
the official list ``[{"img_path": "images/train_000000.png", "target": [0, 1, ...]}]``
(1 positive, 0 negative: ``--target_scheme coco``), then builds it with
``multilabel_json`` into ``--data_dir`` under the config name ``small_<variant>``:

    python bench/small_object_sets.py --out /tmp/small_sets --data_dir /tmp/small_tfds \
        --variants heldout tiny filled strokes lowcontrast clutter classes16

Train on one with
    python -m csra_jax.main --config configs/demo.py --workdir /tmp/w \
        --config.data.name=multilabel_json --config.data.builder_config=small_heldout \
        --config.data.data_dir=/tmp/small_tfds

``heldout`` is the reference set: 8 classes, half thin strokes (1-2 px outlines) and half
filled blobs, 1-3 objects of 10-22% of the image side per 128 px image, random colours,
6 clutter lines, 2,000 train / 500 test. Each other variant changes one factor
(object scale, stroke vs filled, colour contrast, clutter, class count). Every image is
a pure function of (variant, split, index), and none of it is drawn from the embedded
demo's generator, so it is data the recipe was not tuned on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

PRIMITIVES = ("circle", "square", "triangle", "cross", "star", "diamond", "hexagon", "arc",
              "pentagon", "chevron", "tee", "ell", "zigzag", "bowtie", "arrow", "wave")
_SS = 4  # supersampling for anti-aliased masks


@dataclasses.dataclass(frozen=True)
class Variant:
    num_classes: int = 8
    style: str = "mixed"          # mixed: even classes strokes, odd filled; strokes; filled
    min_size: float = 0.10        # object side / image side
    max_size: float = 0.22
    min_objects: int = 1
    max_objects: int = 3
    contrast: float = 1.0         # object-vs-background colour distance, 1 = random colours
    clutter_lines: int = 6
    clutter_blobs: int = 0
    image_size: int = 128
    num_train: int = 2000
    num_test: int = 500
    seed: int = 15


VARIANTS = {
    "heldout": Variant(),
    "tiny": Variant(min_size=0.06, max_size=0.11),
    "large": Variant(min_size=0.20, max_size=0.35),
    "filled": Variant(style="filled"),
    "strokes": Variant(style="strokes"),
    "lowcontrast": Variant(contrast=0.25),
    "clutter": Variant(clutter_lines=20, clutter_blobs=6),
    "classes16": Variant(num_classes=16, max_objects=4),
}


def _poly(n, r, c, phase):
    return [(c + r * math.cos(phase + 2 * math.pi * k / n),
             c + r * math.sin(phase + 2 * math.pi * k / n)) for k in range(n)]


def _outline(shape: str, c: float, r: float, rot: float) -> list[list[tuple[float, float]]]:
    """Polylines (closed where the shape is) of one primitive in a (2c)^2 box."""
    if shape == "circle":
        return [_poly(32, r, c, 0) + [_poly(32, r, c, 0)[0]]]
    if shape in ("square", "triangle", "diamond", "hexagon", "pentagon"):
        n, ph = {"square": (4, math.pi / 4), "triangle": (3, -math.pi / 2), "diamond": (4, 0),
                 "hexagon": (6, 0), "pentagon": (5, -math.pi / 2)}[shape]
        p = _poly(n, r * (1.3 if shape == "square" else 1.0), c, ph + rot)
        if shape == "square":
            p = [(min(max(x, c - r), c + r), min(max(y, c - r), c + r)) for x, y in p]
        return [p + [p[0]]]
    if shape == "star":
        p = [(c + (r if k % 2 == 0 else 0.42 * r) * math.cos(-math.pi / 2 + rot + math.pi * k / 5),
              c + (r if k % 2 == 0 else 0.42 * r) * math.sin(-math.pi / 2 + rot + math.pi * k / 5))
             for k in range(10)]
        return [p + [p[0]]]
    rot_pt = lambda x, y: (c + (x - c) * math.cos(rot) - (y - c) * math.sin(rot),
                           c + (x - c) * math.sin(rot) + (y - c) * math.cos(rot))
    rel = lambda pts: [rot_pt(c + x * r, c + y * r) for x, y in pts]
    if shape == "cross":
        return [rel([(-1, 0), (1, 0)]), rel([(0, -1), (0, 1)])]
    if shape == "arc":
        return [rel([(math.cos(a), math.sin(a)) for a in np.linspace(math.pi, 2 * math.pi, 16)])]
    if shape == "chevron":
        return [rel([(-1, -0.6), (0, 0.6), (1, -0.6)])]
    if shape == "tee":
        return [rel([(-1, -0.9), (1, -0.9)]), rel([(0, -0.9), (0, 1)])]
    if shape == "ell":
        return [rel([(-0.7, -1), (-0.7, 1), (0.8, 1)])]
    if shape == "zigzag":
        return [rel([(-1, -0.5), (-0.5, 0.5), (0, -0.5), (0.5, 0.5), (1, -0.5)])]
    if shape == "bowtie":
        return [rel([(-1, -0.8), (1, 0.8), (1, -0.8), (-1, 0.8), (-1, -0.8)])]
    if shape == "arrow":
        return [rel([(-1, 0), (1, 0)]), rel([(0.4, -0.5), (1, 0), (0.4, 0.5)])]
    if shape == "wave":
        return [rel([(x, 0.5 * math.sin(x * 2 * math.pi)) for x in np.linspace(-1, 1, 20)])]
    raise ValueError(shape)


def mask(shape: str, size: int, filled: bool, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased alpha in [0, 1], (size, size): a thin outline or a filled blob."""
    s = size * _SS
    im = Image.new("L", (s, s), 0)
    d = ImageDraw.Draw(im)
    c, r = s / 2, s / 2 - 2 * _SS
    lines = _outline(shape, c, r, math.radians(rng.uniform(-20, 20)))
    width = int(round(rng.uniform(1.0, 2.0) * _SS))
    closed = lines[0][0] == lines[0][-1] and len(lines) == 1
    if filled and closed:
        d.polygon(lines[0], fill=255)
    else:  # open primitives are drawn thick when "filled": a blob-like stroke
        for pts in lines:
            d.line(pts, fill=255, width=width * (3 if filled else 1), joint="curve")
    small = im.resize((size, size), Image.BOX)
    return np.asarray(small, np.float32) / 255.0


def _background(n: int, rng: np.random.Generator) -> np.ndarray:
    grid = rng.uniform(40, 215, size=(3, 3, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(grid).resize((n, n), Image.BICUBIC), np.float32)
    return base + rng.normal(0, 5, size=base.shape)


def _colour(bg: np.ndarray, contrast: float, rng: np.random.Generator) -> np.ndarray:
    if contrast >= 1.0:
        return rng.uniform(0, 255, size=3)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction) + 1e-9
    return np.clip(bg + direction * contrast * 255.0 * rng.uniform(0.6, 1.0), 0, 255)


def _is_filled(v: Variant, cls: int) -> bool:
    return {"filled": True, "strokes": False}.get(v.style, cls % 2 == 1)


def render(v: Variant, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (S, S, 3), int multi-hot (num_classes,)) for one example."""
    rng = np.random.default_rng([v.seed, {"train": 0, "test": 1}[split], index])
    n = v.image_size
    img = _background(n, rng)
    draw_lines = []
    for _ in range(v.clutter_lines):
        p = rng.uniform(0, n, size=4)
        draw_lines.append((tuple(p), tuple(rng.uniform(0, 255, size=3).astype(int)),
                           int(rng.integers(1, 3))))
    over = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(over)
    for p, col, w in draw_lines:
        d.line(p, fill=col, width=w)
    for _ in range(v.clutter_blobs):
        x, y, r = rng.uniform(0, n), rng.uniform(0, n), rng.uniform(1.5, 4)
        d.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.uniform(0, 255, 3).astype(int)))
    img = np.asarray(over, np.float32)
    k = int(rng.integers(v.min_objects, v.max_objects + 1))
    classes = rng.choice(v.num_classes, size=k, replace=False)
    labels = np.zeros(v.num_classes, np.int64)
    placed: list[tuple[int, int, int]] = []
    for cls in classes:
        size = max(int(round(rng.uniform(v.min_size, v.max_size) * n)), 6)
        for _ in range(100):
            x, y = (int(t) for t in rng.integers(0, n - size + 1, size=2))
            if all(x + size <= px or px + ps <= x or y + size <= py or py + ps <= y
                   for px, py, ps in placed):
                break
        else:
            continue  # no room: the class is left out, labels stay exact
        placed.append((x, y, size))
        alpha = mask(PRIMITIVES[cls], size, _is_filled(v, int(cls)), rng)[..., None]
        region = img[y:y + size, x:x + size]
        col = _colour(region.mean(axis=(0, 1)), v.contrast, rng)
        img[y:y + size, x:x + size] = region * (1 - alpha) + col * alpha
        labels[cls] = 1
    img += rng.normal(0, 3, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), labels


def write_variant(name: str, out: str, variant: Variant | None = None) -> str:
    """Writes images + official CSRA JSON lists for one variant; returns its folder."""
    v = variant or VARIANTS[name]
    if not 1 <= v.num_classes <= len(PRIMITIVES):
        raise ValueError(f"num_classes={v.num_classes} must be in [1, {len(PRIMITIVES)}]")
    root = os.path.join(out, name)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    for split, count in (("train", v.num_train), ("test", v.num_test)):
        entries = []
        for i in range(count):
            img, labels = render(v, split, i)
            rel = f"images/{split}_{i:06d}.png"
            Image.fromarray(img).save(os.path.join(root, rel))
            entries.append({"img_path": rel, "target": labels.tolist()})
        with open(os.path.join(root, f"{split}.json"), "w") as f:
            json.dump(entries, f)
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("\n".join(PRIMITIVES[: v.num_classes]) + "\n")
    return root


def build_variant(name: str, root: str, data_dir: str):
    """Builds the written variant with multilabel_json (format csra, coco targets)."""
    from csra_jax.data import build_dataset
    return build_dataset("multilabel_json", data_dir, config_name=f"small_{name}",
                         format="csra", target_scheme="coco",
                         class_names_file=os.path.join(root, "classes.txt"),
                         annotations={"train": os.path.join(root, "train.json"),
                                      "test": os.path.join(root, "test.json")})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="where images and JSON lists go")
    p.add_argument("--data_dir", help="also build each variant here (multilabel_json)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=sorted(VARIANTS))
    p.add_argument("--num_train", type=int, help="override every variant's train size")
    p.add_argument("--num_test", type=int, help="override every variant's test size")
    a = p.parse_args(argv)
    for name in a.variants:
        v = VARIANTS[name]
        if a.num_train:
            v = dataclasses.replace(v, num_train=a.num_train)
        if a.num_test:
            v = dataclasses.replace(v, num_test=a.num_test)
        root = write_variant(name, a.out, v)
        if a.data_dir:
            build_variant(name, root, a.data_dir)
        print(f"{name}: {root}" + (f" -> {a.data_dir} (small_{name})" if a.data_dir else ""),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
