"""The tiny training config the trainer and prediction tests share (resnet18, 32 px,
synthetic_shapes' "tiny" builder config, batch 8)."""

from csra_jax.config import base_config


def tiny_config(data_dir, cache_dir, **overrides):
    c = base_config()
    c.model.arch = "resnet18"
    c.model.num_heads = 2
    c.model.lam = 0.3
    c.require_pretrained = False
    c.data.name = "synthetic_shapes"
    c.data.data_dir = data_dir
    c.data.builder_config = "tiny"
    c.data.image_size = 32
    c.batch_size = 8
    c.eval_batch_size = 8
    c.num_epochs = 2
    c.optim.warmup_epochs = 1
    c.optim.lr_step_epochs = 1
    c.checkpoint_every_steps = 2
    c.log_every_steps = 2
    c.compilation_cache_dir = cache_dir
    for key, value in overrides.items():
        target = c
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return c
