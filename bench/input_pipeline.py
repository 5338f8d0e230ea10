"""Input pipeline throughput: images/s per CPU core for the train transform.

  python bench/input_pipeline.py [--sizes 448,224] [--workers 0,1,2] [--num_images 256]
      [--image WxH]

Part 1 (per core): decode + random resized crop + flip + resize + normalise of one
image at a time, in this process, one thread (`transforms.decode_train` + numpy
normalise), per CPU-second of this process -- the number that says how many cores an
accelerator needs.
Part 2 (JPEG draft decoding, the `data.draft=True` opt-in): per-core speed of the train
and eval transforms with draft off (the default, the official transform) and on, the
share of images where draft fires (crop >= 2x the output in both sides), and how far
the drafted uint8 pixels are from the exact ones (same crops): max and mean absolute
difference in grey levels and the share of values off by more than one level.
Part 3 (pipeline): the real grain train iterator (ArrayRecord read, shuffle, batch,
mp_prefetch, normalise) with num_workers=0 (one read thread) and with N workers.

Images are generated COCO-like JPEGs (640x480 unless --image, quality 90, smooth
texture + detail + noise; file size is printed, real COCO averages about 160 KB), built
into a `multilabel_json` dataset in a temporary directory. Nothing is downloaded.
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


def per_core(blobs: list[bytes], size: int, seconds: float = 3.0, draft: bool = False,
             train: bool = True) -> float:
    """Images per CPU-second of this process (PIL and numpy run on one thread here), so a
    busy machine slows the wall clock but hardly the figure."""
    mean, std = transforms.resolve_normalization("resnet")
    rng = np.random.default_rng(0)
    n, t0 = 0, time.process_time()
    while time.process_time() - t0 < seconds:
        blob = blobs[n % len(blobs)]
        img = (transforms.decode_train(blob, size, rng, draft=draft) if train else
               transforms.decode_eval(blob, size, draft=draft))
        transforms.normalize(img[None], mean, std)
        n += 1
    return n / (time.process_time() - t0)


def interleaved(blobs, size, seconds, train) -> tuple[float, float]:
    """Best-of-5 images/s/core (exact, draft), alternating so machine load hits both."""
    off, on = [], []
    for _ in range(5):
        off.append(per_core(blobs, size, seconds / 5, draft=False, train=train))
        on.append(per_core(blobs, size, seconds / 5, draft=True, train=train))
    return max(off), max(on)


def draft_effect(blobs: list[bytes], size: int, train: bool) -> tuple[float, int, float, float]:
    """(share of images where draft fires, max |diff|, mean |diff|, share > 1 level)."""
    fired, diffs = 0, []
    for i, blob in enumerate(blobs):
        if train:
            exact = transforms.decode_train(blob, size, np.random.default_rng(i))
            drafted = transforms.decode_train(blob, size, np.random.default_rng(i), draft=True)
        else:
            exact = transforms.decode_eval(blob, size)
            drafted = transforms.decode_eval(blob, size, draft=True)
        d = np.abs(exact.astype(np.int16) - drafted.astype(np.int16))
        fired += bool(d.any())
        diffs.append(d)
    d = np.stack(diffs)
    return fired / len(blobs), int(d.max()), float(d.mean()), float((d > 1).mean())


def pipeline(data_dir: str, size: int, workers: int, batch: int, steps: int) -> float:
    it = data.create_train_iterator("multilabel_json", data_dir, data.InputSpec(size),
                                    config="bench", global_batch_size=batch,
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
    p.add_argument("--image", default="640x480", help="generated JPEG size WxH")
    p.add_argument("--seconds", type=float, default=3.0, help="per-core timing per row")
    a = p.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    w, h = (int(v) for v in a.image.lower().split("x"))
    data.ensure_absl_flags_parsed()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "img").mkdir()
        files = make_images(tmp / "img", a.num_images, w, h)
        blobs = [(tmp / "img" / f).read_bytes() for f in files]
        print(f"{len(blobs)} JPEGs {w}x{h}, mean {np.mean([len(b) for b in blobs]) / 1e3:.0f} KB; "
              f"{os.cpu_count()} CPU cores; PIL {Image.__version__}")
        print("\nper core (1 process, 1 thread): decode+crop+flip+resize+normalise")
        for s in sizes:
            print(f"  {s}px: {per_core(blobs, s, a.seconds):7.1f} images/s/core")
        print("\nJPEG draft decoding (data.draft=True) vs exact (default): images/s/core; "
              "pixel change on the same crops (grey levels)")
        for train in (True, False):
            for s in sizes:
                off, on = interleaved(blobs, s, 2 * a.seconds, train)
                fired, dmax, dmean, dfar = draft_effect(blobs, s, train)
                print(f"  {'train' if train else 'eval ':5s} {s}px: exact {off:6.1f}, draft "
                      f"{on:6.1f} ({on / off:4.2f}x); fires on {100 * fired:3.0f}% of images; "
                      f"max |diff| {dmax:3d}, mean {dmean:5.2f}, {100 * dfar:4.1f}% > 1 level")
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
