"""PyTorch (torchvision, timm, official CSRA) checkpoints -> Flax variables."""

from csra_jax.convert.converted_checkpoint import load_converted, save_converted
from csra_jax.convert.pos_embed import resample_pos_embed
from csra_jax.convert.state_dict_io import load_state_dict
from csra_jax.convert.torch_to_flax import (SOURCES, ConversionReport, convert_state_dict,
                                            known_unused, load_torch_weights)

__all__ = ["KNOWN_UNUSED", "SOURCES", "ConversionReport", "convert_state_dict", "known_unused",
           "load_converted", "load_state_dict", "load_torch_weights", "resample_pos_embed",
           "save_converted"]


def __getattr__(name):  # KNOWN_UNUSED follows the registry (see torch_to_flax.known_unused)
    if name == "KNOWN_UNUSED":
        return known_unused()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
