"""Tiny datasets in the real on-disk formats (VOCdevkit, COCO, WIDER, JSON lists)."""

from __future__ import annotations

import io
import json
import pathlib

import numpy as np
from PIL import Image


def jpeg_bytes(w: int = 40, h: int = 30, seed: int = 0, fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def write_image(path: pathlib.Path, w=40, h=30, seed=0, truncated=False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = jpeg_bytes(w, h, seed)
    path.write_bytes(data[: len(data) // 2] if truncated else data)


def builder_examples(builder, split: str) -> dict[str, dict]:
    """{id: example} of a built split."""
    ds = builder.as_data_source(split)
    return {ex["id"].decode(): ex for ex in (ds[i] for i in range(len(ds)))}


# --- VOC ------------------------------------------------------------------------------

def voc_xml(objects: list[tuple[str, int]]) -> str:
    objs = "".join(f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated>"
                   f"<difficult>{d}</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>"
                   f"<xmax>9</xmax><ymax>9</ymax></bndbox></object>" for n, d in objects)
    return (f"<annotation><folder>VOC2007</folder><filename>x.jpg</filename><size><width>40"
            f"</width><height>30</height><depth>3</depth></size>{objs}</annotation>")


VOC_IMAGES = {
    # id: (split, objects)
    "000001": ("trainval", [("dog", 0), ("person", 0)]),
    "000002": ("trainval", [("cat", 1), ("cat", 0), ("chair", 1)]),  # chair difficult-only
    "000003": ("test", [("car", 0), ("bottle", 1)]),                  # bottle difficult-only
    "000004": ("test", [("tvmonitor", 1), ("tvmonitor", 0), ("aeroplane", 0)]),
    "000005": ("test", [("sheep", 0)]),
}


def make_voc(root: pathlib.Path, year: str = "2007", truncated: str | None = None,
             images=None) -> pathlib.Path:
    """root/VOCdevkit/VOC<year>/...; `truncated`: an image id written truncated."""
    images = images or VOC_IMAGES
    voc = root / "VOCdevkit" / f"VOC{year}"
    (voc / "Annotations").mkdir(parents=True, exist_ok=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[str]] = {}
    for k, (image_id, (split, objs)) in enumerate(sorted(images.items())):
        (voc / "Annotations" / f"{image_id}.xml").write_text(voc_xml(objs))
        write_image(voc / "JPEGImages" / f"{image_id}.jpg", seed=k, truncated=image_id == truncated)
        splits.setdefault(split, []).append(image_id)
    for split, ids in splits.items():
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


# --- COCO -----------------------------------------------------------------------------

COCO_CAT_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def make_coco(root: pathlib.Path, bad_category: bool = False) -> pathlib.Path:
    """train: 3 images (one without annotations); val: 2 images."""
    layout = {
        "train": {1: [1, 1, 18], 2: [90, 3], 3: []},         # person,person,dog / toothbrush,car / none
        "val": {10: [44], 11: [1, 2, 3, 4]},
    }
    cats = [{"id": c, "name": f"c{c}", "supercategory": "x"} for c in COCO_CAT_IDS]
    for split, imgs in layout.items():
        images, anns = [], []
        for k, (image_id, cat_list) in enumerate(imgs.items()):
            fn = f"COCO_{split}2014_{image_id:012d}.jpg"
            write_image(root / f"{split}2014" / fn, seed=image_id)
            images.append({"id": image_id, "file_name": fn, "width": 40, "height": 30})
            for c in cat_list:
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": c,
                             "iscrowd": 0, "bbox": [0, 0, 5, 5], "area": 25})
        if bad_category and split == "val":
            anns.append({"id": 999, "image_id": 10, "category_id": 91, "iscrowd": 0})
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}2014.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


# --- WIDER ----------------------------------------------------------------------------

def make_wider(root: pathlib.Path) -> pathlib.Path:
    attr_a = [1, -1, 0, 1, -1, -1, 0, 1, -1, -1, 1, 0, -1, 1]
    attr_b = [-1, 1, 1, 0, 0, -1, -1, -1, 1, 1, -1, -1, 0, -1]
    files = {"trainval": "train/0--Parade/0_Parade_a.jpg", "test": "test/1--Handshaking/1_b.jpg"}
    for split, fn in files.items():
        write_image(root / "Image" / fn, w=60, h=50, seed=7 if split == "test" else 3)
        entry = {"file_name": fn, "image_id": 0, "scene_id": 0,
                 "targets": [{"attribute": attr_a, "bbox": [5, 10, 20, 30]},
                             {"attribute": attr_b, "bbox": [50, 40, 30, 30]}]}  # clipped
        (root / f"wider_attribute_{split}.json").write_text(json.dumps(
            {"images": [entry], "attribute_id_map": {}, "scene_id_map": {}}))
    return root
