r"""python -m csra_jax.main --config configs/coco_efficientnet_b3_gap.py --workdir /path/to/runs/coco_efficientnet_b3_gap \
        --config.init_checkpoint=/path/to/efficientnet_b3_rwightman-b3899882.pth

Paper Table 1, MS-COCO 448x448 "EfficientNet" (EfficientNet-B3) row: a GAP + linear
baseline trained with the COCO baseline recipe (as configs/coco_mobilenet_v2_gap.py: lr
0.01 for both, x0.1 every 15 epochs, 40 epochs, per the authors' answer in the official
repository's issue tracker),
then scored training-free as mean + lam * max (paper Fig. 1), no retraining:
    python -m csra_jax.main --config configs/coco_efficientnet_b3_gap.py \
        --workdir /path/to/runs/coco_efficientnet_b3_gap --config.mode=lambda_sweep
Targets: baseline **75.6 mAP** on val2014; **76.1** with lam 0.1 (tuned) and with the
paper's fixed lam 0.2.

Weights: torchvision's ImageNet efficientnet_b3_rwightman-b3899882.pth (IMAGENET1K_V1),
init_source="torchvision"; ImageNet mean/std inputs. Training keeps torchvision's
stochastic depth (0.2, spread over the blocks).

Time: ~5 min/epoch (train + val) on one A100, float32, estimated, not measured: ~4
GMACs forward at 448 (1.8 at 300), SiLU / squeeze-excitation / depthwise layers run
well below peak FLOP/s.
"""

from csra_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "coco_mobilenet_v2_gap")
    c.model.arch = "efficientnet_b3"
    c.model.drop_path_rate = 0.2  # torchvision's stochastic depth for EfficientNet
    return c
