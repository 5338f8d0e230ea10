"""The README's "Extending" example is real: its two files, dropped into the package's
search path (as a user adds them to ``csra_jax/models/``), are found without any other
edit, build from a config, and train a step."""

import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import csra_jax.models
from csra_jax.models import registry

from repo_root import ROOT


def _readme_files() -> dict:
    """{file name: source} of the ```py blocks in the README's Extending section."""
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = readme.split("## Extending", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```py\n(.*?)```", section, flags=re.S)
    return {re.match(r"# csra_jax/models/(\w+\.py)\n", b).group(1): b for b in blocks}


@pytest.fixture
def extended(tmp_path, monkeypatch):
    """The package with the README's files on its path; the registries as they were after."""
    registry.families()  # the package's own files register into the originals first
    files = _readme_files()
    assert sorted(files) == ["max_head.py", "two_conv.py"]
    for name, source in files.items():
        (tmp_path / name).write_text(source)
    monkeypatch.setattr(csra_jax.models, "__path__", [*csra_jax.models.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_BACKBONES", dict(registry._BACKBONES))
    monkeypatch.setattr(registry, "_HEADS", dict(registry._HEADS))
    monkeypatch.setattr(registry, "_loaded", set(registry._loaded))
    yield
    for name in files:
        sys.modules.pop(f"csra_jax.models.{name[:-3]}", None)


def test_readme_backbone_and_head_train_a_step(extended):
    from csra_jax.models.from_config import model_from_config
    from csra_jax.config import base_config
    from csra_jax.train.state import TrainState
    from csra_jax.train.steps import make_mesh, make_train_step
    assert "two_conv" in registry.available_archs() and "max" in registry.available_heads()

    config = base_config()
    config.model.arch, config.model.head, config.data.image_size = "two_conv", "max", 32
    model = model_from_config(config, 3)
    assert type(model.backbone).__name__ == "TwoConv" and type(model.head).__name__ == "MaxHead"

    images = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
    variables = model.init(jax.random.key(1), images)
    maps = model.apply(variables, images, method="class_maps")
    assert maps.attention.shape == (2, 3, 8, 8)
    tx = optax.sgd(0.1)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                       batch_stats={}, opt_state=tx.init(variables["params"]),
                       rng=jax.random.key_data(jax.random.key(2)),
                       nonfinite=jnp.zeros((), jnp.int32))
    before = jax.device_get(state.params)
    labels = np.eye(3, dtype=np.float32)[[0, 1]]
    batch = {"image": images, "labels": labels, "ignore": np.zeros_like(labels),
             "mask": np.ones((2,), np.float32)}
    step = make_train_step(model, tx, make_mesh(jax.devices()[:1]),
                           {"head": optax.constant_schedule(0.1)})
    state, metrics = step(state, batch)
    assert np.isfinite(float(metrics["loss"])) and int(state.step) == 1
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), state.params,
                         before)
    assert min(jax.tree.leaves(moved)) > 0  # backbone and head both learn


def test_unknown_names_say_what_is_registered():
    with pytest.raises(ValueError, match=r"unknown arch 'two_conv'; valid: .*resnet18"):
        registry.backbone_spec("two_conv")
    with pytest.raises(ValueError, match="unknown head 'max'; valid: csra, gap, attend_rectify"):
        registry.head_spec("max")
