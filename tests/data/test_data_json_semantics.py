"""multilabel_json --format csra: explicit train/eval semantics per split, and official
WIDER lists (one entry per person with a 'bbox') cropped like the official code."""

import io
import json

import numpy as np
from PIL import Image
import pytest

from csra_jax import data
from csra_jax.data import build
from data_fixtures import builder_examples, write_image

NAMES = ["cat", "dog", "bird"]


def lists(root, splits, target):
    ann = {}
    for split in splits:
        write_image(root / f"img/{split}.jpg", seed=len(ann))
        (root / f"{split}.json").write_text(json.dumps([{"img_path": f"img/{split}.jpg",
                                                          "target": target}]))
        ann[split] = str(root / f"{split}.json")
    return ann


def build_csra(tmp_path, ann, scheme="voc07", name="m", **kw):
    return data.build_dataset("multilabel_json", tmp_path / f"tfds_{name}", config_name=name,
                              format="csra", target_scheme=scheme, class_names=NAMES,
                              annotations=ann, **kw)


def test_voc07_trainval_gets_training_semantics(tmp_path, capfd):
    """VOC's own split names: 0 (difficult) is a negative in trainval, ignored in test."""
    b = build_csra(tmp_path, lists(tmp_path, ("trainval", "test"), [1, -1, 0]))
    tv, te = builder_examples(b, "trainval")["img/trainval.jpg"], builder_examples(b, "test")["img/test.jpg"]
    np.testing.assert_array_equal(tv["labels"], [1, 0, 0])
    np.testing.assert_array_equal(tv["ignore"], [0, 0, 0])
    np.testing.assert_array_equal(te["labels"], [1, 0, 1])
    np.testing.assert_array_equal(te["ignore"], [0, 0, 1])
    err = capfd.readouterr().err
    assert "[multilabel_json/trainval] voc07 targets read with training semantics" in err
    assert "[multilabel_json/test] voc07 targets read with evaluation semantics" in err


def test_readers_train_on_the_training_split_whatever_the_order(tmp_path):
    ann = lists(tmp_path, ("trainval", "test"), [1, -1, 0])
    build_csra(tmp_path, {"test": ann["test"], "trainval": ann["trainval"]})
    info = data.get_dataset_info("multilabel_json", tmp_path / "tfds_m", config="m")
    assert (info.train_split, info.eval_split) == ("trainval", "test"), info.splits
    ann = lists(tmp_path, ("b", "a"), [1, -1, 0])
    build_csra(tmp_path, ann, name="ba", train_splits=["b"])
    info = data.get_dataset_info("multilabel_json", tmp_path / "tfds_ba", config="ba")
    assert (info.train_split, info.eval_split) == ("b", "a"), info.splits


@pytest.mark.parametrize("scheme", ["voc07", "wider"])
def test_unknown_split_name_is_an_error_until_chosen(tmp_path, scheme):
    target = [1, 0, 99] if scheme == "wider" else [1, -1, 0]
    ann = lists(tmp_path, ("mine", "test"), target)
    with pytest.raises(data.DataError, match=r"is split 'mine' a training or an evaluation "
                       r"split\?.*train_splits="):
        build_csra(tmp_path, ann, scheme)
    b = build_csra(tmp_path, ann, scheme, name="chosen", train_splits=["mine"])
    np.testing.assert_array_equal(builder_examples(b, "mine")["img/mine.jpg"]["ignore"], [0, 0, 0])
    # An explicit empty list: every split is an evaluation split.
    b = build_csra(tmp_path, ann, scheme, name="alleval", train_splits=[])
    assert builder_examples(b, "mine")["img/mine.jpg"]["ignore"].sum() == 1
    with pytest.raises(data.DataError, match=r"train_splits=\['nope'\] must be a list of split "
                       r"names from annotations \(\['mine', 'test'\]\)"):
        build_csra(tmp_path, ann, scheme, name="bad", train_splits=["nope"])


def test_split_independent_schemes_need_no_choice(tmp_path):
    b = build_csra(tmp_path, lists(tmp_path, ("mine", "other"), [1, 0, 1]), "coco")
    np.testing.assert_array_equal(builder_examples(b, "other")["img/other.jpg"]["labels"], [1, 0, 1])


def test_cli_ambiguous_split_is_one_line_and_set_resolves_it(tmp_path, capsys):
    ann = lists(tmp_path, ("trainval07", "test"), [1, -1, 0])
    (tmp_path / "names.txt").write_text("\n".join(NAMES))
    argv = ["multilabel_json", "--data_dir", str(tmp_path / "tfds"), "--name", "v",
            "--format", "csra", "--target_scheme", "voc07", "--class_names_file",
            str(tmp_path / "names.txt"), "--annotations", f"trainval07={ann['trainval07']}",
            "--annotations", f"test={ann['test']}"]
    assert build.main(argv) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error:")]
    assert len(err) == 1 and "'trainval07'" in err[0], err
    assert build.main(argv + ["--set", 'train_splits=["trainval07"]']) == 0


def test_official_wider_lists_are_cropped_per_person(tmp_path):
    """The official dataset code: Image.open(p).convert("RGB").crop([x, y, x+w, y+h])."""
    write_image(tmp_path / "Image/a.jpg", w=60, h=50, seed=3)
    write_image(tmp_path / "Image/b.jpg", w=40, h=30, seed=4)
    persons = [("Image/a.jpg", [5, 10, 20, 30]), ("Image/a.jpg", [50.5, 40, 30, 30.4]),
               ("Image/b.jpg", [-4, -2, 12, 9])]
    names = [f"a{i}" for i in range(14)]
    for split, value in (("trainval", 0), ("test", 99)):
        entries = [{"img_path": p, "bbox": bb, "target": [1, value] + [0] * 12}
                   for p, bb in persons]
        (tmp_path / f"{split}_wider.json").write_text(json.dumps(entries))
    ann = {s: str(tmp_path / f"{s}_wider.json") for s in ("trainval", "test")}
    b = data.build_dataset("multilabel_json", tmp_path / "tfds", config_name="w", format="csra",
                           target_scheme="wider", class_names=names, annotations=ann,
                           crop_format="png")
    te = builder_examples(b, "test")
    assert sorted(te) == ["Image/a.jpg#0", "Image/a.jpg#1", "Image/b.jpg#0"]
    for (p, (x, y, w, h)), key in zip(persons, sorted(te)):
        ref = np.asarray(Image.open(tmp_path / p).convert("RGB").crop([x, y, x + w, y + h]))
        ours = np.asarray(Image.open(io.BytesIO(te[key]["image"])))
        assert ours.shape == ref.shape, key
        np.testing.assert_array_equal(ours, ref, err_msg=key)
        np.testing.assert_array_equal(te[key]["ignore"][:2], [0, 1])  # 99 ignored in test
    tv = builder_examples(b, "trainval")
    assert all(ex["ignore"].sum() == 0 for ex in tv.values())
    bad = [{"img_path": "Image/a.jpg", "bbox": [1, 2, 3], "target": [1] + [0] * 13}]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(data.DataError, match=r"bad\.json: entry #0 \(Image/a\.jpg\): 'bbox' "
                       r"must be \[x, y, w, h\]"):
        data.build_dataset("multilabel_json", tmp_path / "tfds2", config_name="w2",
                           format="csra", target_scheme="wider", class_names=names,
                           annotations={"trainval": str(tmp_path / "bad.json")})
