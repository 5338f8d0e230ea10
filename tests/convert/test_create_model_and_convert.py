"""create_model's contract, the converter's strictness and file formats, and its CLI."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from safetensors.numpy import save_file

from csra_jax import available_archs, create_model, with_max_lam
from csra_jax.convert import load_converted, load_torch_weights
from csra_jax.convert.__main__ import main as convert_main
from torch_reference import TorchResNetCSRA, max_rel_diff, randomize_bn, to_nchw


def test_available_archs():
    assert {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vit_b16",
            "vit_l16"} <= set(available_archs())


@pytest.mark.parametrize("arch, size, feat", [("resnet34", 64, 512), ("resnet152", 64, 2048),
                                              ("vit_l16", 32, 1024), ("small_cnn", 64, 128)])
def test_every_arch_builds_with_both_heads(arch, size, feat):
    images = jnp.zeros((2, size, size, 3))
    for head in ("csra", "gap"):
        model = create_model(arch, 7, head=head, num_heads=2, img_size=size)
        shapes = jax.eval_shape(model.init, jax.random.key(0), images)
        out = jax.eval_shape(model.apply, shapes, images)
        assert out.shape == (2, 7) and out.dtype == jnp.float32
        head_shape = shapes["params"]["head"]["kernel"].shape
        if arch == "small_cnn":  # output stride 8
            feats = jax.eval_shape(model.backbone.apply, {k: v["backbone"] for k, v in shapes.items()},
                                   images)
            assert feats.shape == (2, size // 8, size // 8, feat)
        assert head_shape == ((2, feat, 7) if head == "csra" else (feat, 7))


@pytest.mark.parametrize("kwargs, message", [
    (dict(arch="resnet9"), "unknown arch 'resnet9'; valid: .*mobilenet_v2, resnet101, resnet152"),
    (dict(head="attention"), "unknown head 'attention'; valid: csra, gap"),
    (dict(num_heads=3), "num_heads=3 has no default temperature set"),
    (dict(lam=-1.0), "lam must be >= 0"),
    (dict(arch="vit_b16", img_size=100), "divisible by the patch size 16"),
    (dict(drop_path_rate=0.1), r"unknown option\(s\) \['drop_path_rate'\]"),
])
def test_create_model_errors(kwargs, message):
    args = dict(arch="resnet18", num_classes=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        create_model(**args)


def test_vit_rejects_other_input_size():
    model = create_model("vit_b16", 3, img_size=32)
    with pytest.raises(ValueError, match="built for 32x32 inputs"):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))


def test_bf16_model_keeps_f32_params():
    model = create_model("resnet18", 4, num_heads=2, dtype=jnp.bfloat16)
    images = jnp.ones((2, 64, 64, 3))
    variables = model.init(jax.random.key(0), images)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
    assert model.apply(variables, images).dtype == jnp.float32


def test_training_free_max_lam_on_gap_variables():
    model = create_model("resnet18", 4, head="gap")
    images = jax.random.uniform(jax.random.key(0), (2, 64, 64, 3))
    variables = model.init(jax.random.key(1), images)
    feats = model.backbone.apply({k: v["backbone"] for k, v in variables.items()}, images)
    k, b = variables["params"]["head"]["kernel"], variables["params"]["head"]["bias"]
    score_map = jnp.einsum("bhwd,dc->bhwc", feats, k) + b
    for lam in (0.0, 0.2, 1.0):
        out = with_max_lam(model, lam).apply(variables, images)
        expected = score_map.mean(axis=(1, 2)) + lam * score_map.max(axis=(1, 2))
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="head='gap'"):
        with_max_lam(create_model("resnet18", 4), 0.1)


@pytest.fixture(scope="module")
def official_resnet18():
    torch.manual_seed(0)
    return randomize_bn(TorchResNetCSRA("resnet18", [1.0, float("inf")], 0.5, 6)).eval()


def test_strict_errors_list_every_problem(official_resnet18):
    sd = dict(official_resnet18.state_dict())
    del sd["layer2.0.conv1.weight"]
    sd["layer3.0.bn1.weight"] = torch.zeros(7)
    sd["extra.weight"] = torch.zeros(3)
    model = create_model("resnet18", 6, num_heads=2, lam=0.5)
    with pytest.raises(ValueError) as err:
        load_torch_weights(sd, model, "csra")
    msg = str(err.value)
    assert "missing (1): params/backbone/layer2_0/conv1/kernel" in msg
    assert "unexpected (1): extra.weight" in msg
    assert "mis_shaped (1): layer3.0.bn1.weight (7,)" in msg


def test_head_count_mismatch(official_resnet18):
    with pytest.raises(ValueError, match=r"has heads \[0, 1\] but the model has num_heads=4"):
        load_torch_weights(official_resnet18.state_dict(), create_model("resnet18", 6, num_heads=4),
                           "csra")
    with pytest.raises(ValueError, match="create the model with head='csra', num_heads=2"):
        load_torch_weights(official_resnet18.state_dict(), create_model("resnet18", 6, head="gap"),
                           "csra")


def test_source_family_checks(official_resnet18):
    with pytest.raises(ValueError, match="use source='timm'"):
        load_torch_weights({}, create_model("vit_b16", 3, img_size=32), "torchvision")
    with pytest.raises(ValueError, match="unknown source 'hub'"):
        load_torch_weights({}, create_model("resnet18", 3), "hub")


def test_pth_and_safetensors_files_and_cli(tmp_path, official_resnet18):
    images = np.asarray(jax.random.uniform(jax.random.key(3), (2, 64, 64, 3)))
    with torch.no_grad():
        ref = official_resnet18(to_nchw(images)).numpy()
    sd = official_resnet18.state_dict()
    pth = tmp_path / "csra.pth"
    torch.save(sd, pth)
    st = tmp_path / "csra.safetensors"
    save_file({k: v.numpy() for k, v in sd.items()}, str(st))
    model = create_model("resnet18", 6, num_heads=2, lam=0.5)
    for path in (pth, st):
        variables = load_torch_weights(str(path), model, "csra")
        assert max_rel_diff(model.apply(variables, images), ref) <= 1e-4

    out = tmp_path / "converted"
    rc = convert_main(["--source", "csra", "--arch", "resnet18", "--num-classes", "6",
                       "--num-heads", "2", "--lam", "0.5", str(pth), str(out)])
    assert rc == 0 and os.path.exists(out / "model.json")
    restored_model, restored = load_converted(str(out))
    assert max_rel_diff(restored_model.apply(restored, images), ref) <= 1e-4
    # Refuses to overwrite, and reports a missing input, with exit code 2.
    assert convert_main(["--source", "csra", "--arch", "resnet18", "--num-classes", "6",
                         "--num-heads", "2", str(pth), str(out)]) == 2
    assert convert_main(["--source", "csra", "--arch", "resnet18", "--num-classes", "6",
                         str(tmp_path / "nope.pth"), str(tmp_path / "o2")]) == 2


def test_pickled_objects_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": Evil()}, path)
    with pytest.raises(ValueError, match="weights_only=True"):
        load_torch_weights(str(path), create_model("resnet18", 3), "torchvision")


def test_backbone_only_sources_keep_head_init():
    torch.manual_seed(0)
    sd = torchvision.models.resnet18(weights=None).state_dict()
    model = create_model("resnet18", 5, num_heads=2)
    init = model.init(jax.random.key(4), jnp.zeros((1, 64, 64, 3)))
    variables = load_torch_weights(sd, model, "torchvision", init_variables=init)
    np.testing.assert_array_equal(variables["params"]["head"]["kernel"],
                                  init["params"]["head"]["kernel"])
    np.testing.assert_array_equal(variables["params"]["backbone"]["conv1"]["kernel"],
                                  sd["conv1.weight"].numpy().transpose(2, 3, 1, 0))
