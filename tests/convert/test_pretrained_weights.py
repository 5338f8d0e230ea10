"""README "Pretrained weights": sha256 checks, and its commands run as written.

The release settings below are typed in from the official CSRA README's table and its
val.py commands (dataset, backbone, heads, lam, resolution), not read from our configs,
so a wrong README edit fails here. Files are small random stand-ins, never downloads.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex

import numpy as np
import pytest
import torch
from absl import flags
from ml_collections import config_flags

from csra_jax.convert import load_converted
from csra_jax.convert.__main__ import main as convert_main, parse_args
from csra_jax.convert.sha256 import check_sha256
from csra_jax.config import base_config, validate_config

from repo_root import ROOT
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
NUM_CLASSES = {"voc2007": 20, "voc2012": 20, "coco2014": 80, "wider_attribute": 14}

# converted/<name>: (arch, classes, heads, lam, image size) of the authors' release.
RELEASES = {
    "voc2007_resnet101": ("resnet101", 20, 1, 0.1, 448),
    "voc2007_resnet_cut": ("resnet101", 20, 1, 0.1, 448),
    "coco_resnet101_h4": ("resnet101", 80, 4, 0.5, 448),
    "coco_resnet_cut": ("resnet101", 80, 6, 0.4, 448),
    "coco_vit": ("vit_l16", 80, 8, 1.0, 448),
    "coco_vit_randaug": ("vit_l16", 80, 8, 1.0, 448),
    "wider_vit_b16": ("vit_b16", 14, 1, 0.3, 224),
    "wider_vit_l16": ("vit_l16", 14, 1, 0.3, 224),
}


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def commands(prefix: str) -> list[list[str]]:
    text = section("Pretrained weights").replace("\\\n", " ")
    return [shlex.split(line.strip()) for line in text.splitlines()
            if line.strip().startswith(prefix)]


def load_config(argv: list[str]):
    """`python -m csra_jax.main --config FILE --workdir DIR --config.x=y` -> its config."""
    args, rest = ["prog"], list(argv)
    while rest:
        flag = rest.pop(0)
        name, _, value = flag.partition("=")
        if name in ("--config", "--workdir") and not value:
            value = rest.pop(0)
        if name == "--config":
            args.append(f"--config={os.path.join(ROOT, value)}")
        elif name != "--workdir":
            args.append(flag)
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "config", flag_values=fv,
                                    lock_config=True, sys_argv=args)
    fv(args)
    return fv.config


def torchvision_resnet18_state_dict(seed=0) -> dict:
    """torchvision's resnet18 key layout and shapes, random values (needs no torchvision)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def conv(name, o, i, k):
        sd[f"{name}.weight"] = torch.randn(o, i, k, k, generator=g) * (2 / (i * k * k)) ** 0.5

    def bn(name, c):
        sd.update({f"{name}.weight": torch.rand(c, generator=g) + 0.5,
                   f"{name}.bias": torch.randn(c, generator=g) * 0.1,
                   f"{name}.running_mean": torch.randn(c, generator=g) * 0.1,
                   f"{name}.running_var": torch.rand(c, generator=g) + 0.5,
                   f"{name}.num_batches_tracked": torch.tensor(0)})
    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    cin = 64
    for i, cout in enumerate((64, 128, 256, 512), start=1):
        for j in range(2):
            p = f"layer{i}.{j}"
            conv(f"{p}.conv1", cout, cin if j == 0 else cout, 3)
            bn(f"{p}.bn1", cout)
            conv(f"{p}.conv2", cout, cout, 3)
            bn(f"{p}.bn2", cout)
            if j == 0 and cin != cout:
                conv(f"{p}.downsample.0", cout, cin, 1)
                bn(f"{p}.downsample.1", cout)
        cin = cout
    sd["fc.weight"] = torch.randn(1000, 512, generator=g) * 0.01
    sd["fc.bias"] = torch.zeros(1000)
    return sd


# ------------------------------------------------------------------- sha256 checks
@pytest.fixture(scope="module")
def resnet18_pth(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet18-random.pth"
    torch.save(torchvision_resnet18_state_dict(), path)
    return str(path), hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_check_sha256_full_prefix_and_errors(resnet18_pth, tmp_path):
    path, digest = resnet18_pth
    assert check_sha256(path, digest) == digest
    assert check_sha256(path, digest[:8].upper()) == digest  # torchvision-style prefix
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    with pytest.raises(ValueError, match=f"sha256 mismatch for '{re.escape(path)}': "
                                         f"the file has {digest}, expected {wrong}"):
        check_sha256(path, wrong)
    for bad in ("63fe22", "xyz12345", digest + "0"):
        with pytest.raises(ValueError, match="is not a hex digest"):
            check_sha256(path, bad)
    with pytest.raises(ValueError, match="is a directory"):
        check_sha256(str(tmp_path), digest)


def test_convert_cli_verifies_sha256(resnet18_pth, tmp_path, capsys):
    path, digest = resnet18_pth
    argv = ["--source", "torchvision", "--arch", "resnet18", "--head", "gap",
            "--num-classes", "1000", "--img-size", "64"]
    bad = tmp_path / "bad"
    assert convert_main(argv + ["--sha256", "deadbeef", path, str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: sha256 mismatch for") and "\n" not in err
    assert not bad.exists()  # nothing written from an unverified file

    good = tmp_path / "good"
    assert convert_main(argv + ["--sha256", digest[:12], path, str(good)]) == 0
    _, variables = load_converted(str(good))
    np.testing.assert_array_equal(  # OIHW -> HWIO, the file's own numbers
        variables["params"]["backbone"]["conv1"]["kernel"],
        torch.load(path, weights_only=True)["conv1.weight"].numpy().transpose(2, 3, 1, 0))


def test_config_sha256_is_checked_before_loading(resnet18_pth):
    from csra_jax.models.classifier import create_model
    from csra_jax.train.state import load_pretrained
    path, digest = resnet18_pth
    c = base_config()
    c.require_pretrained = False
    c.model.arch, c.model.head = "resnet18", "gap"
    c.init_checkpoint, c.init_source = path, "torchvision"
    c.init_checkpoint_sha256 = "not-hex"
    with pytest.raises(ValueError, match="invalid config: init_checkpoint_sha256 'not-hex' "
                                         "is not a hex digest"):
        validate_config(c, 1, 1)
    c.init_checkpoint_sha256 = "0" * 64
    validate_config(c, 1, 1)
    model = create_model("resnet18", 1000, head="gap", img_size=64)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load_pretrained(c, model, {})
    c.init_checkpoint_sha256 = digest[:8]
    variables = load_pretrained(c, model, None)  # torchvision files fill model.init's tree
    assert variables["params"]["head"]["kernel"].shape == (512, 1000)
    empty = base_config()
    empty.require_pretrained = False
    empty.init_checkpoint_sha256 = digest
    with pytest.raises(ValueError, match="init_checkpoint_sha256 is set but init_checkpoint "
                                         "is empty"):
        validate_config(empty, 1, 1)


# ------------------------------------------------------------ the README section
def test_section_lists_every_paper_row_and_release():
    text = section("Pretrained weights")
    configs = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs"))
                     if f.endswith(".py") and not f.startswith(("demo", "_")))
    for name in configs:
        assert f"`{name}.py`" in text, f"Pretrained weights table misses configs/{name}.py"
    for drive_id in ("1cQSRI_DWyKpLa0tvxltoH9rM4IZMIEWJ", "1bzSsWhGG-zUNQRMB7rQCuPMqLZjnrzFh",
                     "1e_WzdVgF_sQc--ubN-DRnGVbbJGSJEZa", "17FgLUe_vr5sJX6_TT-MPdP5TYYAcVEPF",
                     "1TTzCpRadhYDwZSEow3OVdrh1TKezWHF_", "1zYE88pmWcZfcrdQsP8-9JMo4n_g5pO4l",
                     "1qkJgWQ2EOYri8ITLth_wgnR4kEsv0bfj", "1da8D7UP9cMCgKO0bb1gyRvVqYoZ3Wh7O",
                     "1T4AxsAO2tszvhn62KFN5kaknBtBZIpDV"):  # the last: CutMix ResNet-101
        assert drive_id in text


def test_convert_commands_match_the_releases():
    got = {}
    for cmd in commands("python -m csra_jax.convert"):
        assert cmd[:3] == ["python", "-m", "csra_jax.convert"]
        a = parse_args(cmd[3:])  # argparse exits on an unknown flag or arch
        assert a.source == "csra" and a.out_dir.startswith("converted/")
        got[os.path.basename(a.out_dir)] = (a.arch, a.num_classes, a.num_heads, a.lam,
                                            a.image_size)
    assert got == RELEASES


def test_main_commands_build_valid_configs_that_fit_their_weights():
    converted = {os.path.basename(parse_args(c[3:]).out_dir): parse_args(c[3:])
                 for c in commands("python -m csra_jax.convert")}
    mains = commands("python -m csra_jax.main")
    assert len(mains) >= 4
    seen_sources = set()
    for cmd in mains:
        c = load_config(cmd[3:])
        validate_config(c, 1, 1)
        assert c.init_checkpoint, cmd
        seen_sources.add(c.init_source)
        if c.init_source == "converted":  # the release's heads, classes and size, or a
            a = converted[os.path.basename(c.init_checkpoint)]  # silently reinit'ed head
            assert (c.model.arch, c.model.num_heads, c.data.image_size) == (
                a.arch, a.num_heads, a.image_size), cmd
            assert NUM_CLASSES[c.data.name] == a.num_classes, cmd
    assert {"converted", "csra", "torchvision"} <= seen_sources


def test_voc2007_release_command_end_to_end(tmp_path, monkeypatch, capsys):
    """The README's VOC2007 ResNet-101 command, as written, on a random file of the
    release's layout (official ResNet_CSRA keys), then the evaluate command's loading
    path: the weights it ends with are the file's (logit parity of the same conversion
    is tests/convert/test_create_model_and_convert.py's)."""
    pytest.importorskip("torchvision")
    import jax
    from torch_reference import TorchResNetCSRA, randomize_bn
    from csra_jax.train.state import load_pretrained, model_from_config

    cmd = next(c for c in commands("python -m csra_jax.convert")
               if c[-1] == "converted/voc2007_resnet101")
    torch.manual_seed(0)
    official = randomize_bn(TorchResNetCSRA("resnet101", [1.0], 0.1, 20)).eval()
    sd = official.state_dict()
    monkeypatch.chdir(tmp_path)
    torch.save(sd, cmd[-2])
    digest = hashlib.sha256(open(cmd[-2], "rb").read()).hexdigest()
    assert convert_main(cmd[3:-2] + ["--sha256", digest] + cmd[-2:]) == 0, capsys.readouterr()

    evaluate = next(c for c in commands("python -m csra_jax.main")
                    if "--config.init_checkpoint=converted/voc2007_resnet101" in c)
    config = load_config(evaluate[3:])
    model = model_from_config(config, NUM_CLASSES[config.data.name])
    size = config.data.image_size
    abstract = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, size, size, 3),
                                                                      np.float32))
    variables = load_pretrained(config, model, abstract)
    assert all(isinstance(x, (np.ndarray, jax.Array)) for x in jax.tree.leaves(variables))
    params, stats = variables["params"], variables["batch_stats"]
    np.testing.assert_array_equal(params["backbone"]["conv1"]["kernel"],
                                  sd["conv1.weight"].numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(stats["backbone"]["layer4_2"]["bn3"]["var"],
                                  sd["layer4.2.bn3.running_var"].numpy())
    np.testing.assert_array_equal(  # (H, d, C) from classifier.multi_head.0.head (C, d, 1, 1)
        params["head"]["kernel"][0],
        sd["classifier.multi_head.0.head.weight"].numpy()[:, :, 0, 0].T)
