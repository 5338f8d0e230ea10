"""InputSpec: one validated value for what an image becomes; bad fields fail at once,
naming the field; the trainer builds it from the config (evaluation without draft)."""

import dataclasses

import numpy as np
import pytest

from csra_jax import data
from csra_jax.data import InputSpec, InputSpecError
from csra_jax.config import base_config, validate_config


def test_values_are_canonical_and_frozen():
    s = InputSpec(32, normalization=[[0.1, 0.2, 0.3], 0.5], crop_scale=[0.5, 1],
                  randaugment="rand-m7-n3", hflip=np.bool_(False))
    assert s.crop_scale == (0.5, 1.0) and s.randaugment == (3, 7) and s.hflip is False
    assert s.normalization == ((0.1, 0.2, 0.3), (0.5,))
    mean, std = s.mean_std
    np.testing.assert_allclose(mean, [0.1, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(std, [0.5] * 3)
    assert InputSpec(32) == InputSpec(32, "resnet", (0.7, 1.0)) and hash(InputSpec(32, "vit"))
    np.testing.assert_array_equal(InputSpec(8, "vit").mean_std, ([0.5] * 3, [0.5] * 3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.size = 64
    ev = InputSpec(32, "vit", draft=True).for_eval()
    assert ev == InputSpec(32, "vit", draft=False)


@pytest.mark.parametrize("kwargs, message", [
    (dict(size=0), "size=0 must be a positive int"),
    (dict(size=32.0), "size=32.0 must be a positive int"),
    (dict(normalization="rgb"), "normalization='rgb' is not one of resnet, vit, imagenet"),
    (dict(normalization=((0, 0, 0), (1, 0, 1))), "normalization std=(1, 0, 1) must be > 0"),
    (dict(normalization=((0, 0), (1, 1))), "normalization mean=(0, 0) must be one number or three"),
    (dict(crop_scale=(0.5, 1.5)), "crop_scale=(0.5, 1.5) must satisfy 0 < lo <= hi <= 1"),
    (dict(crop_scale="ab"), "crop_scale='ab' must be two numbers"),
    (dict(crop_ratio=(2.0, 1.0)), "crop_ratio=(2.0, 1.0) must satisfy 0 < lo <= hi"),
    (dict(hflip="yes"), "hflip='yes' must be True or False"),
    (dict(draft=None), "draft=None must be True or False"),
    (dict(randaugment="m9-n2"), "randaugment='m9-n2' must be None, 'rand-m<magnitude>-n<ops>'"),
    (dict(randaugment=(2, -1)), "randaugment=(2, -1) must be"),
])
def test_a_bad_field_gives_one_error_naming_it(kwargs, message):
    kwargs = dict(dict(size=32), **kwargs)
    with pytest.raises(InputSpecError) as e:
        InputSpec(**kwargs)
    assert str(e.value).startswith(f"invalid input spec: {message}")
    assert "\n" not in str(e.value) and e.value.field.split()[0] in kwargs


def test_iterators_refuse_a_size_in_place_of_a_spec():
    with pytest.raises(TypeError, match="spec must be a csra_jax.data.InputSpec .* got int 448"):
        data.create_eval_iterator("voc2007", "/nonexistent", 448, global_batch_size=2)


@pytest.mark.parametrize("field, value, message", [
    ("normalization", "rgb", "invalid config: data.normalization='rgb' is not one of"),
    ("randaugment", "rand-x", "invalid config: data.randaugment='rand-x' must be"),
])
def test_config_validation_names_the_data_field(field, value, message):
    c = base_config()
    c.require_pretrained = False
    c.data[field] = value
    with pytest.raises(ValueError) as e:
        validate_config(c, device_count=1, process_count=1)
    assert str(e.value).startswith(message)


def test_the_trainer_builds_one_spec_from_the_config_and_evaluates_without_draft():
    from csra_jax.train import data_setup
    c = base_config()
    c.data.image_size, c.data.normalization, c.data.draft = 64, "vit", True
    c.data.crop_scale, c.data.hflip, c.data.randaugment = (0.3, 0.9), False, "rand-m9-n2"
    info = data.get_dataset_info("synthetic_shapes")
    train = data_setup.data_kwargs(c, info, None, True)["spec"]
    assert train == InputSpec(64, "vit", (0.3, 0.9), hflip=False, randaugment=(2, 9), draft=True)
    assert data_setup.data_kwargs(c, info, None, False)["spec"] == dataclasses.replace(train, draft=False)
