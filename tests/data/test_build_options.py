"""Build keywords (``data.build_kwargs``, ``build_dataset(**kw)``): a misspelt one is one
DataError naming it and the valid ones, before anything is written; a config name with
no config fields picks one of the builder's own configs."""

import os

import pytest

from csra_jax import data
from csra_jax.config import base_config
from csra_jax.data import registry
from csra_jax.train.data_setup import prepare_dataset


def test_unknown_build_option_names_itself_and_the_valid_ones(tmp_path):
    with pytest.raises(data.DataError) as e:
        registry.build_dataset("synthetic_shapes", str(tmp_path), num_trian=5)
    msg = str(e.value)
    assert "synthetic_shapes: unknown build option(s) ['num_trian']" in msg, msg
    assert "'num_train'" in msg and "'on_corrupt'" in msg and "data.build_kwargs" in msg, msg
    assert os.listdir(tmp_path) == []


def test_bad_build_kwargs_in_a_config_stop_before_building(tmp_path):
    c = base_config()
    c.data.name, c.data.data_dir, c.data.build_if_missing = "synthetic_shapes", str(tmp_path), True
    c.data.build_kwargs = {"num_train": 8, "imagesize": 32}
    with pytest.raises(data.DataError, match=r"unknown build option\(s\) \['imagesize'\]"):
        prepare_dataset(c)
    assert not any(files for _, _, files in os.walk(tmp_path))


def test_a_config_name_alone_picks_the_builders_own_config():
    info = registry.DATASETS["synthetic_shapes"]
    kwargs = {"config_name": "default"}
    assert registry._make_config(info, kwargs) is None
    assert kwargs == {"config": "default"}
    kwargs = {"config_name": "mine", "num_train": 8}
    cfg = registry._make_config(info, kwargs)
    assert (cfg.name, cfg.num_train, kwargs) == ("mine", 8, {})
