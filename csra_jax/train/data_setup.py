"""What the trainer reads, from the config: the dataset (built first if asked to), the
train and eval iterators (what each image becomes is the config's ``InputSpec``) and the
steps per epoch."""

from __future__ import annotations

import os

import jax
from jax.experimental import multihost_utils

from csra_jax import data as data_lib
from csra_jax.train.multihost import is_main


def prepare_dataset(config) -> data_lib.DatasetInfo:
    """Dataset info (class names, splits); builds the dataset first if asked to."""
    d = config.data
    data_dir = os.path.expanduser(d.data_dir)
    builder_config = d.builder_config or None
    try:
        return data_lib.get_dataset_info(d.name, data_dir, builder_config)
    except data_lib.DataError:
        if not d.build_if_missing:
            raise
    if is_main():
        kwargs = dict(d.build_kwargs)
        if builder_config:
            kwargs.setdefault("config_name", builder_config)
        print(f"building dataset {d.name} in {data_dir} ...", flush=True)
        from csra_jax.data.build import build_cleanly
        build_cleanly(d.name, data_dir, os.path.expanduser(d.manual_dir) or None, **kwargs)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("dataset_built")
    return data_lib.get_dataset_info(d.name, data_dir, builder_config)


def data_kwargs(config, info, mesh, train: bool) -> dict:
    """The iterators' arguments; what each image becomes is the config's ``InputSpec``."""
    d = config.data
    spec = data_lib.InputSpec.from_config(d)
    return dict(name=d.name, data_dir=os.path.expanduser(d.data_dir),
                spec=spec if train else spec.for_eval(),
                split=(d.train_split or info.train_split) if train else
                (d.eval_split or info.eval_split),
                config=d.builder_config or None,
                global_batch_size=config.batch_size if train else config.eval_batch_size,
                num_workers=d.num_workers, read_threads=d.read_threads, mesh=mesh)


def train_iterator(config, info, mesh):
    return data_lib.create_train_iterator(**data_kwargs(config, info, mesh, True),
                                          seed=config.seed)


def eval_iterator(config, info, mesh, with_ids=True):
    return data_lib.create_eval_iterator(**data_kwargs(config, info, mesh, False),
                                         with_ids=with_ids)


def steps_per_epoch(config, info) -> int:
    if config.steps_per_epoch > 0:
        return config.steps_per_epoch
    builder = data_lib.load_builder(info.name, os.path.expanduser(config.data.data_dir),
                                    config.data.builder_config or None)
    split = config.data.train_split or info.train_split
    n = builder.info.splits[split].num_examples
    steps = n // config.batch_size
    if steps < 1:
        raise ValueError(f"invalid config: batch_size={config.batch_size} is larger than the "
                         f"{n} examples of {info.name}/{split}")
    return steps
