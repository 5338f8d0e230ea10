"""Dataset names -> builder class, class names and split names; build and load helpers.

`DATASETS[name]` is static information; for `multilabel_json` (class names chosen by
the user) `get_dataset_info(name, data_dir, config)` reads them from the prepared
dataset's metadata. Prepared data lives in `data_dir/<name>/<config>/<version>/`.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Optional, Type

from etils import epath
import tensorflow_datasets as tfds

from csra_jax.data import coco, common, multilabel_json, synthetic_shapes, voc, wider
from csra_jax.data.errors import DataError, require_dir


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    builder_cls: Type[common.MultiLabelBuilder]
    class_names: Optional[tuple[str, ...]]   # None: chosen per build (multilabel_json)
    train_split: str
    eval_split: str
    splits: tuple[str, ...]
    config_cls: Any = None                   # BuilderConfig dataclass for keyword configs
    # An eval split without public labels is written for this evaluation server instead
    # of scored (train.evaluate.SERVER_WRITERS), e.g. VOC2012 test.
    server_format: Optional[str] = None

    @property
    def num_classes(self) -> Optional[int]:
        return None if self.class_names is None else len(self.class_names)


DATASETS: dict[str, DatasetInfo] = {
    "voc2007": DatasetInfo("voc2007", voc.Voc2007, voc.VOC_CLASSES, "trainval", "test",
                           ("trainval", "test")),
    "voc2012": DatasetInfo("voc2012", voc.Voc2012, voc.VOC_CLASSES, "trainval", "test",
                           ("trainval", "test"), server_format="voc_comp2"),
    "coco2014": DatasetInfo("coco2014", coco.Coco2014, coco.COCO_CLASSES, "train", "val",
                            ("train", "val"), coco.Coco2014Config),
    "wider_attribute": DatasetInfo("wider_attribute", wider.WiderAttribute,
                                   wider.WIDER_ATTRIBUTES, "trainval", "test",
                                   ("trainval", "test"), wider.WiderAttributeConfig),
    "multilabel_json": DatasetInfo("multilabel_json", multilabel_json.MultilabelJson, None,
                                   "train", "test", ("train", "test"),
                                   multilabel_json.MultilabelJsonConfig),
    "synthetic_shapes": DatasetInfo("synthetic_shapes", synthetic_shapes.SyntheticShapes,
                                    synthetic_shapes.SHAPES, "train", "test",
                                    ("train", "test"),
                                    synthetic_shapes.SyntheticShapesConfig),
}


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DataError(None, f"unknown dataset {name!r}; known: {', '.join(DATASETS)}.")
    return DATASETS[name]


def get_dataset_info(name: str, data_dir: Optional[str] = None,
                     config: Optional[str] = None) -> DatasetInfo:
    """Static info; with data_dir, class names/splits come from the prepared dataset."""
    info = _info(name)
    if data_dir is None:
        if info.class_names is None:
            raise DataError(None, f"{name}'s class names are chosen per build: pass data_dir "
                            "(and config) of a prepared dataset.")
        return info
    builder = load_builder(name, data_dir, config)
    names = tuple(builder.info.metadata["class_names"])
    splits = tuple(builder.info.splits.keys())
    chosen = tuple(builder.info.metadata.get("train_splits") or ())  # multilabel_json
    train = info.train_split if info.train_split in splits else (chosen or splits)[0]
    evals = info.eval_split if info.eval_split in splits else next(
        (s for s in splits if s not in chosen and s != train), splits[-1])
    return dataclasses.replace(info, class_names=names, splits=splits, train_split=train,
                               eval_split=evals)


# Keywords a builder takes besides its config's fields (MultiLabelBuilder + tfds').
BUILDER_OPTIONS = ("config", "config_name", "on_corrupt", "verify_images", "version",
                   "file_format")


def _config_fields(info: DatasetInfo) -> set:
    if info.config_cls is None:
        return set()
    return {f.name for f in dataclasses.fields(info.config_cls)} - {
        "name", "version", "release_notes", "supported_versions", "description", "tags"}


def _make_config(info: DatasetInfo, kwargs: dict):
    """Turns config keyword arguments (e.g. num_train=64) into a BuilderConfig; an
    unknown keyword is a DataError naming it and the valid ones."""
    fields = _config_fields(info)
    unknown = sorted(k for k in kwargs if k not in fields and k not in BUILDER_OPTIONS)
    if unknown:
        raise DataError(None, f"{info.name}: unknown build option(s) {unknown}; valid: "
                        f"config fields {sorted(fields) or 'none'} and {list(BUILDER_OPTIONS)}.",
                        "Fix data.build_kwargs (or the --set fields of csra_jax.data.build).")
    cfg_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in fields}
    name = kwargs.pop("config_name", None)
    if not cfg_kwargs:
        if name is not None:  # no fields: the name picks one of the builder's own configs
            kwargs.setdefault("config", name)
        return None
    if name is None:
        name = "custom_" + "_".join(f"{k}{v}" for k, v in sorted(cfg_kwargs.items())
                                    if not isinstance(v, (dict, list, tuple)))
        name = "".join(ch if ch.isalnum() or ch in "_." else "_" for ch in name)
    return info.config_cls(name=name, **cfg_kwargs)


def build_dataset(name: str, data_dir: str, manual_dir: Optional[str] = None,
                  **builder_kwargs) -> tfds.core.DatasetBuilder:
    """Builds `name` into data_dir (ArrayRecord) from local raw files; returns the builder.

    builder_kwargs: `config` (a name or BuilderConfig), `on_corrupt` ('error'|'skip'),
    `verify_images`, or the fields of the dataset's config dataclass (a config is made
    from them; `config_name=` names it), e.g. synthetic_shapes num_train=64, image_size=64.
    Nothing is downloaded: datasets other than synthetic_shapes need manual_dir (or,
    for multilabel_json, annotation paths).
    """
    info = _info(name)
    cfg = _make_config(info, builder_kwargs)
    if cfg is not None:
        if "config" in builder_kwargs:
            raise DataError(None, "pass either config=... or config fields, not both.")
        builder_kwargs["config"] = cfg
    if manual_dir is not None:
        require_dir(manual_dir, f"{name} manual_dir",
                    "Pass the folder holding the official downloads (README, Datasets).")
    elif name not in ("synthetic_shapes", "multilabel_json"):
        raise DataError(None, f"{name} needs manual_dir=<folder with the official downloads> "
                        "(see the README's Datasets section); nothing is downloaded.")
    builder = info.builder_cls(data_dir=str(data_dir), **builder_kwargs)
    dl_config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    builder.download_and_prepare(download_config=dl_config)
    return builder


def prepared_dir(name: str, data_dir: str, config: Optional[str] = None) -> epath.Path:
    """data_dir/name/config/version of a prepared dataset (latest version)."""
    info = _info(name)
    if config is None:
        configs = info.builder_cls.BUILDER_CONFIGS
        config = configs[0].name if configs else None
    base = epath.Path(data_dir) / name
    if config is not None:
        base = base / config
    versions = sorted((p for p in base.glob("*.*.*") if (p / "dataset_info.json").exists()),
                      key=lambda p: tuple(int(x) for x in p.name.split(".")))
    if not versions:
        raise DataError(base, f"no prepared {name} dataset here (missing directory or "
                        "unfinished build).", f"Build it first: python -m csra_jax.data.build "
                        f"{name} --data_dir={data_dir} ...")
    _warn_if_outdated(info, versions[-1])
    return versions[-1]


_warned_outdated = set()


def _warn_if_outdated(info: DatasetInfo, path: epath.Path) -> None:
    """A build older than the builder's version is still read (it may be all the user
    has), but once per folder a line says what the newer version changes."""
    code = info.builder_cls.VERSION
    if tfds.core.Version(path.name) >= code or str(path) in _warned_outdated:
        return
    _warned_outdated.add(str(path))
    change = getattr(info.builder_cls, "RELEASE_NOTES", {}).get(str(code), "")
    print(f"warning: {path} was built by {info.name} {path.name}; this version builds "
          f"{code}" + (f" ({change})" if change else "") + ". Rebuild it to get that: move "
          "the folder away and run the build again.", file=sys.stderr, flush=True)


def load_builder(name: str, data_dir: str, config: Optional[str] = None):
    """Read-only builder of a prepared dataset (no builder code or raw files needed)."""
    return tfds.builder_from_directory(str(prepared_dir(name, data_dir, config)))
