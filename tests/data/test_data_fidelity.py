"""Evaluation inputs equal the official CSRA test transform, computed by torchvision.

Official: PIL `Image.open(p).convert("RGB")` -> `transforms.Resize((S, S))` ->
`ToTensor()` -> `Normalize(mean, std)`. Ours: the eval iterator (ArrayRecord -> grain ->
`decode_eval` -> `normalize`) and `Predictor` (files, PIL images). JPEGs include sizes
>= 2x and >= 8x the target, where JPEG draft decoding would change the pixels.
"""

import json

import numpy as np
from PIL import Image
import pytest

torch = pytest.importorskip("torch")
from torchvision import transforms as T  # pylint: disable=g-import-not-at-top

from csra_jax import create_model, data
from csra_jax.data import transforms
from csra_jax.inference import Predictor
from model_fixtures import random_variables

S = 32
# name: (width, height, mode, format); 64 = 2x S, 256 = 8x S.
IMAGES = {
    "small.jpg": (40, 30, "RGB", "JPEG"),
    "twice.jpg": (64, 64, "RGB", "JPEG"),
    "wide.jpg": (100, 77, "RGB", "JPEG"),
    "eight.jpg": (256, 256, "RGB", "JPEG"),
    "large.jpg": (333, 290, "RGB", "JPEG"),
    "gray.jpg": (130, 140, "L", "JPEG"),
    "cmyk.jpg": (150, 128, "CMYK", "JPEG"),
    "rgba.png": (90, 70, "RGBA", "PNG"),
    "palette.png": (80, 96, "P", "PNG"),
}
NORMS = ("resnet", "vit", "imagenet")
TOL = 1e-6


def _picture(w, h, seed):
    """Smooth colour field plus texture: JPEG-like content with real high frequencies."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(x / (5 + 3 * c) + y / (7 + c) + c) for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fidelity")
    for k, (name, (w, h, mode, fmt)) in enumerate(IMAGES.items()):
        im = Image.fromarray(_picture(w, h, k))
        if mode == "RGBA":
            im.putalpha(Image.fromarray(_picture(w, h, k + 50)[..., 0]))
        elif mode == "P":
            im = im.quantize(64)
        else:
            im = im.convert(mode)
        im.save(d / name, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return d


def official(path, norm):
    mean, std = transforms.NORMALIZATIONS[norm]
    t = T.Compose([T.Resize((S, S)), T.ToTensor(), T.Normalize(mean=mean, std=std)])
    return t(Image.open(path).convert("RGB")).permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def ds_dir(files, tmp_path_factory):
    d = tmp_path_factory.mktemp("tfds")
    ann = files / "ann.json"
    ann.write_text(json.dumps({"classes": ["a", "b"],
                               "images": [{"file": n, "labels": ["a"]} for n in IMAGES]}))
    data.build_dataset("multilabel_json", str(d), manual_dir=str(files), config_name="fid",
                       annotations={"test": str(ann)})
    return str(d)


@pytest.mark.parametrize("norm", NORMS)
def test_eval_iterator_equals_torchvision_test_transform(files, ds_dir, norm):
    it = data.create_eval_iterator("multilabel_json", ds_dir, data.InputSpec(S, norm),
                                   config="fid", split="test", global_batch_size=len(IMAGES),
                                   with_ids=True, process_index=0, process_count=1)
    batch = next(it)
    assert sorted(i.decode() for i in batch["id"]) == sorted(IMAGES)
    worst = 0.0
    for img, name in zip(np.asarray(batch["image"]), batch["id"]):
        ref = official(files / name.decode(), norm)
        np.testing.assert_allclose(img, ref, rtol=0, atol=TOL, err_msg=name.decode())
        worst = max(worst, float(np.abs(img - ref).max()))
    print(f"eval iterator vs torchvision ({norm}): max |diff| {worst:.1e}")  # pytest -s


def test_predictor_files_and_pil_images_equal_torchvision(files):
    model = create_model(arch="small_cnn", num_classes=2, head="gap", img_size=S)
    variables = random_variables(model, S)
    worst = 0.0
    for norm in NORMS:
        p = Predictor(model, variables, S, norm)
        for name in IMAGES:
            ref = official(files / name, norm)
            from_file = p.preprocess(p.load_file(str(files / name)))[0]
            np.testing.assert_allclose(from_file, ref, rtol=0, atol=TOL, err_msg=name)
            from_pil = p.preprocess(Image.open(files / name))[0]
            np.testing.assert_allclose(from_pil, ref, rtol=0, atol=TOL, err_msg=name)
            worst = max(worst, float(np.abs(from_file - ref).max()),
                        float(np.abs(from_pil - ref).max()))
    print(f"Predictor vs torchvision: max |diff| {worst:.1e}")  # pytest -s


def test_config_draft_reaches_the_train_iterator_only(ds_dir):
    """data.draft=True reaches the training decode (it changes crops of large JPEGs)."""
    from csra_jax.train import loop  # pylint: disable=g-import-not-at-top
    from config_fixtures import tiny_config  # pylint: disable=g-import-not-at-top
    info = data.get_dataset_info("multilabel_json", ds_dir, config="fid")
    batches = {}
    for draft in (False, True):
        c = tiny_config(ds_dir, "/tmp/unused", **{"data.name": "multilabel_json",
                                                  "data.builder_config": "fid",
                                                  "data.train_split": "test",
                                                  "data.draft": draft, "batch_size": 9})
        batches[draft] = np.asarray(next(loop.train_iterator(c, info, None))["image"])
    assert not np.array_equal(batches[False], batches[True])


def test_draft_opt_in_changes_large_jpegs_only(files):
    """What the default avoids: draft decoding moves pixels of JPEGs >= 2x the target."""
    for name in ("twice.jpg", "eight.jpg", "large.jpg"):
        blob = (files / name).read_bytes()
        exact = transforms.decode_eval(blob, S).astype(int)
        drafted = transforms.decode_eval(blob, S, draft=True).astype(int)
        assert np.abs(exact - drafted).max() > 2, name
    blob = (files / "small.jpg").read_bytes()
    np.testing.assert_array_equal(transforms.decode_eval(blob, S),
                                  transforms.decode_eval(blob, S, draft=True))
