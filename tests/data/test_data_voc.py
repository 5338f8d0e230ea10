"""VOC builders on a generated VOCdevkit tree: exact labels/ignore and error messages."""

import numpy as np
import pytest

from csra_jax import data
from csra_jax.data.voc import VOC_CLASSES
from data_fixtures import builder_examples, make_voc


def vec(*names):
    v = np.zeros(len(VOC_CLASSES), np.int8)
    for n in names:
        v[VOC_CLASSES.index(n)] = 1
    return v


def test_voc2007_labels_and_difficult_protocol(tmp_path):
    raw = make_voc(tmp_path / "raw")
    b = data.build_dataset("voc2007", tmp_path / "tfds", manual_dir=raw)
    assert b.info.metadata["class_names"] == list(VOC_CLASSES)
    tv, te = builder_examples(b, "trainval"), builder_examples(b, "test")
    assert sorted(tv) == ["000001", "000002"] and sorted(te) == ["000003", "000004", "000005"]
    np.testing.assert_array_equal(tv["000001"]["labels"], vec("dog", "person"))
    # trainval: a difficult-only class (chair) is negative, never ignored.
    np.testing.assert_array_equal(tv["000002"]["labels"], vec("cat"))
    np.testing.assert_array_equal(tv["000002"]["ignore"], vec())
    # test: difficult-only bottle is positive-but-ignored; tvmonitor has an easy one too.
    np.testing.assert_array_equal(te["000003"]["labels"], vec("car", "bottle"))
    np.testing.assert_array_equal(te["000003"]["ignore"], vec("bottle"))
    np.testing.assert_array_equal(te["000004"]["labels"], vec("tvmonitor", "aeroplane"))
    np.testing.assert_array_equal(te["000004"]["ignore"], vec())
    assert te["000005"]["image"] == (raw / "VOCdevkit/VOC2007/JPEGImages/000005.jpg").read_bytes()


def test_voc2012_test_is_unlabelled_and_optional(tmp_path):
    raw = make_voc(tmp_path / "raw", year="2012")
    b = data.build_dataset("voc2012", tmp_path / "tfds", manual_dir=raw)
    te = builder_examples(b, "test")
    assert all(ex["labels"].sum() == 0 and ex["ignore"].all() for ex in te.values())
    only_tv = {k: v for k, v in make_voc.__globals__["VOC_IMAGES"].items() if v[0] == "trainval"}
    raw2 = make_voc(tmp_path / "raw2", year="2012", images=only_tv)
    b2 = data.build_dataset("voc2012", tmp_path / "tfds2", manual_dir=raw2)
    assert list(b2.info.splits.keys()) == ["trainval"]


def test_truncated_jpeg_errors_naming_the_file(tmp_path):
    raw = make_voc(tmp_path / "raw", truncated="000004")
    with pytest.raises(data.DataError, match=r"000004\.jpg: unreadable or truncated image.*"
                       r"on_corrupt='skip'"):
        data.build_dataset("voc2007", tmp_path / "tfds", manual_dir=raw)


def test_truncated_jpeg_skipped_and_counted(tmp_path, capfd):
    raw = make_voc(tmp_path / "raw", truncated="000004")
    b = data.build_dataset("voc2007", tmp_path / "tfds", manual_dir=raw, on_corrupt="skip")
    assert sorted(builder_examples(b, "test")) == ["000003", "000005"]
    err = capfd.readouterr().err
    assert "[voc2007/test] skipped 1 corrupt image(s)" in err and "000004.jpg" in err
    assert "[voc2007/trainval] skipped 0 corrupt image(s)" in err


def test_malformed_xml(tmp_path):
    raw = make_voc(tmp_path / "raw")
    (raw / "VOCdevkit/VOC2007/Annotations/000002.xml").write_text("<annotation><object>")
    with pytest.raises(data.DataError, match=r"000002\.xml: malformed XML"):
        data.build_dataset("voc2007", tmp_path / "tfds", manual_dir=raw)


def test_unknown_class_is_out_of_range(tmp_path):
    raw = make_voc(tmp_path / "raw", images={"000009": ("trainval", [("unicorn", 0)]),
                                             "000010": ("test", [("dog", 0)])})
    with pytest.raises(data.DataError, match=r"000009\.xml: unknown VOC class 'unicorn' "
                       r"\(label out of range"):
        data.build_dataset("voc2007", tmp_path / "tfds", manual_dir=raw)


def test_missing_folders(tmp_path):
    with pytest.raises(data.DataError, match=r"nowhere: voc2007 manual_dir not found"):
        data.build_dataset("voc2007", tmp_path / "tfds", manual_dir=tmp_path / "nowhere")
    raw = make_voc(tmp_path / "raw")
    (raw / "VOCdevkit/VOC2007/ImageSets/Main/test.txt").unlink()
    with pytest.raises(data.DataError, match=r"Main/test\.txt: VOC image-set list not found"):
        data.build_dataset("voc2007", tmp_path / "tfds", manual_dir=raw)
    with pytest.raises(data.DataError, match="needs manual_dir"):
        data.build_dataset("voc2007", tmp_path / "tfds")
