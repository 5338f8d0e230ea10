"""init_source="converted": the backbone must fit; a head that does not fit keeps its
initialisation with one note when training, and is refused when evaluating."""

import jax
import numpy as np
import pytest

from csra_jax.config import base_config
from csra_jax.convert import load_converted, save_converted
from csra_jax.models.classifier import create_model
from csra_jax.train.state import load_pretrained

SIZE = 32


def _variables(model):
    return jax.jit(model.init)(jax.random.key(0), np.zeros((1, SIZE, SIZE, 3), np.float32))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A converted small_cnn_tiny + CSRA folder with 5 classes."""
    kwargs = dict(arch="small_cnn_tiny", num_classes=5, head="csra", img_size=SIZE)
    model = create_model(**kwargs)
    out = str(tmp_path_factory.mktemp("conv") / "five")
    save_converted(out, jax.device_get(_variables(model)), kwargs)
    return out, model


def _config(path, mode):
    c = base_config()
    c.mode = mode
    c.init_checkpoint, c.init_source = path, "converted"
    return c


def test_same_shape_head_loads_without_a_note(converted, capsys):
    path, model = converted
    other = _variables(model)  # a different init of the same model is replaced whole
    got = load_pretrained(_config(path, "train"), model, jax.tree.map(lambda x: x + 1, other))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(other)):
        np.testing.assert_array_equal(a, b)
    assert "note:" not in capsys.readouterr().out


def test_other_class_count_trains_with_one_note(converted, capsys):
    path, five = converted
    model = create_model("small_cnn_tiny", 3, head="csra", img_size=SIZE)
    init = _variables(model)
    got = load_pretrained(_config(path, "train"), model, init)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"note: init_checkpoint {path!r}: 1 head leaves "
                                               "do not fit the model's head"), out
    assert "params/head/kernel: (1, " in out[0] and ", 5) -> (1, " in out[0], out[0]
    assert out[0].endswith("they keep their initialisation."), out[0]
    np.testing.assert_array_equal(got["params"]["head"]["kernel"], init["params"]["head"]["kernel"])
    _, saved = load_converted(path)
    for a, b in zip(jax.tree.leaves(got["params"]["backbone"]),
                    jax.tree.leaves(saved["params"]["backbone"])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", ["evaluate", "lambda_sweep"])
def test_evaluating_an_unfitting_head_is_refused(converted, mode):
    path, _ = converted
    model = create_model("small_cnn_tiny", 3, head="csra", img_size=SIZE)
    with pytest.raises(ValueError, match=r"1 head leaves do not fit .* so evaluating would "
                                         r"measure an untrained head\. Set config\.model"):
        load_pretrained(_config(path, mode), model, _variables(model))

