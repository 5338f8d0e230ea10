"""Backbones and heads describe themselves here, so nothing outside ``models/`` needs to
know an architecture's name or a head's type.

Each backbone file ends with ``register_backbone(BackboneSpec(...))`` and each head file
with ``register_head(HeadSpec(...))``. Every module of the ``csra_jax.models`` package is
imported the first time a name is looked up, so a new backbone or head is one new file
(a module registered from elsewhere works too, once imported).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

TINY = "_tiny"  # suffix of each family's test-sized arch (not in available_archs())


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """Everything the rest of the package asks of a backbone family.

    Attributes:
      family: the family's name (``resnet``, ``vit``, ...).
      module: the Linen module class; ``module(**archs[arch], **options)`` builds it. It
        takes ``dtype``, ``param_dtype``, ``return_stages`` and ``img_size`` if it has
        such a field, and returns a (B, h, w, d) map (a tuple of stage maps when
        ``return_stages``).
      archs: public arch name -> the module's settings.
      tiny: settings of a test-sized member, built by the name ``family + "_tiny"``.
      options: the keyword options ``create_model`` passes on to the module.
      config_fields: option -> the ``config.model`` field it is read from.
      config_defaults: ``config.model`` fields this family adds to ``base_config()`` (name
        -> default), for options no other model has.
      normalization: the input normalisation its weights expect (a name of
        ``csra_jax.data.transforms.NORMALIZATIONS``).
      stage_strides: settings -> strides of the ``return_stages`` maps (the last one is
        the output stride).
      input_multiple: the image size must be a multiple of this (ViT: the patch size);
        ``input_multiple_reason`` names it in the error.
      has_batch_norm: whether its variables hold a ``batch_stats`` collection.
      torch_source: the converter source of its PyTorch twin ("torchvision", "timm").
      torch_classifier: the key prefix of that twin's classifier (``fc``, ``head``, ...).
      torch_unused: patterns of other keys its PyTorch files may carry that no model of
        ours loads (they are skipped and named, not errors).
      torch_twin: ``(settings, img_size, num_classes) -> torch.nn.Module``, the PyTorch
        model its weights convert from (imports torch lazily); its forward gives the
        logits of our ``gap`` head.
    """

    family: str
    module: type
    archs: Mapping[str, Mapping[str, Any]]
    tiny: Mapping[str, Any]
    options: Tuple[str, ...] = ("remat",)
    config_fields: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: {"remat": "remat"})
    config_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    normalization: str = "resnet"
    stage_strides: Callable[[Mapping[str, Any]], Tuple[int, ...]] = lambda s: (4, 8, 16, 32)
    input_multiple: int = 1
    input_multiple_reason: str = "its input multiple"
    has_batch_norm: bool = True
    torch_source: Optional[str] = None
    torch_classifier: Optional[str] = None
    torch_unused: Tuple[str, ...] = ()
    torch_twin: Optional[Callable[..., Any]] = None

    @property
    def tiny_arch(self) -> str:
        return self.family + TINY

    def settings(self, arch: str) -> Mapping[str, Any]:
        return self.tiny if arch == self.tiny_arch else self.archs[arch]


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """A head: ``build(num_classes, num_heads, lam, dtype, param_dtype, **options)``.

    Attributes:
      name: the ``head=`` name.
      module: the Linen module class (a ``csra_jax.models.head.Head``).
      build: returns the module; raises ValueError on arguments it cannot take.
      options: the keyword options ``create_model`` passes to ``build``.
      config_fields: option -> the ``config.model`` field it is read from.
      config_defaults: ``config.model`` fields this head adds to ``base_config()``.
      config_options: ``config -> dict`` of options derived from other fields (e.g. the
        task); optional.
      reads_stages: the head takes the backbone's stage maps, not only the last one.
      sweepable: its logits are the spatial mean of its class score maps, so the
        training-free sweep (``mode=lambda_sweep``: mean + lam * max) re-scores it.
    """

    name: str
    module: type
    build: Callable[..., Any]
    options: Tuple[str, ...] = ()
    config_fields: Mapping[str, str] = dataclasses.field(default_factory=dict)
    config_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    config_options: Optional[Callable[[Any], Dict[str, Any]]] = None
    reads_stages: bool = False
    sweepable: bool = False


_BACKBONES: Dict[str, BackboneSpec] = {}
_HEADS: Dict[str, HeadSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Adds a backbone family; a family or arch name already taken is an error."""
    if spec.family in _BACKBONES and _BACKBONES[spec.family].module is not spec.module:
        raise ValueError(f"backbone family {spec.family!r} is already registered.")
    taken = {a: f.family for f in _BACKBONES.values() if f.family != spec.family
             for a in (*f.archs, f.tiny_arch)}
    clash = sorted(a for a in {*spec.archs, spec.tiny_arch} if a in taken)
    if clash:
        raise ValueError(f"backbone {spec.family!r}: arch(s) {clash} already belong to "
                         f"{sorted({taken[a] for a in clash})}.")
    _BACKBONES[spec.family] = spec
    return spec


def register_head(spec: HeadSpec) -> HeadSpec:
    """Adds a head; a name already taken by another module is an error."""
    if spec.name in _HEADS and _HEADS[spec.name].module is not spec.module:
        raise ValueError(f"head {spec.name!r} is already registered.")
    _HEADS[spec.name] = spec
    return spec


_loaded = set()


def _load_package() -> None:
    """Imports every module of ``csra_jax.models`` not imported yet (each registers)."""
    import csra_jax.models as package
    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in _loaded:
            _loaded.add(info.name)
            importlib.import_module(f"{package.__name__}.{info.name}")


def families() -> Dict[str, BackboneSpec]:
    _load_package()
    return dict(_BACKBONES)


def heads() -> Dict[str, HeadSpec]:
    _load_package()
    return dict(_HEADS)


def available_archs() -> list:
    """Every public arch name, sorted."""
    return sorted(a for spec in families().values() for a in spec.archs)


def available_heads() -> list:
    """Head names, in registration order (the paper's head first)."""
    return list(heads())


def backbone_spec(arch: str) -> BackboneSpec:
    """The family of ``arch`` (a public or a ``*_tiny`` name); ValueError if unknown."""
    for spec in families().values():
        if arch in spec.archs or arch == spec.tiny_arch:
            return spec
    raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(available_archs())}.")


def head_spec(name: str) -> HeadSpec:
    found = heads().get(name)
    if found is None:
        raise ValueError(f"unknown head {name!r}; valid: {', '.join(available_heads())}.")
    return found


def spec_of(backbone) -> BackboneSpec:
    """The family a backbone module instance belongs to."""
    for spec in families().values():
        if type(backbone) is spec.module:
            return spec
    raise ValueError(f"{type(backbone).__name__} is not a registered backbone; register it "
                     "with csra_jax.models.registry.register_backbone.")


def config_defaults() -> Dict[str, Any]:
    """The ``config.model`` fields the registered backbones and heads declare for
    themselves; one field declared with two different defaults is an error."""
    out: Dict[str, Any] = {}
    for spec in [*families().values(), *heads().values()]:
        for field, default in spec.config_defaults.items():
            if field in out and out[field] != default:
                raise ValueError(f"config.model.{field}: two registered models declare "
                                 f"different defaults ({out[field]!r}, {default!r}).")
            out[field] = default
    return out


def options_from_config(fields: Mapping[str, str], model_config) -> Dict[str, Any]:
    """``{option: config.model[field]}``, lists made tuples (config.json stores lists)."""
    out = {}
    for option, field in fields.items():
        value = model_config[field]
        out[option] = tuple(value) if isinstance(value, list) else value
    return out
