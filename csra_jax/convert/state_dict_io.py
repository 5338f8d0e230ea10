"""Reading PyTorch state_dicts safely: never unpickling arbitrary objects.

``.pth``/``.pt`` go through ``torch.load(weights_only=True)``; ``.safetensors`` are read
with the safetensors numpy reader (torch not needed). In-memory mappings of tensors or
arrays are accepted as they are. Common wrappers (``{"state_dict": ...}``,
``{"model": ...}``) and DataParallel's ``module.`` prefix are unwrapped.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping

import numpy as np

_WRAPPER_KEYS = ("state_dict", "model", "module")


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # a torch tensor; import torch lazily
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def _load_file(path: str) -> Mapping[str, Any]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist.")
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file
        try:
            return load_file(path)
        except Exception as e:  # safetensors raises its own error types
            raise ValueError(f"{path!r} is not a readable .safetensors file: {e}") from e
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"reading {path!r} needs PyTorch: pip install 'csra_jax[convert]' "
            "(or convert it to .safetensors elsewhere).") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"could not load {path!r} with torch.load(weights_only=True): {e}. Only plain "
            "state_dicts of tensors are accepted (no pickled objects).") from e


def load_state_dict(source: Any) -> Dict[str, np.ndarray]:
    """A path (.pth/.pt/.safetensors) or a mapping -> {key: numpy array}."""
    raw = _load_file(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else source
    if not isinstance(raw, Mapping):
        raise ValueError(f"expected a state_dict mapping, got {type(raw).__name__}.")
    for key in _WRAPPER_KEYS:
        if key in raw and isinstance(raw[key], Mapping):
            raw = raw[key]
            break
    quantized = [f"{k} ({v.dtype})" for k, v in raw.items() if getattr(v, "is_quantized", False)]
    if quantized:  # torch.qint8 & co. have no numpy form, and a dequantized copy is not ours
        raise ValueError(
            f"{len(quantized)} tensor(s) are quantized ({', '.join(quantized[:3])}"
            f"{' ...' if len(quantized) > 3 else ''}): a quantized checkpoint cannot be "
            "converted; pass the original float32/float16/bfloat16 file.")
    out = {}
    for key, value in raw.items():
        if key.startswith("module."):
            key = key[len("module."):]
        out[key] = _to_numpy(value)
    return out
