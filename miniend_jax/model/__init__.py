"""The Flax T5: configuration, layers and the encoder-decoder network."""

from miniend_jax.model.config import PRESETS, ConfigError, T5Config, preset
from miniend_jax.model.network import Transformer, init_params, logical_axes, parameter_count

__all__ = ["PRESETS", "ConfigError", "T5Config", "Transformer", "init_params",
           "logical_axes", "parameter_count", "preset"]
