r"""python -m csra_jax.main --config configs/voc2012_resnet101.py --workdir /path/to/runs/voc2012_resnet101 \
        --config.init_checkpoint=/path/to/resnet101-63fe2227.pth

PASCAL VOC2012, ResNet-101 + CSRA, H=1, T=1, lam=0.1, 448 px: "the same settings as
VOC2007" (paper Sec. 4.2). Targets the paper's Table 3: **94.1 mAP** (ResNet-101 + CSRA,
ImageNet pretraining only; ResNet-cut + CSRA: 94.6), scored by the PASCAL evaluation
server: VOC2012 test has no public labels, so evaluation writes the server's comp2 files
to WORKDIR/eval/results/VOC2012/Main/ instead of a local mAP; zip `results/` and submit.
Evaluation therefore runs once, after the last epoch.

Data: `launch/prepare_data.sh voc2012 DATA_DIR RAW_DIR` (trainval tar, plus the test tar
from the evaluation server for the test split); build_if_missing is off.
Time: ~1.8 min/epoch training (11,540 trainval images) + ~0.6 min for the final test
pass (10,991 images) on one A100, float32 (TF32), estimated, not measured, with the
assumptions of configs/voc2007_resnet101.py (~188 GFLOPs per trained image, ~20 TFLOP/s).
"""

from csra_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "voc2007_resnet101")
    c.data.name = "voc2012"
    c.eval_every_epochs = c.num_epochs  # test = server submission files; once, at the end
    return c
