r"""python -m csra_jax.main --config configs/coco_vit.py --workdir /path/to/runs/coco_vit \
        --config.init_checkpoint=/path/to/jx_vit_large_p16_224-4ee7a4dc.pth

MS-COCO 2014, ViT-L/16 (ImageNet-21k pretrained, ImageNet fine-tuned at 224) + CSRA,
H=8 (T = 1..7, inf), lam=1.0, fine-tuned at 448 px (the 14x14 position grid is resampled
bicubically to 28x28 when the timm weights load). Targets the paper's Table 4:
**86.5 mAP** on val2014 with flip + random resized crop only; 86.9 mAP with RandAugment
(try --config.data.randaugment=rand-m9-n2; the paper does not give its RandAugment
settings).

Weights: timm's jx_vit_large_p16_224-4ee7a4dc.pth (or a vit_large_patch16_224 .pth /
.safetensors from timm), init_source="timm". Data: `launch/prepare_data.sh coco2014
DATA_DIR RAW_DIR` first; build_if_missing is off.

Memory: 785 tokens x 24 blocks; model.remat=True recomputes each block in the backward
pass (~1/3 more compute, activations of one block at a time). If batch 16 still does not
fit (e.g. 16 GB GPUs or a single small TPU chip), keep the paper's effective batch with
gradient accumulation: --config.batch_size=8 --config.grad_accum_steps=2 (or 4 x 4);
the schedule counts optimizer updates, so the lr curve is unchanged. bfloat16
(--config.dtype=bfloat16) halves activation memory too.

Time: ~65 min/epoch (train ~60 min + val ~7 min) on one A100, float32 (TF32),
estimated, not measured: ViT-L/16@448 ~ 270 GMACs forward (linear layers 4x the 224
model's 61.6 GMACs, attention 16x), i.e. ~540 GFLOPs; training with remat ~ 4x forward
~ 2.2 TFLOPs per image; 82,081 train / 40,137 val images; ~50 TFLOP/s sustained
(transformers reach ~1/3 of the TF32 peak). ~33 h for 30 epochs; ~8-9 min/epoch on 8
A100s or a TPU v4-8 (ideal scaling; 2 images per device is below efficient).
"""

from csra_jax.config import paper_config


def get_config():
    c = paper_config(dataset="coco2014", arch="vit_l16", num_heads=8, lam=1.0, image_size=448,
                     lr_step_epochs=5, init_source="timm")
    c.model.remat = True  # activations of ViT-L at 448 do not fit otherwise
    return c
