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


SCALED_HEAD = '''
import flax.linen as nn
import jax.numpy as jnp

from csra_jax.models.head import ClassMaps, Head, min_max_per_class
from csra_jax.models.registry import HeadSpec, register_head


class ScaledHead(Head):
    num_classes: int
    scale: float = 1.0

    @nn.compact
    def __call__(self, x, train: bool = False, with_maps: bool = False):
        scores = self.scale * nn.Dense(self.num_classes, name="fc")(x)
        logits = scores.mean(axis=(1, 2))
        return (logits, ClassMaps(scores, min_max_per_class(scores))) if with_maps else logits


register_head(HeadSpec(
    name="scaled", module=ScaledHead,
    build=lambda num_classes, num_heads, lam, dtype, param_dtype, scale: ScaledHead(
        num_classes, scale=scale),
    options=("scale",), config_fields={"scale": "scaled_head_scale"},
    config_defaults={"scaled_head_scale": 2.0}))
'''


def test_a_head_option_gets_its_config_field_from_the_heads_own_file(tmp_path, monkeypatch):
    """A head with an option of its own declares the config field and its default in its
    spec; base_config() has it, and an override reaches the module."""
    registry.families()
    (tmp_path / "scaled_head.py").write_text(SCALED_HEAD)
    monkeypatch.setattr(csra_jax.models, "__path__", [*csra_jax.models.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_BACKBONES", dict(registry._BACKBONES))
    monkeypatch.setattr(registry, "_HEADS", dict(registry._HEADS))
    monkeypatch.setattr(registry, "_loaded", set(registry._loaded))
    try:
        from csra_jax.config import base_config, validate_config
        from csra_jax.models.from_config import model_from_config
        config = base_config()
        assert config.model.scaled_head_scale == 2.0
        config.model.arch, config.model.head, config.data.image_size = "small_cnn", "scaled", 32
        config.require_pretrained = False
        config.model.scaled_head_scale = 0.5
        validate_config(config, 1, 1)
        assert model_from_config(config, 3).head.scale == 0.5
    finally:
        sys.modules.pop("csra_jax.models.scaled_head", None)
