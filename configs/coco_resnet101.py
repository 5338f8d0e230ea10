r"""python -m csra_jax.main --config configs/coco_resnet101.py --workdir /path/to/runs/coco_resnet101 \
        --config.init_checkpoint=/path/to/resnet101-63fe2227.pth

MS-COCO 2014, ResNet-101 (torchvision ImageNet weights) + CSRA, H=6 (T = 1..5, inf),
lam=0.5, 448 px. Targets the paper's Table 4: **83.5 mAP** on val2014 (the official
release's 4-head checkpoint reaches 83.3; its README command uses 6 heads, lam 0.5).

Data: `launch/prepare_data.sh coco2014 DATA_DIR RAW_DIR` (train2014/, val2014/,
annotations/; images without any label are dropped: 82,081 train / 40,137 val, as in
the paper); build_if_missing is off.
Recipe: SGD momentum 0.9, wd 1e-4, lr 0.01 backbone / 0.1 head, 2 warm-up epochs, x0.1
every 5 epochs, 30 epochs, batch 16, flip + random resized crop (scale 0.7-1.0).

Time: ~15 min/epoch (train ~13 min + val ~2 min) on one A100, float32 (TF32), estimated,
not measured: ~188 GFLOPs per trained image (31 GMACs forward at 448, x3 for fwd + bwd),
62 GFLOPs per val image, ~20 TFLOP/s sustained; ~7.5 h for 30 epochs. Roughly /8 on
8 GPUs or a TPU v4-8 if the per-device batch stays useful (raise batch_size and scale
the lr with it, or accept the lower utilisation of 2 images per device);
--config.eval_every_epochs=5 saves most of the eval time.
"""

from csra_jax.config import paper_config


def get_config():
    c = paper_config(dataset="coco2014", arch="resnet101", num_heads=6, lam=0.5, image_size=448,
                     lr_step_epochs=5, init_source="torchvision")
    return c
