r"""python -m csra_jax.main --config configs/voc2007_resnet_cut.py --workdir /path/to/runs/voc2007_resnet_cut \
        --config.init_checkpoint=/path/to/CutMix_ResNet101.pth

PASCAL VOC2007, ResNet-cut (ResNet-101 pretrained on ImageNet with CutMix) + CSRA, H=1,
lam=0.1, 448 px. Targets the paper's Table 2: **95.2 mAP** on VOC2007 test.

Weights: the CutMix ResNet-101 of clovaai/CutMix-PyTorch (the official CSRA README links
it as CutMix_ResNet101.pth); a torchvision-layout state_dict, so init_source="torchvision"
(a {"state_dict": ...} wrapper and DataParallel "module." prefixes are unwrapped).
Data: `launch/prepare_data.sh voc2007 DATA_DIR RAW_DIR` first (see voc2007_resnet101.py).
Recipe and time: as configs/voc2007_resnet101.py (~1.2 min/epoch on one A100, float32,
estimated, not measured).
"""

from csra_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "voc2007_resnet101")
    c.init_source = "torchvision"  # CutMix weights use torchvision's key names
    return c
