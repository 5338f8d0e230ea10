"""multilabel_json (official CSRA lists and the simple format) and synthetic_shapes."""

import json

import numpy as np
import pytest

from csra_jax import data
from csra_jax.data import synthetic_shapes
from data_fixtures import builder_examples, write_image

NAMES = ["cat", "dog", "bird"]


def csra_files(root, train_targets, test_targets):
    for split, targets in (("train", train_targets), ("test", test_targets)):
        entries = []
        for i, t in enumerate(targets):
            rel = f"img/{split}_{i}.jpg"
            write_image(root / rel, seed=i)
            entries.append({"img_path": rel, "target": t})
        (root / f"{split}.json").write_text(json.dumps(entries))
    return {"train": str(root / "train.json"), "test": str(root / "test.json")}


@pytest.mark.parametrize("scheme,train_t,test_t,exp_labels,exp_ignore", [
    # voc07: 1 pos, -1 neg, 0 ignore (positive-but-ignored in test, negative in train)
    ("voc07", [[1, -1, 0]], [[1, -1, 0]], ([1, 0, 0], [1, 0, 1]), ([0, 0, 0], [0, 0, 1])),
    ("coco", [[1, 0, 1]], [[0, 1, 0]], ([1, 0, 1], [0, 1, 0]), ([0, 0, 0], [0, 0, 0])),
    # wider: 1 pos, 0 neg, 99 ignore (negative+ignored in test, negative in train)
    ("wider", [[1, 99, 0]], [[1, 99, 0]], ([1, 0, 0], [1, 0, 0]), ([0, 0, 0], [0, 1, 0])),
])
def test_csra_format_schemes(tmp_path, scheme, train_t, test_t, exp_labels, exp_ignore):
    ann = csra_files(tmp_path, train_t, test_t)
    b = data.build_dataset("multilabel_json", tmp_path / "tfds", config_name="mine", format="csra",
                           target_scheme=scheme, class_names=NAMES, annotations=ann)
    tr, te = builder_examples(b, "train"), builder_examples(b, "test")
    np.testing.assert_array_equal(tr["img/train_0.jpg"]["labels"], exp_labels[0])
    np.testing.assert_array_equal(te["img/test_0.jpg"]["labels"], exp_labels[1])
    np.testing.assert_array_equal(tr["img/train_0.jpg"]["ignore"], exp_ignore[0])
    np.testing.assert_array_equal(te["img/test_0.jpg"]["ignore"], exp_ignore[1])
    info = data.get_dataset_info("multilabel_json", tmp_path / "tfds", config="mine")
    assert info.class_names == tuple(NAMES) and info.splits == ("train", "test")


def test_csra_format_out_of_range_and_class_file(tmp_path):
    (tmp_path / "names.txt").write_text("cat\ndog\nbird\n")
    ann = csra_files(tmp_path, [[1, -1, 0]], [[1, 2, 0]])
    with pytest.raises(data.DataError, match=r"test\.json: entry #0 \(img/test_0\.jpg\): target "
                       r"value 2 at class 1 is out of range for scheme 'voc07'"):
        data.build_dataset("multilabel_json", tmp_path / "tfds", config_name="m", format="csra",
                           target_scheme="voc07", class_names_file=str(tmp_path / "names.txt"),
                           annotations=ann)
    ann = csra_files(tmp_path, [[1, -1]], [[1, -1, 1]])
    with pytest.raises(data.DataError, match=r"train\.json: entry #0 .*shape \(2,\), expected "
                       r"\(3,\)"):
        data.build_dataset("multilabel_json", tmp_path / "tfds2", config_name="m", format="csra",
                           target_scheme="voc07", class_names=NAMES, annotations=ann)


def test_simple_format(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"pics/{i}.jpg", seed=i)
    doc = {"classes": NAMES, "images": [
        {"file": "pics/0.jpg", "labels": ["dog", "bird"]},
        {"file": "pics/1.jpg", "labels": ["cat"], "ignore": ["bird"]},
        {"file": str(tmp_path / "pics/2.jpg"), "labels": []}]}
    (tmp_path / "all.json").write_text(json.dumps(doc))
    b = data.build_dataset("multilabel_json", tmp_path / "tfds", manual_dir=tmp_path,
                           config_name="simple", annotations={"train": str(tmp_path / "all.json")})
    ex = builder_examples(b, "train")
    np.testing.assert_array_equal(ex["pics/0.jpg"]["labels"], [0, 1, 1])
    np.testing.assert_array_equal(ex["pics/1.jpg"]["labels"], [1, 0, 0])
    np.testing.assert_array_equal(ex["pics/1.jpg"]["ignore"], [0, 0, 1])
    assert b.info.metadata["class_names"] == NAMES
    doc["images"][0]["labels"] = ["zebra"]
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(data.DataError, match=r"bad\.json: images\[0\] \(pics/0\.jpg\): unknown "
                       r"class 'zebra'.*label out of range"):
        data.build_dataset("multilabel_json", tmp_path / "tfds2", config_name="s2",
                           annotations={"train": str(tmp_path / "bad.json")})
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(data.DataError, match=r"broken\.json: malformed JSON"):
        data.build_dataset("multilabel_json", tmp_path / "tfds3", config_name="s3", format="csra",
                           class_names=NAMES, annotations={"train": str(tmp_path / "broken.json")})
    with pytest.raises(data.DataError, match=r"missing\.json: multilabel_json annotation file "
                       r"for split 'train' not found"):
        data.build_dataset("multilabel_json", tmp_path / "tfds4", config_name="s4", class_names=NAMES,
                           annotations={"train": str(tmp_path / "missing.json")})


def test_synthetic_shapes_deterministic_and_sane(tmp_path):
    cfg = synthetic_shapes.SyntheticShapesConfig(name="t", image_size=64)
    a_img, a_lab = synthetic_shapes.render(cfg, "train", 5)
    b_img, b_lab = synthetic_shapes.render(cfg, "train", 5)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    other = synthetic_shapes.SyntheticShapesConfig(name="u", image_size=64, seed=1)
    assert not np.array_equal(synthetic_shapes.render(other, "train", 5)[0], a_img)
    counts = np.array([synthetic_shapes.render(cfg, "train", i)[1].sum() for i in range(60)])
    assert counts.min() >= 1 and counts.max() <= 4 and len(set(counts)) >= 3
    assert len(synthetic_shapes.SHAPES) >= 10
    b = data.build_dataset("synthetic_shapes", tmp_path / "tfds", num_train=12, num_test=5,
                           image_size=64)
    assert {k: v.num_examples for k, v in b.info.splits.items()} == {"train": 12, "test": 5}
    ex = builder_examples(b, "train")["train_000005"]
    np.testing.assert_array_equal(ex["labels"], a_lab)
    b2 = data.build_dataset("synthetic_shapes", tmp_path / "tfds2", num_train=12, num_test=5,
                            image_size=64)
    assert builder_examples(b2, "train")["train_000005"]["image"] == ex["image"]
