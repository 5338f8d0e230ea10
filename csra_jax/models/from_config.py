"""A config's ``model`` section -> the Classifier, through the registry: each backbone and
head says which config fields it reads."""

from __future__ import annotations

import jax.numpy as jnp

from csra_jax.models import registry
from csra_jax.models.classifier import Classifier, create_model


def model_from_config(config, num_classes: int) -> Classifier:
    """The model a run's config describes (``config.model``, ``config.dtype``, the data's
    image size; the head may also read other fields, e.g. attend-and-rectify the task)."""
    m = config.model
    kwargs = registry.options_from_config(registry.backbone_spec(m.arch).config_fields, m)
    kwargs.update(head_options(config))
    dtype = jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32
    return create_model(m.arch, num_classes, head=m.head, num_heads=m.num_heads, lam=m.lam,
                        img_size=config.data.image_size, dtype=dtype, **kwargs)


def head_options(config) -> dict:
    """The head's ``create_model`` options a config gives."""
    spec = registry.head_spec(config.model.head)
    options = registry.options_from_config(spec.config_fields, config.model)
    if spec.config_options is not None:
        options.update(spec.config_options(config))
    return options


def check_head_config(config) -> None:
    """Raises the head's own ValueError if the config's head settings cannot be built."""
    m = config.model
    registry.head_spec(m.head).build(1, m.num_heads, m.lam, jnp.float32, jnp.float32,
                                     **head_options(config))
