"""The config schema (defaults = the paper's recipe) and its validation.

Every config file in configs/ starts from ``base_config()`` and overrides fields. The
schema is locked, so a misspelt override (``--config.bach_size=8``) fails at once, and
``validate_config`` rejects bad values before anything is compiled.
"""

from __future__ import annotations

import math

import ml_collections

from csra_jax.models.from_config import check_head_config
from csra_jax.models.registry import (available_archs, available_heads, backbone_spec,
                                      config_defaults, head_spec)
from csra_jax.tasks import TASKS

MODES = ("train", "evaluate", "train_and_evaluate", "lambda_sweep")
DTYPES = ("float32", "bfloat16")
INIT_SOURCES = ("", "torchvision", "timm", "csra", "converted")
SCHEDULES = ("step", "cosine")
OPTIMIZERS = ("sgd", "adamw")  # optim.name


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.mode = "train_and_evaluate"
    c.task = "multi_label"
    c.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.arch = "resnet101"
    c.model.head = "csra"
    c.model.num_heads = 1
    c.model.lam = 0.1
    c.model.temperatures = ml_collections.FieldReference(None, field_type=tuple)
    c.model.normalize = True
    # head="attend_rectify" (Rodriguez et al.); the output follows `task`: gate-weighted
    # logits (multi_label, BCE) or log-probabilities (single_label, NLL).
    c.model.attention_depth = 3        # attention modules, on the deepest stages but the last
    c.model.attention_heads = 2        # attention masks K per module (authors: 2 or 4)
    c.model.gate = "softmax"           # or "sigmoid" (normalised by the gates' sum)
    c.model.attention_reg_weight = 1e-3
    c.model.drop_rate = 0.0        # ViT only
    c.model.drop_path_rate = 0.0   # ViT and EfficientNet (torchvision trains B3 with 0.2)
    c.model.remat = False          # rematerialise blocks (memory for compute)
    c.model.conv_impl = "auto"     # ResNet/small_cnn convs: "winograd" (CPU), "xla" (GPU/TPU),
    #                                "gemm", "gemm_vjp" (csra_jax.models.resnet)
    c.model.pool_impl = "auto"     # their max-pools' backward: "masked" (CPU), "xla" (GPU/TPU)
    for field, default in config_defaults().items():  # a model file's own options
        if field not in c.model:
            c.model[field] = default
    c.dtype = "float32"            # compute dtype; params stay float32

    # Pretrained weights: a .pth/.safetensors file (converted on the fly) or a directory
    # written by `python -m csra_jax.convert` (init_source="converted").
    c.init_checkpoint = ""
    c.init_source = ""
    c.init_checkpoint_sha256 = ""  # checked before loading: 64 hex digits or a >= 8 prefix
    c.require_pretrained = True    # the demo trains from scratch on purpose

    c.data = ml_collections.ConfigDict()
    c.data.name = "synthetic_shapes"
    c.data.data_dir = "~/tensorflow_datasets"
    c.data.manual_dir = ""
    c.data.builder_config = ""
    c.data.build_if_missing = False  # build from manual_dir (or generate) when absent
    c.data.build_kwargs = ml_collections.ConfigDict()
    c.data.train_split = ""
    c.data.eval_split = ""
    c.data.image_size = 448
    c.data.normalization = "resnet"  # resnet: [0, 1]; vit: mean 0.5 / std 0.5
    c.data.crop_scale = (0.7, 1.0)
    c.data.hflip = True
    c.data.randaugment = ""          # e.g. "rand-m9-n2"
    c.data.draft = False             # training only: JPEG draft decoding (faster, inexact)
    c.data.num_workers = 0
    c.data.read_threads = 2

    c.batch_size = 16                # global, per optimizer micro-step
    c.eval_batch_size = 16
    c.grad_accum_steps = 1           # optimizer update every k micro-batches
    c.num_epochs = 30
    c.steps_per_epoch = -1           # -1: len(train split) // batch_size

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "sgd"             # official: torch SGD; "adamw": decoupled weight decay
    c.optim.lr_backbone = 0.01
    c.optim.lr_head = 0.1
    c.optim.momentum = 0.9
    c.optim.weight_decay = 1e-4
    c.optim.decay_bn_and_bias = True  # official: torch SGD decays every parameter
    c.optim.warmup_epochs = 2
    c.optim.schedule = "step"
    c.optim.lr_step_epochs = 4
    c.optim.lr_gamma = 0.1

    c.checkpoint_every_steps = 1000
    c.keep_checkpoints = 3
    c.on_damaged_checkpoint = "fallback"  # a step failing its checksums: "fallback" | "stop"
    c.allow_config_change = ""       # resume despite changes to these fields, e.g. "num_epochs"
    c.eval_every_epochs = 1
    c.log_every_steps = 20
    c.threshold = 0.5
    c.eval = ml_collections.ConfigDict()
    c.eval.protocol = "default"      # or "official": the official CSRA evaluation code
    c.lambda_sweep_lams = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
    c.compilation_cache_dir = "~/.cache/csra_jax/xla"
    c.max_steps = -1                 # stop early (tests, smoke runs); -1: run all epochs
    # Stall detector: one warning if the loss is still within stall_margin (relative) of
    # the label-prior entropy after stall_check_steps steps (0 = off).
    c.stall_check_steps = 1000
    c.stall_margin = 0.05
    c.lock()
    return c


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(f"invalid config: {message}")


def validate_config(c: ml_collections.ConfigDict, device_count: int, process_count: int) -> None:
    """Raises ValueError naming the field for every value we cannot run with."""
    _check(c.mode in MODES, f"mode={c.mode!r}; valid: {', '.join(MODES)}")
    _check(c.task in TASKS, f"task={c.task!r}; valid: {', '.join(TASKS)}")
    _check(c.dtype in DTYPES, f"dtype={c.dtype!r}; valid: {', '.join(DTYPES)}")
    _check(c.model.arch in available_archs(),
           f"model.arch={c.model.arch!r}; valid: {', '.join(available_archs())}")
    _check(c.model.head in available_heads(),
           f"model.head={c.model.head!r}; valid: {', '.join(available_heads())}")
    from csra_jax.data import DATASETS
    _check(c.data.name in DATASETS, f"data.name={c.data.name!r}; valid: {', '.join(DATASETS)}")
    try:
        check_head_config(c)
    except ValueError as e:
        raise ValueError(f"invalid config: model: {e}") from None
    from csra_jax.models.attention import ATTENTION_IMPLS
    from csra_jax.models.pooling import POOL_IMPLS
    from csra_jax.models.resnet import CONV_IMPLS
    for field, choices in (("conv_impl", CONV_IMPLS), ("pool_impl", POOL_IMPLS),
                           ("attention_impl", ATTENTION_IMPLS)):
        value = c.model[field]
        _check(value in choices, f"model.{field}={value!r}; valid: {', '.join(choices)}")
    _check(c.init_source in INIT_SOURCES,
           f"init_source={c.init_source!r}; valid: {', '.join(map(repr, INIT_SOURCES))}")
    if c.init_checkpoint_sha256:
        from csra_jax.convert.sha256 import normalize_sha256
        try:
            normalize_sha256(c.init_checkpoint_sha256)
        except ValueError as e:
            raise ValueError(f"invalid config: init_checkpoint_{e}") from None
        _check(bool(c.init_checkpoint), "init_checkpoint_sha256 is set but init_checkpoint "
               "is empty")
    _check(not c.init_checkpoint or c.init_source,
           "init_checkpoint is set but init_source is empty; say which format it is "
           "(torchvision, timm, csra, converted)")
    if c.mode in ("train", "train_and_evaluate") and c.require_pretrained:
        _check(bool(c.init_checkpoint),
               "this config trains from pretrained weights but init_checkpoint is empty; "
               "download them and pass --config.init_checkpoint=PATH (see README, "
               "'Pretrained weights'), or set --config.require_pretrained=False to train "
               "from scratch on purpose")
    for name in ("batch_size", "eval_batch_size"):
        value = c[name]
        _check(isinstance(value, int) and value > 0, f"{name}={value!r} must be a positive int")
        _check(value % device_count == 0,
               f"{name}={value} is not divisible by the {device_count} devices")
        _check(value % process_count == 0,
               f"{name}={value} is not divisible by the {process_count} processes")
    _check(c.grad_accum_steps >= 1, f"grad_accum_steps={c.grad_accum_steps} must be >= 1")
    _check(c.num_epochs >= 1, f"num_epochs={c.num_epochs} must be >= 1")
    _check(c.data.image_size > 0, f"data.image_size={c.data.image_size} must be positive")
    multiple = backbone_spec(c.model.arch).input_multiple
    _check(c.data.image_size % multiple == 0,
           f"data.image_size={c.data.image_size} must be divisible by {multiple} for {c.model.arch}")
    _check(c.optim.name in OPTIMIZERS,
           f"optim.name={c.optim.name!r}; valid: {', '.join(OPTIMIZERS)}")
    _check(c.optim.schedule in SCHEDULES,
           f"optim.schedule={c.optim.schedule!r}; valid: {', '.join(SCHEDULES)}")
    for name in ("lr_backbone", "lr_head"):
        _check(c.optim[name] >= 0, f"optim.{name}={c.optim[name]} must be >= 0")
    _check(isinstance(c.data.draft, bool), f"data.draft={c.data.draft!r} must be True or False "
           "(JPEG draft decoding for training; evaluation never uses it)")
    _check(len(c.data.crop_scale) == 2 and all(isinstance(v, (int, float)) for v in c.data.crop_scale),
           f"data.crop_scale={tuple(c.data.crop_scale)} must be two numbers (lo, hi)")
    lo, hi = c.data.crop_scale
    _check(0 < lo <= hi <= 1, f"data.crop_scale={tuple(c.data.crop_scale)} must satisfy 0 < lo <= hi <= 1")
    from csra_jax.data.input_spec import InputSpec
    InputSpec.from_config(c.data)  # the rest of what an image becomes (data.normalization, ...)
    _check(c.checkpoint_every_steps > 0, "checkpoint_every_steps must be positive")
    _check(c.keep_checkpoints >= 1, "keep_checkpoints must be >= 1")
    _check(c.on_damaged_checkpoint in ("fallback", "stop"),
           f"on_damaged_checkpoint={c.on_damaged_checkpoint!r}; valid: fallback, stop")
    _check(0 < c.threshold < 1, f"threshold={c.threshold} must be in (0, 1)")
    from csra_jax.metrics import PROTOCOLS
    _check(c.eval.protocol in PROTOCOLS,
           f"eval.protocol={c.eval.protocol!r}; valid: {', '.join(PROTOCOLS)}")
    _check(isinstance(c.stall_check_steps, int) and c.stall_check_steps >= 0,
           f"stall_check_steps={c.stall_check_steps!r} must be an int >= 0 (0 = off)")
    _check(0 < c.stall_margin < 1, f"stall_margin={c.stall_margin} must be in (0, 1) "
           "(relative distance to the label-prior entropy)")
    if c.mode == "lambda_sweep":
        sweepable = [h for h in available_heads() if head_spec(h).sweepable]
        _check(head_spec(c.model.head).sweepable, "mode=lambda_sweep re-scores a trained model "
               f"whose head averages its class maps ({', '.join(sweepable)}); model.head is "
               f"{c.model.head!r}")
        _check(all(math.isfinite(l) and l >= 0 for l in c.lambda_sweep_lams),
               f"lambda_sweep_lams={tuple(c.lambda_sweep_lams)} must be finite and >= 0")


def sibling_config(this_file: str, name: str, *args) -> ml_collections.ConfigDict:
    """``get_config()`` of another file in the same configs/ folder (baselines reuse rows)."""
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(os.path.abspath(this_file)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"csra_configs_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(*args)


def paper_config(*, dataset: str, arch: str, num_heads: int, lam: float, image_size: int,
                 lr_step_epochs: int, init_source: str, batch_size: int = 16
                 ) -> ml_collections.ConfigDict:
    """One paper row with the shared recipe: CSRA head; SGD momentum 0.9, wd 1e-4; lr 0.01
    backbone / 0.1 head; 2 warm-up epochs then x0.1 every ``lr_step_epochs``; 30 epochs;
    flip + random resized crop (0.7-1.0); ResNet inputs in [0, 1], ViT mean/std 0.5;
    datasets prebuilt by launch/prepare_data.sh; pretrained weights required."""
    c = base_config()
    c.model.arch = arch
    c.model.head = "csra"
    c.model.num_heads = num_heads
    c.model.lam = lam
    c.init_source = init_source
    c.data.name = dataset
    c.data.build_if_missing = False
    c.data.image_size = image_size
    c.data.normalization = backbone_spec(arch).normalization
    c.data.crop_scale = (0.7, 1.0)
    c.data.num_workers = 8  # keep an accelerator fed (bench/input_pipeline.py)
    c.batch_size = batch_size
    c.eval_batch_size = batch_size
    c.num_epochs = 30
    c.optim.lr_backbone = 0.01
    c.optim.lr_head = 0.1
    c.optim.warmup_epochs = 2
    c.optim.schedule = "step"
    c.optim.lr_step_epochs = lr_step_epochs
    return c
