"""`python -m csra_jax.convert` on checkpoints that cannot or do not fully load: integer /
bool tensors for float parameters are refused by name; classifier keys the model's head
does not take are named in one line with the reason."""

import os

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file

from csra_jax.convert import load_converted, load_torch_weights
from csra_jax.convert.__main__ import main as convert_main
from csra_jax.models.classifier import create_model


@pytest.fixture(scope="module")
def resnet18_1000():
    """A torchvision resnet18 state_dict (random weights, ImageNet's 1000-class fc)."""
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).state_dict()


def _convert(capsys, *args):
    rc = convert_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out.splitlines(), err.splitlines()


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int32, torch.bool])
def test_integer_tensor_for_a_float_parameter_is_refused(tmp_path, capsys, resnet18_1000, dtype):
    sd = dict(resnet18_1000)
    sd["conv1.weight"] = (sd["conv1.weight"] * 100).to(dtype)  # e.g. a quantized export
    path = tmp_path / "r18_int.safetensors"
    save_file(sd, str(path))
    rc, out, err = _convert(capsys, "--source", "torchvision", "--arch", "resnet18",
                            "--num-classes", "1000", "--head", "gap", path, tmp_path / "out")
    assert rc == 2 and out == []
    assert len(err) == 1 and err[0].startswith(f"error: {path}: 1 float parameter"), err
    assert f"conv1.weight ({str(dtype).split('.')[1]})" in err[0]
    assert not (tmp_path / "out").exists()


def test_torch_quantized_tensor_is_refused(tmp_path, capsys, resnet18_1000):
    sd = dict(resnet18_1000)
    with pytest.warns(UserWarning):  # torch deprecates creating them, not loading them
        sd["conv1.weight"] = torch.quantize_per_tensor(sd["conv1.weight"], 0.01, 0, torch.qint8)
    path = tmp_path / "r18_q.pth"
    torch.save(sd, path)
    rc, out, err = _convert(capsys, "--source", "torchvision", "--arch", "resnet18",
                            "--num-classes", "1000", "--head", "gap", path, tmp_path / "out")
    assert rc == 2 and out == [] and len(err) == 1, err
    assert err[0].startswith(f"error: {path}: 1 tensor(s) are quantized (conv1.weight "
                             "(torch.qint8))"), err


def test_every_integer_tensor_is_counted_in_one_line(resnet18_1000):
    sd = {k: (v * 50).round().clamp(-127, 127).to(torch.int8) if v.is_floating_point() else v
          for k, v in resnet18_1000.items()}
    with pytest.raises(ValueError, match=r"^102 float parameter\(s\) .*and 99 more") as e:
        load_torch_weights(sd, create_model("resnet18", 1000, head="gap"), "torchvision")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("head, num_classes, reason", [
    ("gap", 10, "the checkpoint's classifier has 1000 classes, the model's gap head 10; "
                "the head keeps its initialisation"),
    ("csra", 10, "the model's CSRAHead does not use the checkpoint's classifier; "
                 "the head keeps its initialisation"),
])
def test_unused_classifier_is_named_in_one_line(tmp_path, capsys, resnet18_1000, head,
                                                num_classes, reason):
    path = tmp_path / "r18.pth"
    torch.save(resnet18_1000, path)
    rc, out, err = _convert(capsys, "--source", "torchvision", "--arch", "resnet18",
                            "--num-classes", num_classes, "--head", head, path, tmp_path / "out")
    assert rc == 0, err
    notes = [l for l in out if l.startswith("note:")]
    assert notes == [f"note: not loaded: fc.weight, fc.bias ({reason})"], out
    assert out[-1].startswith("wrote ")


def test_a_classifier_that_fits_is_loaded_without_a_note(tmp_path, capsys, resnet18_1000):
    path = tmp_path / "r18.pth"
    torch.save(resnet18_1000, path)
    rc, out, _ = _convert(capsys, "--source", "torchvision", "--arch", "resnet18",
                          "--num-classes", "1000", "--head", "gap", path, tmp_path / "out")
    assert rc == 0 and not [l for l in out if l.startswith("note:")], out
    _, variables = load_converted(str(tmp_path / "out"))
    np.testing.assert_array_equal(variables["params"]["head"]["kernel"],
                                  resnet18_1000["fc.weight"].numpy().T)
    assert os.path.exists(tmp_path / "out" / "model.json")
