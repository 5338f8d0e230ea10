"""Fixtures the trainer tests share: the tiny synthetic_shapes build and an XLA cache,
one of each per test module (a module's own fixture of the same name takes precedence)."""

import pytest

from csra_jax.data.registry import build_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfds")
    build_dataset("synthetic_shapes", str(d), num_train=48, num_test=20, image_size=32,
                  config_name="tiny")
    return str(d)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("xla_cache"))
