"""bench/small_object_sets.py writes the official CSRA JSON lists that multilabel_json
(format csra) builds unchanged, deterministically, for every variant."""

import dataclasses
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

from csra_jax import data
from data_fixtures import builder_examples
from repo_root import ROOT

sys.path.insert(0, os.path.join(ROOT,
                                "bench"))
import small_object_sets as sos  # noqa: E402


def test_written_lists_build_with_multilabel_json_and_keep_every_label(tmp_path):
    v = dataclasses.replace(sos.VARIANTS["heldout"], num_train=6, num_test=3)
    root = sos.write_variant("heldout", str(tmp_path / "sets"), v)
    train = json.load(open(os.path.join(root, "train.json")))
    assert len(train) == 6 and set(train[0]) == {"img_path", "target"}
    for e in train:
        assert len(e["target"]) == 8 and set(e["target"]) <= {0, 1}
        assert 1 <= sum(e["target"]) <= 3
        im = Image.open(os.path.join(root, e["img_path"]))
        assert im.size == (128, 128) and im.mode == "RGB"
    b = sos.build_variant("heldout", root, str(tmp_path / "tfds"))
    built = builder_examples(b, "train")
    for e in train:
        np.testing.assert_array_equal(built[e["img_path"]]["labels"], e["target"])
    info = data.get_dataset_info("multilabel_json", str(tmp_path / "tfds"), config="small_heldout")
    assert info.class_names == sos.PRIMITIVES[:8] and info.eval_split == "test"


@pytest.mark.parametrize("name", sorted(sos.VARIANTS))
def test_every_variant_renders_deterministically_with_its_class_count(name):
    v = sos.VARIANTS[name]
    img, labels = sos.render(v, "test", 3)
    img2, labels2 = sos.render(v, "test", 3)
    np.testing.assert_array_equal(img, img2)
    np.testing.assert_array_equal(labels, labels2)
    assert img.shape == (v.image_size, v.image_size, 3) and labels.shape == (v.num_classes,)
    assert not np.array_equal(img, sos.render(v, "train", 3)[0])  # splits differ
