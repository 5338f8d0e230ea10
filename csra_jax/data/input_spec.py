"""What an image becomes before the model sees it: one frozen, validated value.

The training iterator uses every field; the evaluation iterator and ``Predictor`` use
``size``, ``normalization`` and ``draft`` only (evaluation is the official test
transform: the whole image resized to (size, size), no crop, no flip). A bad value
fails when the spec is made, with one line naming the field.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from typing import Any, Optional, Union

import numpy as np

from csra_jax.data import transforms

Normalization = Union[str, tuple]  # a name of transforms.NORMALIZATIONS or (mean, std)


class InputSpecError(ValueError):
    """A field of an ``InputSpec`` that cannot be used; ``field``, ``value``, ``why``."""

    def __init__(self, field: str, value: Any, why: str):
        super().__init__(f"invalid input spec: {field}={value!r} {why}")
        self.field, self.value, self.why = field, value, why


def _number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _range(field: str, value, upper: Optional[float]) -> tuple[float, float]:
    """(lo, hi) with 0 < lo <= hi (<= upper)."""
    if (isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2
            or not all(_number(v) for v in value)):
        raise InputSpecError(field, value, "must be two numbers (lo, hi)")
    lo, hi = float(value[0]), float(value[1])
    if not (0 < lo <= hi and (upper is None or hi <= upper)):
        bound = "" if upper is None else f" <= {upper:g}"
        raise InputSpecError(field, value, f"must satisfy 0 < lo <= hi{bound}")
    return lo, hi


def _channels(field: str, value) -> tuple[float, ...]:
    arr = np.asarray(value, dtype=object).reshape(-1)
    if arr.size not in (1, 3) or not all(_number(v) for v in arr):
        raise InputSpecError(field, value, "must be one number or three (R, G, B)")
    return tuple(float(v) for v in arr)


def _normalization(value) -> Normalization:
    if isinstance(value, str):
        if value not in transforms.NORMALIZATIONS:
            raise InputSpecError("normalization", value, "is not one of "
                                 f"{', '.join(transforms.NORMALIZATIONS)} (or give (mean, std))")
        return value
    if not hasattr(value, "__len__") or len(value) != 2:
        raise InputSpecError("normalization", value,
                             "must be a name or a (mean, std) pair")
    mean, std = _channels("normalization mean", value[0]), _channels("normalization std", value[1])
    if min(std) <= 0:
        raise InputSpecError("normalization std", value[1], "must be > 0")
    return mean, std


def _randaugment(value) -> Optional[tuple[int, int]]:
    ok = not isinstance(value, str) or re.fullmatch(r"rand(-[mn]\d+)*", value) or value == ""
    try:
        parsed = transforms.parse_randaugment(value) if ok else None
    except (ValueError, TypeError):
        ok = False
    if not ok or (parsed is not None and min(parsed) < 0):
        raise InputSpecError("randaugment", value, "must be None, 'rand-m<magnitude>-n<ops>' "
                             "(e.g. 'rand-m9-n2') or (num_ops, magnitude), both >= 0")
    return parsed


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One image's preprocessing.

    Attributes:
      size: S; images become (S, S, 3).
      normalization: "resnet" ([0, 1]), "vit" (mean/std 0.5), "imagenet", or
        ``(mean, std)`` in [0, 1] units, one number or three each.
      crop_scale, crop_ratio: the random resized crop's area fraction and aspect-ratio
        ranges (torchvision's sampling; training only).
      hflip: random horizontal flip (training only).
      randaugment: None, 'rand-m9-n2' or (num_ops, magnitude); stored parsed.
      draft: JPEG draft decoding (faster on large JPEGs, changes pixels; training only
        in the trainer, see ``for_eval``).
    """

    size: int
    normalization: Normalization = "resnet"
    crop_scale: tuple[float, float] = (0.7, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True
    randaugment: Optional[tuple[int, int]] = None
    draft: bool = False

    def __post_init__(self):
        if not isinstance(self.size, numbers.Integral) or isinstance(self.size, bool) \
                or self.size <= 0:
            raise InputSpecError("size", self.size, "must be a positive int (S of the S x S input)")
        for name in ("hflip", "draft"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise InputSpecError(name, getattr(self, name), "must be True or False")
        fixed = dict(size=int(self.size), normalization=_normalization(self.normalization),
                     crop_scale=_range("crop_scale", self.crop_scale, 1.0),
                     crop_ratio=_range("crop_ratio", self.crop_ratio, None),
                     hflip=bool(self.hflip), randaugment=_randaugment(self.randaugment),
                     draft=bool(self.draft))
        for name, value in fixed.items():  # canonical, hashable values
            object.__setattr__(self, name, value)

    @property
    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) as float32 arrays of shape (3,), in [0, 1] units."""
        if isinstance(self.normalization, str):
            return transforms.resolve_normalization(self.normalization)
        return transforms.resolve_normalization(mean=self.normalization[0],
                                                std=self.normalization[1])

    def for_eval(self) -> "InputSpec":
        """The spec evaluation uses: the same size and normalisation, exact decoding
        (draft decoding is a training-only speed-up)."""
        return dataclasses.replace(self, draft=False)

    @classmethod
    def from_config(cls, data_config) -> "InputSpec":
        """The spec of a config's ``data`` block; errors name the config field."""
        d = data_config
        try:
            return cls(size=d.image_size, normalization=d.normalization,
                       crop_scale=tuple(d.crop_scale), hflip=d.hflip,
                       randaugment=d.randaugment or None, draft=d.draft)
        except InputSpecError as e:
            field = "image_size" if e.field == "size" else e.field.split()[0]
            raise ValueError(f"invalid config: data.{field}={e.value!r} {e.why}") from None
