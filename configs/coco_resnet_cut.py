r"""python -m csra_jax.main --config configs/coco_resnet_cut.py --workdir /path/to/runs/coco_resnet_cut \
        --config.init_checkpoint=/path/to/CutMix_ResNet101.pth

MS-COCO 2014, ResNet-cut (CutMix-pretrained ResNet-101, torchvision key layout) + CSRA,
H=6, lam=0.4, 448 px. Targets the paper's Table 4: **85.6 mAP** on val2014 (Table 7:
85.6 with H=6).

Weights: CutMix_ResNet101.pth from clovaai/CutMix-PyTorch (linked by the official CSRA
README), init_source="torchvision". Data: `launch/prepare_data.sh coco2014 DATA_DIR
RAW_DIR` first. Recipe and time as configs/coco_resnet101.py: ~15 min/epoch on one A100,
float32 (TF32), estimated, not measured.
"""

from csra_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "coco_resnet101")
    c.model.num_heads = 6
    c.model.lam = 0.4
    c.init_source = "torchvision"  # CutMix weights use torchvision's key names
    return c
