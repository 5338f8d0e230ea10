"""ResNets vs real torchvision code on random weights (eval mode), through the converter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from csra_jax import create_model
from csra_jax.convert import load_torch_weights
from torch_reference import TorchResNetCSRA, max_rel_diff, randomize_bn, to_nchw

TOL = 1e-4  # max |ours - torch| relative to the logit / feature scale (float32)


def _images(size, batch=2, seed=0):
    return np.asarray(jax.random.uniform(jax.random.key(seed), (batch, size, size, 3)))


@pytest.mark.parametrize("arch, size", [("resnet18", 64), ("resnet50", 64), ("resnet101", 96)])
def test_torchvision_backbone_features_and_gap_logits(arch, size):
    torch.manual_seed(0)
    ref = randomize_bn(getattr(torchvision.models, arch)(weights=None)).eval()
    images = _images(size)
    with torch.no_grad():
        x = to_nchw(images)
        feats_ref = ref.layer4(ref.layer3(ref.layer2(ref.layer1(
            ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))))))
        logits_ref = ref(x).numpy()
    # A GAP head with torchvision's 1000 classes takes its fc weights.
    model = create_model(arch, 1000, head="gap", img_size=size)
    variables = load_torch_weights(ref.state_dict(), model, "torchvision")
    feats = model.backbone.apply({k: v["backbone"] for k, v in variables.items()},
                                 jnp.asarray(images))
    assert max_rel_diff(feats, feats_ref.numpy().transpose(0, 2, 3, 1)) <= TOL
    assert max_rel_diff(model.apply(variables, images), logits_ref) <= TOL


@pytest.mark.parametrize("arch, num_heads", [("resnet18", 1), ("resnet50", 4), ("resnet101", 8)])
def test_official_csra_state_dict_reproduces_official_logits(arch, num_heads):
    from csra_jax import PAPER_TEMPERATURES
    torch.manual_seed(1)
    ref = TorchResNetCSRA(arch, PAPER_TEMPERATURES[num_heads], 0.5, 20)
    ref = randomize_bn(ref, seed=1).eval()
    images = _images(64, seed=1)
    with torch.no_grad():
        logits_ref = ref(to_nchw(images)).numpy()
    model = create_model(arch, 20, num_heads=num_heads, lam=0.5, img_size=64)
    variables = load_torch_weights(ref.state_dict(), model, "csra")
    assert max_rel_diff(model.apply(variables, images), logits_ref) <= TOL


def test_train_mode_batch_norm_matches_torch():
    """Training-mode forward: batch statistics and running-stat updates as torch's."""
    torch.manual_seed(2)
    ref = randomize_bn(torchvision.models.resnet18(weights=None), seed=2).train()
    images = _images(64, batch=4, seed=2)
    model = create_model("resnet18", 1000, head="gap", img_size=64)
    variables = load_torch_weights(ref.state_dict(), model, "torchvision")
    with torch.no_grad():
        logits_ref = ref(to_nchw(images)).numpy()
    logits, updates = model.apply(variables, images, train=True, mutable=["batch_stats"])
    assert max_rel_diff(logits, logits_ref) <= TOL
    stats = updates["batch_stats"]["backbone"]
    np.testing.assert_allclose(stats["layer4_1"]["bn2"]["mean"],
                               ref.layer4[1].bn2.running_mean.numpy(), rtol=1e-4, atol=1e-5)
    # torch folds the unbiased batch variance (x n/(n-1)) into running_var and so do we;
    # flax.linen.BatchNorm's biased update is 2.4e-5 (bn1, n = 4*32*32) to 0.6% (layer4,
    # n = 4*2*2) off.
    for name, ours, theirs in (("bn1", stats["bn1"], ref.bn1),
                               ("layer4_1/bn2", stats["layer4_1"]["bn2"], ref.layer4[1].bn2)):
        np.testing.assert_allclose(ours["var"], theirs.running_var.numpy(), rtol=2e-6,
                                   err_msg=name)
