"""A prepared dataset older than its builder's version is still read, with one warning
per folder that names both versions."""

import shutil

from csra_jax.data import registry


def test_an_outdated_build_warns_once_and_is_still_used(data_dir, tmp_path, capsys):
    src = registry.prepared_dir("synthetic_shapes", data_dir, "tiny")
    old = tmp_path / "synthetic_shapes" / "tiny" / "0.9.0"
    shutil.copytree(src, old)
    assert capsys.readouterr().err == ""  # the current build itself: no warning
    for _ in range(2):
        assert registry.prepared_dir("synthetic_shapes", str(tmp_path), "tiny") == old
    err = capsys.readouterr().err.strip().splitlines()
    note = registry.DATASETS["synthetic_shapes"].builder_cls.RELEASE_NOTES["1.0.0"]
    assert err == [f"warning: {old} was built by synthetic_shapes 0.9.0; this version builds "
                   f"1.0.0 ({note}). Rebuild it to get that: move the folder away and run "
                   "the build again."], err
    builder = registry.load_builder("synthetic_shapes", str(tmp_path), "tiny")
    assert builder.info.splits["train"].num_examples == 48
