"""COCO 2014 and WIDER-Attribute builders on generated raw files."""

import io
import json

import numpy as np
from PIL import Image
import pytest

from csra_jax import data
from csra_jax.data.coco import COCO_CLASSES
from csra_jax.data.wider import WIDER_ATTRIBUTES
from data_fixtures import COCO_CAT_IDS, builder_examples, make_coco, make_wider


def coco_vec(*cat_ids):
    v = np.zeros(80, np.int8)
    for c in cat_ids:
        v[COCO_CAT_IDS.index(c)] = 1
    return v


def test_coco_labels_in_category_id_order_and_empty_dropped(tmp_path):
    raw = make_coco(tmp_path / "raw")
    b = data.build_dataset("coco2014", tmp_path / "tfds", manual_dir=raw)
    tr, va = builder_examples(b, "train"), builder_examples(b, "val")
    assert sorted(tr) == ["COCO_train2014_000000000001.jpg", "COCO_train2014_000000000002.jpg"]
    np.testing.assert_array_equal(tr["COCO_train2014_000000000001.jpg"]["labels"], coco_vec(1, 18))
    ex2 = tr["COCO_train2014_000000000002.jpg"]["labels"]
    assert ex2[79] == 1 and COCO_CLASSES[79] == "toothbrush" and ex2[2] == 1 and ex2.sum() == 2
    np.testing.assert_array_equal(va["COCO_val2014_000000000010.jpg"]["labels"], coco_vec(44))
    assert COCO_CLASSES[COCO_CAT_IDS.index(44)] == "bottle"
    assert all(ex["ignore"].sum() == 0 for ex in va.values())


def test_coco_keep_empty_config(tmp_path):
    raw = make_coco(tmp_path / "raw")
    b = data.build_dataset("coco2014", tmp_path / "tfds", manual_dir=raw, config="keep_empty")
    tr = builder_examples(b, "train")
    assert tr["COCO_train2014_000000000003.jpg"]["labels"].sum() == 0 and len(tr) == 3


def test_coco_errors(tmp_path):
    raw = make_coco(tmp_path / "raw", bad_category=True)
    with pytest.raises(data.DataError, match=r"instances_val2014\.json: annotation #5 \(id 999\)"
                       r" has category_id 91.*label out of range"):
        data.build_dataset("coco2014", tmp_path / "tfds", manual_dir=raw)
    raw = make_coco(tmp_path / "raw2")
    (raw / "annotations/instances_train2014.json").write_text('{"images": [')
    with pytest.raises(data.DataError, match=r"instances_train2014\.json: malformed JSON"):
        data.build_dataset("coco2014", tmp_path / "tfds2", manual_dir=raw)
    (raw / "annotations/instances_val2014.json").unlink()
    with pytest.raises(data.DataError, match=r"instances_val2014\.json: COCO instances file "
                       "not found.*annotations_trainval2014"):
        data.build_dataset("coco2014", tmp_path / "tfds3", manual_dir=raw)


def test_wider_labels_ignore_and_crop(tmp_path):
    raw = make_wider(tmp_path / "raw")
    b = data.build_dataset("wider_attribute", tmp_path / "tfds", manual_dir=raw, config="png")
    tv, te = builder_examples(b, "trainval"), builder_examples(b, "test")
    assert len(WIDER_ATTRIBUTES) == 14 and len(tv) == len(te) == 2
    a = np.array([1, -1, 0, 1, -1, -1, 0, 1, -1, -1, 1, 0, -1, 1])
    ex = tv["train/0--Parade/0_Parade_a.jpg#0"]
    np.testing.assert_array_equal(ex["labels"], (a == 1).astype(np.int8))
    np.testing.assert_array_equal(ex["ignore"], np.zeros(14, np.int8))  # 0 -> negative
    ex_t = te["test/1--Handshaking/1_b.jpg#0"]
    np.testing.assert_array_equal(ex_t["labels"], (a == 1).astype(np.int8))
    np.testing.assert_array_equal(ex_t["ignore"], (a == 0).astype(np.int8))  # 0 -> ignored
    # The crop is exactly the bbox region (x=5, y=10, w=20, h=30) of the source image.
    full = np.asarray(Image.open(raw / "Image/train/0--Parade/0_Parade_a.jpg").convert("RGB"))
    crop = np.asarray(Image.open(io.BytesIO(ex["image"])))
    np.testing.assert_array_equal(crop, full[10:40, 5:25])
    np.testing.assert_array_equal(ex["bbox"], [5, 10, 20, 30])
    # Second person's box [50, 40, 30, 30] leaves the 60x50 image: the official PIL crop
    # keeps its 30x30 size, black outside the image.
    crop2 = np.asarray(Image.open(io.BytesIO(tv["train/0--Parade/0_Parade_a.jpg#1"]["image"])))
    assert crop2.shape == (30, 30, 3)
    np.testing.assert_array_equal(crop2[:10, :10], full[40:50, 50:60])
    assert not crop2[10:].any() and not crop2[:, 10:].any()


def test_wider_default_jpeg_crop_and_bad_attribute(tmp_path):
    raw = make_wider(tmp_path / "raw")
    b = data.build_dataset("wider_attribute", tmp_path / "tfds", manual_dir=raw)
    ex = builder_examples(b, "trainval")["train/0--Parade/0_Parade_a.jpg#0"]
    assert Image.open(io.BytesIO(ex["image"])).format == "JPEG"
    assert Image.open(io.BytesIO(ex["image"])).size == (20, 30)
    ann = raw / "wider_attribute_test.json"
    d = json.loads(ann.read_text())
    d["images"][0]["targets"][1]["attribute"][3] = 2
    ann.write_text(json.dumps(d))
    with pytest.raises(data.DataError, match=r"wider_attribute_test\.json: images\[0\] "
                       r"\(test/1--Handshaking/1_b\.jpg\) person 1: 'attribute' must be 14 "
                       r"values in \{-1, 0, 1\} \(label out of range\)"):
        data.build_dataset("wider_attribute", tmp_path / "tfds2", manual_dir=raw)
