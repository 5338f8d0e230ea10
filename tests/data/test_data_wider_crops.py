"""WIDER-Attribute crops equal the official preparation's PIL crop, also at image edges;
corrupt or empty images end in one line naming the file."""

import io
import json

import numpy as np
from PIL import Image
import pytest

from etils import epath

from csra_jax import data
from csra_jax.data import build, common
from data_fixtures import builder_examples, make_wider, write_image

FILE = "train/0--Parade/0_Parade_a.jpg"  # 60x50 in make_wider
# Boxes leaving the image on every side, half-pixel corners (PIL rounds them), one box
# wholly outside (all black, kept like the official code) and one with no area.
BOXES = [[5, 10, 20, 30], [50, 40, 30, 30], [-8.5, -3.4, 20, 15.2], [-10, 20, 90, 10.5],
         [40.5, -6.5, 7.25, 70], [70, 60, 10, 12], [10, 10, 0.2, 5]]


def _raw(root, boxes):
    raw = make_wider(root)
    attr = [1, -1, 0, 1, -1, -1, 0, 1, -1, -1, 1, 0, -1, 1]
    for split in ("trainval", "test"):
        ann = raw / f"wider_attribute_{split}.json"
        d = json.loads(ann.read_text())
        if split == "trainval":
            d["images"][0]["targets"] = [{"attribute": attr, "bbox": b} for b in boxes]
        ann.write_text(json.dumps(d))
    return raw


def official_crop(raw, bbox):
    """The official preparation: Image.open(p).convert("RGB").crop([x, y, x+w, y+h])."""
    x, y, w, h = bbox
    return np.asarray(Image.open(raw / "Image" / FILE).convert("RGB").crop([x, y, x + w, y + h]))


def test_png_crops_equal_official_pil_crop_at_edges(tmp_path, capfd):
    raw = _raw(tmp_path / "raw", BOXES)
    b = data.build_dataset("wider_attribute", tmp_path / "tfds", manual_dir=raw, config="png")
    tv = builder_examples(b, "trainval")
    assert sorted(tv) == [f"{FILE}#{p}" for p in range(6)]  # the no-area box is skipped
    assert "skipped 1 person(s) whose bbox has no area" in capfd.readouterr().err
    for p, bbox in enumerate(BOXES[:6]):
        ours = np.asarray(Image.open(io.BytesIO(tv[f"{FILE}#{p}"]["image"])))
        ref = official_crop(raw, bbox)
        assert ours.shape == ref.shape, (p, ours.shape, ref.shape)
        np.testing.assert_array_equal(ours, ref, err_msg=f"person {p}")
    assert not np.asarray(Image.open(io.BytesIO(tv[f"{FILE}#5"]["image"]))).any()
    assert np.asarray(Image.open(io.BytesIO(tv[f"{FILE}#1"]["image"]))).shape == (30, 30, 3)


def test_clip_config_keeps_the_old_clipped_crops(tmp_path):
    raw = _raw(tmp_path / "raw", BOXES[:2])
    b = data.build_dataset("wider_attribute", tmp_path / "tfds", manual_dir=raw,
                           crop_format="png", crop_mode="clip")
    crop = np.asarray(Image.open(io.BytesIO(builder_examples(b, "trainval")[f"{FILE}#1"]["image"])))
    full = np.asarray(Image.open(raw / "Image" / FILE).convert("RGB"))
    np.testing.assert_array_equal(crop, full[40:50, 50:60])
    with pytest.raises(data.DataError, match="crop_mode one of"):
        data.build_dataset("wider_attribute", tmp_path / "tfds2", manual_dir=raw,
                           crop_mode="mirror")


def test_default_jpeg_crops_have_the_official_size(tmp_path):
    raw = _raw(tmp_path / "raw", BOXES[:3])
    b = data.build_dataset("wider_attribute", tmp_path / "tfds", manual_dir=raw)
    tv = builder_examples(b, "trainval")
    for p, bbox in enumerate(BOXES[:3]):
        ours = np.asarray(Image.open(io.BytesIO(tv[f"{FILE}#{p}"]["image"]))).astype(int)
        assert ours.shape == official_crop(raw, bbox).shape


def test_bad_bbox_is_one_line_naming_the_annotation(tmp_path):
    raw = _raw(tmp_path / "raw", [[1, 2, "wide", 4]])
    with pytest.raises(data.DataError, match=r"wider_attribute_trainval\.json: images\[0\] .* "
                       r"person 0: 'bbox' must be \[x, y, w, h\] \(4 numbers\)"):
        data.build_dataset("wider_attribute", tmp_path / "tfds", manual_dir=raw)


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("content", ["empty", "truncated"])
def test_bad_image_is_one_line_naming_the_file(tmp_path, capsys, verify, content):
    raw = make_wider(tmp_path / "raw")
    bad = raw / "Image" / FILE
    if content == "empty":
        bad.write_bytes(b"")
    else:
        write_image(bad, w=60, h=50, truncated=True)
    argv = ["wider_attribute", "--data_dir", str(tmp_path / "tfds"), "--manual_dir", str(raw)]
    assert build.main(argv + ([] if verify else ["--no_verify_images"])) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error:")]
    assert len(err) == 1 and str(bad) in err[0], err
    assert "BytesIO" not in err[0]
    if content == "empty":
        assert "empty file, 0 bytes" in err[0]
    # With on_corrupt=skip the image is left out, counted, and the build finishes.
    ann = raw / "wider_attribute_trainval.json"
    d = json.loads(ann.read_text())
    write_image(raw / "Image" / "good.jpg", w=60, h=50)
    d["images"].append(dict(d["images"][0], file_name="good.jpg"))
    ann.write_text(json.dumps(d))
    argv += ["--on_corrupt", "skip", "--data_dir", str(tmp_path / "tfds_skip")]
    assert build.main(argv + ([] if verify else ["--no_verify_images"])) == 0
    assert f"skipped 1 corrupt image(s): {bad}" in capsys.readouterr().err


def test_undecodable_bytes_name_no_memory_stream(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(b"this is not an image")
    with pytest.raises(data.DataError) as e:
        common.read_image(epath.Path(path), common.CorruptImageCounter("error"))
    assert str(path) in str(e.value) and "not a recognised image format" in str(e.value)
    assert "BytesIO" not in str(e.value)


def test_split_with_every_image_skipped_is_one_line(tmp_path, capsys):
    raw = make_wider(tmp_path / "raw")
    (raw / "Image" / FILE).write_bytes(b"")
    argv = ["wider_attribute", "--data_dir", str(tmp_path / "tfds"), "--manual_dir", str(raw),
            "--on_corrupt", "skip"]
    assert build.main(argv) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error:")]
    assert len(err) == 1 and "split 'trainval' has no examples" in err[0], err
