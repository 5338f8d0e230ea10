"""PyTorch (torchvision, timm, official CSRA) checkpoints -> Flax variables."""

from csra_jax.convert.converted_checkpoint import load_converted, save_converted
from csra_jax.convert.pos_embed import resample_pos_embed
from csra_jax.convert.state_dict_io import load_state_dict
from csra_jax.convert.torch_to_flax import (KNOWN_UNUSED, SOURCES, ConversionReport,
                                            convert_state_dict, load_torch_weights)

__all__ = ["KNOWN_UNUSED", "SOURCES", "ConversionReport", "convert_state_dict",
           "load_converted", "load_state_dict", "load_torch_weights", "resample_pos_embed",
           "save_converted"]
