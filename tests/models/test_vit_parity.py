"""ViTs vs real timm code on random weights: 224, resampled position embedding at 448,
and an official-CSRA-style VIT_CSRA state_dict (timm trunk + classifier.multi_head)."""

import jax
import numpy as np
import pytest
import timm
import torch
from timm.models.vision_transformer import checkpoint_filter_fn

from csra_jax import PAPER_TEMPERATURES, create_model
from csra_jax.convert import load_torch_weights
from torch_reference import TorchMHA, max_rel_diff, to_nchw

TOL = 1e-4


def _images(size, batch=2, seed=0):
    return np.asarray(jax.random.uniform(jax.random.key(seed), (batch, size, size, 3),
                                         minval=-1.0, maxval=1.0))


def _timm_patch_map(vit, x):
    tokens = vit.forward_features(x)[:, 1:]  # class token dropped, as official CSRA
    b, n, d = tokens.shape
    g = int(n ** 0.5)
    return tokens.reshape(b, g, g, d)


@pytest.fixture(scope="module")
def timm_vit_224():
    torch.manual_seed(0)
    return timm.create_model("vit_base_patch16_224", pretrained=False).eval()


def test_official_vit_csra_state_dict_at_224(timm_vit_224):
    images = _images(224)
    head = TorchMHA(PAPER_TEMPERATURES[2], 0.3, 768, 14).eval()
    with torch.no_grad():
        feats = _timm_patch_map(timm_vit_224, to_nchw(images))
        logits_ref = head(feats.permute(0, 3, 1, 2)).numpy()
    state_dict = {k: v for k, v in timm_vit_224.state_dict().items() if not k.startswith("head.")}
    state_dict.update({f"classifier.{k}": v for k, v in head.state_dict().items()})
    model = create_model("vit_b16", 14, num_heads=2, lam=0.3, img_size=224)
    variables = load_torch_weights(state_dict, model, "csra")
    ours_feats = model.backbone.apply({"params": variables["params"]["backbone"]}, images)
    assert max_rel_diff(ours_feats, feats.numpy()) <= TOL
    assert max_rel_diff(model.apply(variables, images), logits_ref) <= TOL


def test_timm_checkpoint_resampled_to_448_matches_timms_own_resampling(timm_vit_224):
    torch.manual_seed(1)
    vit_448 = timm.create_model("vit_base_patch16_224", pretrained=False, img_size=448).eval()
    # timm's own path for loading a 224 checkpoint at 448 (bicubic, antialias as timm).
    vit_448.load_state_dict(checkpoint_filter_fn(timm_vit_224.state_dict(), vit_448))
    images = _images(448, batch=1, seed=1)
    with torch.no_grad():
        feats_ref = _timm_patch_map(vit_448, to_nchw(images)).numpy()
    model = create_model("vit_b16", 5, head="gap", img_size=448)
    variables = load_torch_weights(timm_vit_224.state_dict(), model, "timm")
    pos = variables["params"]["backbone"]["pos_embed"]
    assert pos.shape == (1, 1 + 28 * 28, 768)
    np.testing.assert_allclose(pos, vit_448.pos_embed.detach().numpy(), atol=1e-6)
    feats = model.backbone.apply({"params": variables["params"]["backbone"]}, images)
    assert max_rel_diff(feats, feats_ref) <= TOL


def test_timm_gap_head_loads_classifier_when_shapes_match(timm_vit_224):
    """A GAP head with timm's class count takes head.* (still GAP over patch tokens)."""
    model = create_model("vit_b16", 1000, head="gap", img_size=224)
    variables = load_torch_weights(timm_vit_224.state_dict(), model, "timm")
    np.testing.assert_array_equal(variables["params"]["head"]["kernel"],
                                  timm_vit_224.head.weight.detach().numpy().T)


def test_gelu_matches_torch_values_and_gradients_in_the_tails_too():
    from csra_jax.models.vit import gelu_erf
    x = np.linspace(-9.0, 9.0, 20001, dtype=np.float32)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    torch.nn.functional.gelu(tx).sum().backward()
    out, vjp = jax.vjp(gelu_erf, x)
    np.testing.assert_allclose(out, torch.nn.functional.gelu(torch.from_numpy(x)).numpy(),
                               atol=2e-6, rtol=1e-6)
    np.testing.assert_allclose(vjp(np.ones_like(x))[0], tx.grad.numpy(), atol=2e-6, rtol=1e-6)
