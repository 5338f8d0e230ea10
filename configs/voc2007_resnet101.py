r"""python -m csra_jax.main --config configs/voc2007_resnet101.py --workdir /path/to/runs/voc2007_resnet101 \
        --config.init_checkpoint=/path/to/resnet101-63fe2227.pth

PASCAL VOC2007, ResNet-101 (torchvision ImageNet weights) + CSRA, H=1, T=1, lam=0.1, 448 px.
Targets the paper's Table 2: **94.7 mAP** on VOC2007 test (official checkpoint: 94.7).

Weights: https://download.pytorch.org/models/resnet101-63fe2227.pth (converted on the fly).
Data: build voc2007 once with `launch/prepare_data.sh voc2007 DATA_DIR RAW_DIR`; pass
--config.data.data_dir=DATA_DIR if it is not ~/tensorflow_datasets (never built here).

Recipe (paper Sec. 4.1 + official code): SGD momentum 0.9, wd 1e-4, lr 0.01 backbone /
0.1 head, 2 warm-up epochs, x0.1 every 4 epochs, 30 epochs, batch 16, flip + random
resized crop (scale 0.7-1.0).

Time: ~1.2 min/epoch (train ~50 s + test eval ~15 s) on one A100, float32 (TF32),
estimated, not measured: ResNet-101@448 = 31 GMACs forward (62 GFLOPs), ~188 GFLOPs per
trained image (fwd + bwd ~ 3x), 5,011 train / 4,952 test images, assuming ~20 TFLOP/s
sustained (what well-tuned ResNet training reaches in TF32) and an input pipeline that
keeps up (data.num_workers). ~35 min for 30 epochs. --config.dtype=bfloat16: ~2x faster.
"""

from csra_jax.config import paper_config


def get_config():
    c = paper_config(dataset="voc2007", arch="resnet101", num_heads=1, lam=0.1, image_size=448,
                     lr_step_epochs=4, init_source="torchvision")
    return c
