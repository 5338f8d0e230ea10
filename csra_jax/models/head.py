"""The head protocol: what every head offers, so callers never test a head's type.

A head is a Linen module called as ``head(features, train=False, with_maps=False)``:
``features`` is the backbone's (B, h, w, d) map (the tuple of stage maps for a head
registered with ``reads_stages``), the result the (B, C) float32 class outputs, or
``(outputs, ClassMaps)`` with ``with_maps=True``. Auxiliary training losses are sown
into the ``losses`` collection (the train step adds them). ``outputs_log_probs`` says
whether the outputs are log-probabilities instead of logits; ``torch_classifier`` and
``official_csra`` which PyTorch weights the converter loads into the head.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp


class ClassMaps(NamedTuple):
    """Per-class spatial maps of a head, float32.

    scores: (B, h, w, C) the class evidence at each position, whose mean over positions
      is the head's average-pooled logit (CSRA: the first head's base logit; GAP: its
      logit; attend-and-rectify: its deepest module's logit).
    attention: (B, C, h, w) where each class looks, for pictures (CSRA: its attention,
      summing to 1; the others: the scores min-max normalised to [0, 1] per class).
    """

    scores: jax.Array
    attention: jax.Array


def min_max_per_class(scores: jax.Array) -> jax.Array:
    """(B, h, w, C) scores -> (B, C, h, w) stretched to [0, 1] per image and class."""
    maps = jnp.transpose(scores, (0, 3, 1, 2))
    lo = maps.min(axis=(2, 3), keepdims=True)
    hi = maps.max(axis=(2, 3), keepdims=True)
    return (maps - lo) / jnp.maximum(hi - lo, 1e-12)


def spatial_shape(x: jax.Array) -> tuple:
    """(h, w) of a (B, h, w, d) map; maps need the grid, not flat tokens."""
    if x.ndim != 4:
        raise ValueError(f"class maps need a feature map (B, h, w, d), got shape {x.shape}.")
    return x.shape[1], x.shape[2]


class Head(nn.Module):
    """Base of the heads: ``class_maps`` and ``outputs_log_probs`` for free."""

    outputs_log_probs = False  # a class constant, or a property of the head's fields
    # Converter rules (csra_jax.convert): the head's params are a PyTorch twin's classifier
    # Linear (``kernel`` (d, C), ``bias``), or the official CSRA release's stacked heads.
    torch_classifier = False
    official_csra = False

    def class_maps(self, features) -> ClassMaps:
        """The head's ClassMaps on eval-mode features."""
        return self(features, train=False, with_maps=True)[1]
