"""Model options whose ``"auto"`` picks a lowering per backend: the one written for
XLA:CPU on the CPU backend, XLA's own on GPU/TPU (``conv_impl``, ``pool_impl``,
``attention_impl``, the Dense ``weight_grad``)."""

from __future__ import annotations

from typing import Sequence

import jax


def resolve_per_backend(field: str, value: str, choices: Sequence[str], on_cpu: str,
                        elsewhere: str) -> str:
    """``value`` itself, or for ``"auto"`` ``on_cpu`` / ``elsewhere`` by the default
    backend; a ValueError naming ``field`` and the choices for anything not in them."""
    if value not in choices:
        raise ValueError(f"{field}={value!r}; valid: {', '.join(choices)}")
    if value == "auto":
        return on_cpu if jax.default_backend() == "cpu" else elsewhere
    return value
