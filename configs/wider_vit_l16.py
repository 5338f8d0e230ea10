r"""python -m csra_jax.main --config configs/wider_vit_l16.py --workdir /path/to/runs/wider_vit_l16 \
        --config.init_checkpoint=/path/to/jx_vit_large_p16_224-4ee7a4dc.pth

WIDER-Attribute, ViT-L/16 (ImageNet-21k pretrained, ImageNet fine-tuned at 224) + CSRA,
H=1, T=1, lam=0.3, 224 px, batch 64. Targets the paper's Table 5: **90.1 mAP** on test
(ViT-L16 baseline: 87.7).

Weights: timm's jx_vit_large_p16_224-4ee7a4dc.pth, init_source="timm". Data:
`launch/prepare_data.sh wider_attribute DATA_DIR RAW_DIR` first. Recipe as
configs/wider_vit_b16.py. If batch 64 does not fit, use --config.batch_size=32
--config.grad_accum_steps=2 (same effective batch and lr curve) or --config.model.remat=True.

Time: ~4.7 min/epoch (train ~3.5 min + test ~1.2 min) on one A100, float32 (TF32),
estimated, not measured: ViT-L/16@224 = 61.6 GMACs forward (123 GFLOPs), ~370 GFLOPs
per trained image, ~50 TFLOP/s sustained.
"""

from csra_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "wider_vit_b16")
    c.model.arch = "vit_l16"
    return c
