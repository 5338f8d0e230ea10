"""PyTorch state_dict -> Flax variables for our ResNet / MobileNet-V2 / EfficientNet / ViT
classifiers (any registered backbone with a ``torch_source``).

Our module names mirror the PyTorch ones, so one rule covers every backbone key:
``layer1.0.downsample.0.weight`` -> ``backbone/layer1_0/downsample_0/kernel`` (a numeric
component joins its parent with "_"); conv weights OIHW -> HWIO, linear weights are
transposed, norm weights become ``scale``, BatchNorm running statistics go to the
``batch_stats`` collection. Only classifier keys need per-source rules: each backbone's
registry entry names its source and classifier key; a head's ``torch_classifier`` rule
(a GAP head takes the classifier) and the official CSRA head are below.

Strict by default: every missing, unexpected or mis-shaped key is listed in one error.
The keys we deliberately do not load are an explicit list (``known_unused()``, built
from the registered families).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import traverse_util

from csra_jax.convert.pos_embed import resample_pos_embed
from csra_jax.convert.state_dict_io import load_state_dict
from csra_jax.models.classifier import Classifier
from csra_jax.models.registry import families, spec_of

SOURCES = ("torchvision", "timm", "csra")

_BN_COUNTER = r".*\.num_batches_tracked$"


def known_unused() -> Tuple[str, ...]:
    """Patterns of keys that exist in the sources but that no model of ours uses, by design:
    BatchNorm's step counter (used only when torch BN momentum is None); each registered
    family's ``torch_classifier`` (torchvision ``fc`` / ``classifier.1``, timm ``head``)
    when the model's head does not take it (the official CSRA ResNets also carry
    torchvision's ``fc``, which ResNet_CSRA never calls); and the extra keys a family's
    ``torch_unused`` names (timm's in21k ``pre_logits``)."""
    patterns = [_BN_COUNTER]
    for spec in families().values():
        if spec.torch_classifier:
            patterns.append(rf"^{re.escape(spec.torch_classifier)}\.(weight|bias)$")
        patterns.extend(spec.torch_unused)
    return tuple(dict.fromkeys(patterns))


def __getattr__(name):  # KNOWN_UNUSED: the list as of now (backbones may register later)
    if name == "KNOWN_UNUSED":
        return known_unused()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_CSRA_HEAD_KEY = re.compile(r"^classifier\.multi_head\.(\d+)\.head\.weight$")
_CSRA_CLASSIFIER_KEY = "fc"  # the official CSRA ResNets carry torchvision's fc


@dataclasses.dataclass
class ConversionReport:
    loaded: List[str] = dataclasses.field(default_factory=list)
    skipped: List[str] = dataclasses.field(default_factory=list)
    missing: List[str] = dataclasses.field(default_factory=list)
    unexpected: List[str] = dataclasses.field(default_factory=list)
    mis_shaped: List[str] = dataclasses.field(default_factory=list)
    resampled: List[str] = dataclasses.field(default_factory=list)
    # classifier keys the model's head does not take, grouped by the reason
    unused: Dict[str, List[str]] = dataclasses.field(default_factory=dict)

    def unused_lines(self) -> List[str]:
        """One line per reason: which checkpoint keys were not loaded, and why."""
        return [f"not loaded: {', '.join(keys)} ({reason})" for reason, keys in self.unused.items()]

    def errors(self) -> str:
        lines = []
        for name in ("missing", "unexpected", "mis_shaped"):
            items = getattr(self, name)
            if items:
                lines.append(f"  {name} ({len(items)}): " + ", ".join(items))
        return "\n".join(lines)


def _flax_path(torch_key: str, value: np.ndarray) -> Tuple[Tuple[str, ...], np.ndarray]:
    """Generic backbone rule: returns ((collection, 'backbone', ...), converted value)."""
    parts: List[str] = []
    for part in torch_key.split("."):
        if part.isdigit() and parts:
            parts[-1] = f"{parts[-1]}_{part}"
        else:
            parts.append(part)
    *modules, leaf = parts
    collection = "params"
    if leaf == "weight":
        if value.ndim == 4:
            leaf, value = "kernel", value.transpose(2, 3, 1, 0)
        elif value.ndim == 2:
            leaf, value = "kernel", value.T
        else:
            leaf = "scale"
    elif leaf in ("running_mean", "running_var"):
        collection, leaf = "batch_stats", {"running_mean": "mean", "running_var": "var"}[leaf]
    return (collection, "backbone", *modules, leaf), value


def _check_source(model: Classifier, source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; valid: {', '.join(SOURCES)}.")
    if not isinstance(model, Classifier):
        raise ValueError("load_torch_weights needs a model from csra_jax.create_model, "
                         f"got {type(model).__name__}.")
    spec = spec_of(model.backbone)
    if source != "csra" and spec.torch_source != source:
        holds = ", ".join(sorted(f.module.__name__ for f in families().values()
                                 if f.torch_source == source))
        fix = (f"use source={spec.torch_source!r} for {spec.family} checkpoints"
               if spec.torch_source else f"{spec.family} has no PyTorch source")
        raise ValueError(f"source={source!r} holds {holds} weights but the model is a "
                         f"{type(model.backbone).__name__}; {fix}.")


def _example_input(model: Classifier) -> jax.Array:
    """A backbone built for one input size (ViT: its position embedding) gets that size."""
    size = getattr(model.backbone, "img_size", 64)
    return jnp.zeros((1, size, size, 3), jnp.float32)


def _check_float(state_dict: Dict[str, np.ndarray]) -> None:
    """Every parameter and BatchNorm statistic of our models is float; an int8 / uint8 /
    bool tensor (a quantized export) cast to float is not the weight, so it is refused
    (before the model is even initialised). Only BN's step counter is an integer."""
    bad = [f"{k} ({v.dtype})" for k, v in state_dict.items()
           if v.dtype.kind in "biuc" and not k.endswith(".num_batches_tracked")]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ValueError(
            f"{len(bad)} float parameter(s) are stored as integer/bool tensors ({shown}): a "
            "quantized or integer checkpoint cannot be converted (a cast would not give the "
            "float weights); pass the original float32/float16/bfloat16 file.")


def _unused_reason(key: str, value: np.ndarray, head, source: str, classifier: str) -> str:
    """Why a known-unused classifier key is not loaded into this model (one phrase)."""
    if key.startswith("pre_logits."):
        return "the in21k pre-logits layer; the model has none"
    if source == "csra":
        return "the official CSRA ResNet carries torchvision's fc but never calls it"
    if not key.startswith(classifier + "."):
        return f"not the {classifier!r} classifier this backbone has"
    if _takes_classifier(head):
        if value.shape[0] != head.num_classes:
            return (f"the checkpoint's classifier has {value.shape[0]} classes, the model's "
                    f"gap head {head.num_classes}; the head keeps its initialisation")
        return (f"the checkpoint's classifier {tuple(value.shape)} does not fit the model's "
                "gap head; the head keeps its initialisation")
    return (f"the model's {type(head).__name__} does not use the checkpoint's classifier; "
            "the head keeps its initialisation")


def _takes_classifier(head) -> bool:
    """A head whose params are the twin's classifier (``kernel`` (d, C), ``bias``): GAP."""
    return bool(getattr(head, "torch_classifier", False))


def _is_csra_head(head) -> bool:
    """A head the official CSRA ``classifier.multi_head.*`` kernels load into."""
    return bool(getattr(head, "official_csra", False))


def convert_state_dict(state_dict: Dict[str, np.ndarray], model: Classifier, source: str,
                       init_variables: Optional[Dict[str, Any]] = None,
                       rng: Optional[jax.Array] = None,
                       antialias: bool = True) -> Tuple[Dict[str, Any], ConversionReport]:
    """Converts an in-memory numpy state_dict; returns (variables, report)."""
    _check_source(model, source)
    _check_float(state_dict)
    if init_variables is None:
        rng = jax.random.key(0) if rng is None else rng
        init_variables = jax.jit(model.init)(rng, _example_input(model))
    template = traverse_util.flatten_dict(jax.device_get(init_variables))
    out = dict(template)
    report = ConversionReport()
    filled = set()

    head = model.head
    gap_head = _takes_classifier(head)
    head_kernels: Dict[int, np.ndarray] = {}
    classifier = (_CSRA_CLASSIFIER_KEY if source == "csra"
                  else spec_of(model.backbone).torch_classifier)
    unused_patterns = known_unused()

    def put(path, value, torch_key):
        if path not in template:
            report.unexpected.append(torch_key)
            return
        want = template[path].shape
        if value.shape != want:
            report.mis_shaped.append(f"{torch_key} {tuple(value.shape)} -> "
                                     f"{'/'.join(path)} {tuple(want)}")
            filled.add(path)  # reported once, as mis-shaped, not again as missing
            return
        out[path] = value.astype(template[path].dtype)
        filled.add(path)
        report.loaded.append(torch_key)

    for key, value in state_dict.items():
        m = _CSRA_HEAD_KEY.match(key)
        if m and source == "csra":
            head_kernels[int(m.group(1))] = value
            continue
        if key in (f"{classifier}.weight", f"{classifier}.bias") and gap_head and source != "csra":
            leaf = "kernel" if key.endswith("weight") else "bias"
            value = value.T if leaf == "kernel" else value
            if value.shape == template[("params", "head", leaf)].shape:
                put(("params", "head", leaf), value, key)
                continue
        if any(re.match(p, key) for p in unused_patterns):
            report.skipped.append(key)
            if not key.endswith("num_batches_tracked"):
                reason = _unused_reason(key, state_dict[key], head, source, classifier)
                report.unused.setdefault(reason, []).append(key)
            continue
        path, value = _flax_path(key, value)
        if path[-1] == "pos_embed" and path in template and value.shape != template[path].shape:
            value = resample_pos_embed(value, template[path].shape[1], antialias=antialias)
            report.resampled.append(f"{key} {state_dict[key].shape[1]} -> {value.shape[1]} tokens")
        put(path, value, key)

    if source == "csra":
        if not _is_csra_head(head):
            raise ValueError(
                f"source='csra' carries a CSRA head with {len(head_kernels)} heads but the "
                f"model's head is {type(head).__name__}; create the model with head='csra', "
                f"num_heads={len(head_kernels)}.")
        if sorted(head_kernels) != list(range(head.num_heads)):
            report.mis_shaped.append(
                f"classifier.multi_head.* has heads {sorted(head_kernels)} but the model has "
                f"num_heads={head.num_heads}")
        else:
            # (C, d, 1, 1) per head -> stacked (H, d, C)
            stacked = np.stack([head_kernels[i][:, :, 0, 0].T for i in range(head.num_heads)])
            put(("params", "head", "kernel"), stacked, "classifier.multi_head.*.head.weight")

    for path in template:
        if path in filled:
            continue
        if path[1] == "head" and source != "csra":
            continue  # the head starts from its initialisation for backbone-only sources
        report.missing.append("/".join(path))
    if report.errors():
        raise ValueError(f"checkpoint does not match the model (source={source!r}):\n"
                         f"{report.errors()}")
    if report.skipped:
        logging.info("convert: skipped known-unused keys: %s", ", ".join(report.skipped))
    for line in report.unused_lines():
        logging.info("convert: %s", line)
    if report.resampled:
        logging.info("convert: resampled %s", "; ".join(report.resampled))
    variables = traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in out.items()})
    return variables, report


def load_torch_weights(source_path_or_state_dict: Any, model: Classifier, source: str,
                       **kwargs) -> Dict[str, Any]:
    """Loads a PyTorch checkpoint into ``model``'s variables.

    Args:
      source_path_or_state_dict: a .pth/.pt (read with ``weights_only=True``), a
        .safetensors path (read without torch), or a mapping of tensors/arrays.
      model: a ``csra_jax.create_model`` classifier.
      source: "torchvision" (ResNet, MobileNet-V2 or EfficientNet backbone; their
        classifier ``fc`` / ``classifier.1``), "timm" (ViT backbone), or "csra" (an
        official CSRA ``ResNet_CSRA``/``VIT_CSRA`` state_dict: backbone and head).
        For "torchvision"/"timm" the head keeps its initialisation, except that a GAP
        head with the checkpoint's class count takes its classifier weights.
      **kwargs: ``init_variables`` (template to fill, default ``model.init``), ``rng``,
        ``antialias`` (position-embedding resampling as timm: True).

    Returns:
      ``{"params": ..., "batch_stats": ...}`` (no ``batch_stats`` for ViTs).
    """
    return convert_state_dict(load_state_dict(source_path_or_state_dict), model, source,
                              **kwargs)[0]
