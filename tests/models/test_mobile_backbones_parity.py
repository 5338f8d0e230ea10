"""MobileNet-V2 and EfficientNet-B3 (the paper's Table 1 CNNs) vs real torchvision code on
random weights with random BatchNorm statistics, through the converter: features, GAP
logits, train-mode BatchNorm, the training-free mean + lam * max scoring, the CSRA head,
stage outputs and torchvision's stochastic-depth schedule.

Variables come from ``random_variables`` templates (no model.init compile, ~20-40 s per
net on a 2-core CPU); every backbone leaf is then overwritten by the strict converter.
"""

import copy
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from csra_jax import PAPER_TEMPERATURES, available_archs, create_model, with_max_lam
from csra_jax.convert.state_dict_io import load_state_dict
from csra_jax.convert.torch_to_flax import convert_state_dict
from csra_jax.models import efficientnet as efficientnet_lib
from csra_jax.models import mobilenet_v2 as mobilenet_v2_lib
from model_fixtures import jit_once, random_variables
from torch_reference import TorchMHA, max_rel_diff, randomize_bn, to_nchw

TOL = 1e-4  # max |ours - torch| relative to the logit / feature scale (float32)
SIZE = 64
LAMS = (0.1, 0.2)  # Table 1's lam for these nets (varying: B3 0.1, MobileNet 0.2; fixed 0.2)
# arch: channels of the stride-4, -8, -16 and final stride-32 maps (torchvision's
# features[3], [6], [13], [18] for MobileNet-V2; features[2], [3], [5], [8] for B3).
STAGE_CHANNELS = {"mobilenet_v2": (24, 32, 96, 1280), "efficientnet_b3": (32, 48, 136, 1536)}


def _torchvision(arch, seed=0):
    """Random torchvision net, classifier dropout and stochastic depth off (train-mode
    outputs are then deterministic; eval mode ignores both anyway)."""
    torch.manual_seed(seed)
    kwargs = {"stochastic_depth_prob": 0.0} if arch.startswith("efficientnet") else {}
    return randomize_bn(getattr(torchvision.models, arch)(weights=None, dropout=0.0, **kwargs),
                        seed=seed).eval()


def _convert(ref, model, seed=0):
    template = random_variables(model, SIZE, seed)
    return convert_state_dict(load_state_dict(ref.state_dict()), model, "torchvision",
                              init_variables=template)


def _eval_outputs(model, csra_model, variables, csra_head, images):
    """Every eval-mode output the tests compare, from one jit: the GAP, lam*max, CSRA and
    return_stages models read the same backbone variables, so XLA compiles the backbone
    once (eager dispatch or a jit per model costs several times more on 2 cores)."""
    csra_variables = {**variables, "params": {**variables["params"], "head": csra_head}}
    stages_model = model.clone(backbone=model.backbone.clone(return_stages=True))
    return dict(
        stages=stages_model.apply(variables, images, method="features"),
        features=model.apply(variables, images, method="features"),
        logits=model.apply(variables, images),
        max_lam={lam: with_max_lam(model, lam).apply(variables, images) for lam in LAMS},
        csra=csra_model.apply(csra_variables, images))


@pytest.fixture(scope="module", params=sorted(STAGE_CHANNELS))
def net(request):
    """torchvision reference and its outputs; our GAP model (torchvision's 1000 classes,
    so the GAP head takes ``classifier.1``) and a 2-head CSRA model, both converted."""
    arch = request.param
    ref = _torchvision(arch)
    images = np.asarray(jax.random.uniform(jax.random.key(0), (2, SIZE, SIZE, 3)))
    with torch.no_grad():
        feats_ref = ref.features(to_nchw(images)).numpy()
        logits_ref = ref(to_nchw(images)).numpy()
    model = create_model(arch, 1000, head="gap", img_size=SIZE)
    variables, report = _convert(ref, model)
    csra_model = create_model(arch, 5, head="csra", num_heads=2, lam=0.2, img_size=SIZE)
    csra_variables, csra_report = _convert(ref, csra_model, seed=1)
    ours = jit_once(functools.partial(_eval_outputs, model, csra_model))(
        variables, csra_variables["params"]["head"], images)
    return dict(arch=arch, ref=ref, images=images, feats_ref=feats_ref, logits_ref=logits_ref,
                model=model, variables=variables, report=report,
                csra_variables=csra_variables, csra_report=csra_report, ours=ours)


def test_features_and_gap_logits_match_torchvision(net):
    assert {"classifier.1.weight", "classifier.1.bias"} <= set(net["report"].loaded)
    assert all(k.endswith("num_batches_tracked") for k in net["report"].skipped)
    feats = net["ours"]["features"]
    assert feats.shape[-1] == STAGE_CHANNELS[net["arch"]][-1] == net["model"].backbone.num_features
    assert max_rel_diff(feats, net["feats_ref"].transpose(0, 2, 3, 1)) <= TOL
    assert max_rel_diff(net["ours"]["logits"], net["logits_ref"]) <= TOL


def test_training_free_max_lam_matches_torch(net):
    """Paper Fig. 1 / Table 1: torchvision's classifier at every position, mean + lam*max."""
    linear = net["ref"].classifier[1]
    with torch.no_grad():
        score_map = torch.einsum("bdhw,cd->bchw", torch.from_numpy(net["feats_ref"]),
                                 linear.weight) + linear.bias[:, None, None]
    score_map = score_map.flatten(2).numpy()
    for lam in LAMS:
        expected = score_map.mean(axis=2) + lam * score_map.max(axis=2)
        assert max_rel_diff(net["ours"]["max_lam"][lam], expected) <= TOL


def test_train_mode_batch_norm_matches_torch(net):
    """Batch statistics in the forward pass and running-stat updates as torch's (B3 with
    stochastic depth off on both sides)."""
    arch = net["arch"]
    ref = copy.deepcopy(net["ref"]).train()
    with torch.no_grad():
        logits_ref = ref(to_nchw(net["images"])).numpy()
    kwargs = {"drop_path_rate": 0.0} if arch.startswith("efficientnet") else {}
    model = create_model(arch, 1000, head="gap", img_size=SIZE, **kwargs)
    train_apply = jit_once(functools.partial(model.apply, train=True, mutable=["batch_stats"]))
    logits, updates = train_apply(net["variables"], net["images"])
    assert max_rel_diff(logits, logits_ref) <= TOL
    stats = updates["batch_stats"]["backbone"]
    last = len(ref.features) - 1  # the final 1x1 conv's BN: features.<last>.1
    np.testing.assert_allclose(stats[f"features_{last}_1"]["mean"],
                               ref.features[last][1].running_mean.numpy(), rtol=1e-4, atol=1e-5)
    # The stem BN's variance: Flax folds the biased batch variance into the running one,
    # torch the unbiased one (factor n/(n-1), n = 2*32*32 here).
    np.testing.assert_allclose(stats["features_0_1"]["var"],
                               ref.features[0][1].running_var.numpy(), rtol=1e-3)


def test_csra_head_on_converted_backbone_matches_torch(net):
    """The CSRA head on these backbones: torchvision's classifier is reported as skipped,
    the backbone converts as for the GAP model, and the logits equal the reference
    multi-head CSRA on torchvision's features."""
    assert {"classifier.1.weight", "classifier.1.bias"} <= set(net["csra_report"].skipped)
    jax.tree.map(np.testing.assert_array_equal, _backbone_vars(net["csra_variables"]),
                 _backbone_vars(net["variables"]))
    kernel = np.array(net["csra_variables"]["params"]["head"]["kernel"])  # (H, d, C)
    mha = TorchMHA(PAPER_TEMPERATURES[2], 0.2, kernel.shape[1], 5)
    with torch.no_grad():
        for h, head in enumerate(mha.multi_head):
            head.head.weight.copy_(torch.from_numpy(kernel[h].T[:, :, None, None]))
        logits_ref = mha(torch.from_numpy(net["feats_ref"])).numpy()
    assert max_rel_diff(net["ours"]["csra"], logits_ref) <= TOL


def test_return_stages_strides_and_last_map(net):
    """Maps at strides 4, 8, 16, 32; the last is exactly the map the head gets."""
    backbone = net["model"].backbone.clone(return_stages=True)
    shapes = jax.eval_shape(backbone.apply, _backbone_vars(net["variables"]),
                            jnp.zeros((2, 96, 96, 3)))
    assert [s.shape for s in shapes] == [(2, 96 // s, 96 // s, c) for s, c in
                                         zip((4, 8, 16, 32), STAGE_CHANNELS[net["arch"]])]
    np.testing.assert_array_equal(net["ours"]["stages"][-1], net["ours"]["features"])


def _backbone_vars(variables):
    return {k: v["backbone"] for k, v in variables.items()}


def test_stochastic_depth_follows_torchvision_schedule():
    """B3's per-block rates (drop_path_rate * k / N), widths and residual flags equal
    torchvision's."""
    ref = torchvision.models.efficientnet_b3(weights=None)  # stochastic_depth_prob=0.2
    torch_blocks = [b for stage in ref.features[1:-1] for b in stage]
    ours = efficientnet_lib.block_configs(*efficientnet_lib.ARCH_SETTINGS["efficientnet_b3"],
                                          drop_path_rate=0.2)
    assert len(ours) == len(torch_blocks) == 26
    for cfg, block in zip(ours, torch_blocks):
        assert cfg.drop_path_rate == pytest.approx(block.stochastic_depth.p)
        assert cfg.out_channels == block.out_channels
        assert (cfg.stride == 1 and cfg.in_channels == cfg.out_channels) == block.use_res_connect


def test_stochastic_depth_drops_whole_residual_rows_only_in_training():
    """torchvision's "row" mode: in training each sample's residual branch is dropped
    (output = input) or kept and scaled by 1/(1-p); eval mode ignores the rng."""
    cfg = efficientnet_lib.BlockConfig(stage=2, index=1, expand_ratio=6, kernel=3, stride=1,
                                       in_channels=8, out_channels=8, drop_path_rate=0.5)
    block = efficientnet_lib.MBConv(cfg)
    x = jax.random.normal(jax.random.key(0), (16, 4, 4, 8))
    variables = jit_once(block.init)(jax.random.key(2), x)
    rngs = {"dropout": jax.random.key(1)}

    @jit_once
    def outputs(variables, x):
        train = functools.partial(block.apply, train=True, mutable=["batch_stats"])
        no_drop = block.clone(cfg=cfg._replace(drop_path_rate=0.0))
        return (block.apply(variables, x), block.apply(variables, x, rngs=rngs),
                train(variables, x, rngs=rngs)[0],
                no_drop.apply(variables, x, train=True, mutable=["batch_stats"])[0] - x)
    eval_out, eval_with_rng, y, train_branch = outputs(variables, x)
    np.testing.assert_array_equal(eval_out, eval_with_rng)
    dropped = np.all(np.isclose(y, x, atol=1e-6), axis=(1, 2, 3))
    assert 0 < dropped.sum() < len(x)  # some of the 16 rows dropped, some kept
    np.testing.assert_allclose(y[~dropped], (x + train_branch / 0.5)[~dropped], atol=1e-5)
    with pytest.raises(flax.errors.InvalidRngError, match="dropout"):
        block.apply(variables, x, train=True, mutable=["batch_stats"])


def test_available_archs_lists_table1_backbones():
    assert {"mobilenet_v2", "efficientnet_b3"} <= set(available_archs())


# The other width/depth variants (mobilenet_v2 and B3 convert in the ``net`` fixture).
@pytest.mark.parametrize("arch", sorted(set(efficientnet_lib.ARCH_SETTINGS) - set(STAGE_CHANNELS)))
def test_every_variant_is_listed_and_takes_torchvision_state_dict(arch):
    """Strict conversion (no missing / unexpected / mis-shaped key), from a shapes-only
    template (no model.init compile), nothing run."""
    assert arch in available_archs()
    model = create_model(arch, 1000, head="gap", img_size=SIZE)
    ref = getattr(torchvision.models, arch)(weights=None)
    _, report = _convert(ref, model)
    assert len(report.loaded) + len(report.skipped) == len(ref.state_dict())


def test_unknown_variant_and_bad_drop_path_rate_raise():
    with pytest.raises(ValueError, match="unknown EfficientNet arch 'efficientnet_b7'"):
        efficientnet_lib.efficientnet("efficientnet_b7")
    with pytest.raises(ValueError, match="unknown MobileNet-V2 arch"):
        mobilenet_v2_lib.mobilenet_v2("mobilenet_v3")
    with pytest.raises(ValueError, match=r"drop_path_rate must be in \[0, 1\)"):
        create_model("efficientnet_b3", 3, drop_path_rate=1.0)
