"""Input pipeline throughput: images/s per CPU core for the train transform.

  python bench/input_pipeline.py [--sizes 448,224] [--workers 0,1,2] [--num_images 256]

Part 1 (per core): decode + random resized crop + flip + resize + normalise of one
image at a time, in this process, one thread (`transforms.decode_train` + numpy
normalise) -- the number that says how many cores an accelerator needs.
Part 2 (pipeline): the real grain train iterator (ArrayRecord read, shuffle, batch,
mp_prefetch, normalise) with num_workers=0 (one read thread) and with N workers.

Images are generated COCO-like JPEGs (640x480, quality 90, smooth texture + detail +
noise; file size is printed, real COCO averages about 160 KB), built into a
`multilabel_json` dataset in a temporary directory. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import tempfile
import time

import numpy as np
from PIL import Image

from csra_jax import data
from csra_jax.data import transforms
from csra_jax.data.synthetic_shapes import background


def make_images(root: pathlib.Path, n: int, w: int = 640, h: int = 480) -> list[str]:
    files = []
    for i in range(n):
        rng = np.random.default_rng(i)
        img = np.asarray(Image.fromarray(np.clip(background(max(w, h), rng), 0, 255)
                                         .astype(np.uint8)).crop((0, 0, w, h)), np.float32)
        img += rng.normal(0, 6, img.shape)  # detail
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        (root / f"{i}.jpg").write_bytes(buf.getvalue())
        files.append(f"{i}.jpg")
    return files


def per_core(blobs: list[bytes], size: int, seconds: float = 3.0) -> float:
    mean, std = transforms.resolve_normalization("resnet")
    rng = np.random.default_rng(0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        img = transforms.decode_train(blobs[n % len(blobs)], size, rng)
        transforms.normalize(img[None], mean, std)
        n += 1
    return n / (time.perf_counter() - t0)


def pipeline(data_dir: str, size: int, workers: int, batch: int, steps: int) -> float:
    it = data.create_train_iterator("multilabel_json", data_dir, config="bench",
                                    global_batch_size=batch, image_size=size,
                                    num_workers=workers, read_threads=1,
                                    worker_buffer_size=4, process_index=0, process_count=1)
    for _ in range(3):  # warm-up: worker start, first reads
        next(it)
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    return steps * batch / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="448,224")
    p.add_argument("--workers", default=f"0,{os.cpu_count()}")
    p.add_argument("--num_images", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    a = p.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    data.ensure_absl_flags_parsed()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "img").mkdir()
        files = make_images(tmp / "img", a.num_images)
        blobs = [(tmp / "img" / f).read_bytes() for f in files]
        print(f"{len(blobs)} JPEGs 640x480, mean {np.mean([len(b) for b in blobs]) / 1e3:.0f} KB; "
              f"{os.cpu_count()} CPU cores; PIL {Image.__version__}")
        print("\nper core (1 process, 1 thread): decode+crop+flip+resize+normalise")
        for s in sizes:
            print(f"  {s}px: {per_core(blobs, s):7.1f} images/s/core")
        ann = {"classes": ["a", "b"], "images": [{"file": f, "labels": ["a"]} for f in files]}
        (tmp / "ann.json").write_text(json.dumps(ann))
        data.build_dataset("multilabel_json", str(tmp / "tfds"), manual_dir=str(tmp / "img"),
                           config_name="bench", annotations={"train": str(tmp / "ann.json")},
                           verify_images=False)
        print(f"\ngrain train iterator, batch {a.batch} (images/s total; per core = / cores used)")
        for s in sizes:
            for w in (int(x) for x in a.workers.split(",")):
                ips = pipeline(str(tmp / "tfds"), s, w, a.batch, a.steps)
                label = "0 workers (1 read thread)" if w == 0 else f"{w} worker processes"
                print(f"  {s}px, {label:26s}: {ips:7.1f} images/s"
                      + (f" = {ips / w:6.1f} /worker" if w else ""))


if __name__ == "__main__":
    main()
