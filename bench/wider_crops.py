"""WIDER-Attribute crops: what the default JPEG-q95 storage changes against the official
crop of the original image (config 'png' stores the official crop exactly).

  python bench/wider_crops.py                       # generated photo-like JPEGs
  python bench/wider_crops.py --wider_dir RAW/wider --num_images 200   # real WIDER files

For each person box: the official crop (`Image.open(p).convert("RGB").crop([x, y, x+w,
y+h])`), the same crop re-encoded as the builder's default does (JPEG quality 95, 4:4:4), and
both through the official test transform at --size (PIL bilinear resize to (S, S)).
Prints max / mean absolute difference in grey levels (0-255) and the share of values
off by more than one level, for the stored crops and for the resized model inputs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from csra_jax.data import wider  # noqa: E402
from csra_jax.data.synthetic_shapes import background  # noqa: E402


def generated(n: int):
    """(RGB image, [bbox, ...]) pairs: 1024x683 photo-like JPEGs (q90), 3 persons each."""
    for i in range(n):
        rng = np.random.default_rng(i)
        img = np.asarray(Image.fromarray(np.clip(background(1024, rng), 0, 255).astype(np.uint8))
                         .crop((0, 0, 1024, 683)), np.float32)
        img += rng.normal(0, 6, img.shape)
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        boxes = []
        for _ in range(3):
            w, h = rng.uniform(30, 200), rng.uniform(80, 450)
            boxes.append([rng.uniform(-20, 1024 - w / 2), rng.uniform(-20, 683 - h / 2), w, h])
        yield Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), boxes


def real(root: pathlib.Path, n: int):
    data = json.loads((root / "wider_attribute_test.json").read_text())
    for entry in data["images"][:n]:
        path = wider.WiderAttribute._image_path(root, entry["file_name"])  # pylint: disable=protected-access
        yield Image.open(path).convert("RGB"), [t["bbox"] for t in entry["targets"]]


def stats(diffs):
    d = np.concatenate([x.ravel() for x in diffs])
    return f"max {d.max():3d}, mean {d.mean():5.2f}, {100 * (d > 1).mean():5.1f}% > 1 level"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--wider_dir", help="folder with Image/ and wider_attribute_test.json")
    p.add_argument("--num_images", type=int, default=60)
    p.add_argument("--size", type=int, default=224)
    a = p.parse_args()
    source = real(pathlib.Path(a.wider_dir), a.num_images) if a.wider_dir else \
        generated(a.num_images)
    stored, inputs, n, size_jpeg, size_png = [], [], 0, 0, 0
    for im, boxes in source:
        for x, y, w, h in boxes:
            if wider.crop_box([x, y, w, h], *im.size) is None:
                continue
            crop = im.crop([x, y, x + w, y + h])  # the official preparation
            blob = wider.encode(crop, "jpeg")
            size_jpeg, size_png = size_jpeg + len(blob), size_png + len(wider.encode(crop, "png"))
            q95 = Image.open(io.BytesIO(blob)).convert("RGB")
            stored.append(np.abs(np.asarray(crop, np.int16) - np.asarray(q95, np.int16)))
            s = (a.size, a.size)
            inputs.append(np.abs(np.asarray(crop.resize(s, Image.BILINEAR), np.int16) -
                                 np.asarray(q95.resize(s, Image.BILINEAR), np.int16)))
            n += 1
    what = f"WIDER files in {a.wider_dir}" if a.wider_dir else "generated 1024x683 JPEGs"
    print(f"{n} person crops from {what}; JPEG q95 (config 'default') vs the official crop")
    print(f"  stored crops:            {stats(stored)}")
    print(f"  model inputs at {a.size} px: {stats(inputs)}")
    print("  config 'png': 0 (lossless, the official crop exactly)")
    print(f"  stored size per crop: jpeg {size_jpeg / n / 1e3:.1f} KB, png {size_png / n / 1e3:.1f} KB")


if __name__ == "__main__":
    main()
