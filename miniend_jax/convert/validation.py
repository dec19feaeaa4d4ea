"""Checking loaded weights against a T5Config, with errors that say what to change."""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import numpy as np
from flax import traverse_util

from miniend_jax.convert.lazy_arrays import LazyArray
from miniend_jax.errors import MiniendError
from miniend_jax.model.config import T5Config
from miniend_jax.model.network import init_params

Path = tuple[str, ...]


class CheckpointError(MiniendError, ValueError):
  """A checkpoint directory or its contents cannot be used as asked."""


def expected_shapes(config: T5Config) -> dict[Path, tuple[int, ...]]:
  """Every parameter path of `config`'s model with its shape (no memory allocated)."""
  abstract = jax.eval_shape(lambda rng: init_params(config, rng), jax.random.key(0))
  return {path: leaf.shape
          for path, leaf in traverse_util.flatten_dict(nn.unbox(abstract)).items()}


def params_for_config(config: T5Config, flat: Mapping[Path, np.ndarray], *,
                      source: str) -> dict:
  """Nested params from `flat` after checking names, shapes and the vocabulary size.

  `source` names the checkpoint in messages. Arrays are cast to config.param_dtype
  (LazyArray leaves as they are read).
  """
  shapes = expected_shapes(config)
  missing = sorted("/".join(p) for p in shapes if p not in flat)
  if missing:
    raise CheckpointError(
        f"{source} lacks {len(missing)} parameter(s) the model config needs, e.g. "
        f"{missing[:3]}: check num_encoder_layers / num_decoder_layers / mlp_activations / "
        "logits_via_embedding of the config against the checkpoint.")
  unexpected = sorted("/".join(p) for p in flat if p not in shapes)
  if unexpected:
    raise CheckpointError(
        f"{source} holds {len(unexpected)} parameter(s) the model config does not use, "
        f"e.g. {unexpected[:3]}: check num_encoder_layers / num_decoder_layers / "
        "mlp_activations / logits_via_embedding of the config against the checkpoint.")
  rows = flat[("token_embedder", "embedding")].shape[0]
  if rows != config.vocab_size:
    raise CheckpointError(
        f"vocab_size mismatch: the config says {config.vocab_size} but {source}'s "
        f"embedding has {rows} rows; set vocab_size to {rows} (or use the checkpoint that "
        "matches the vocabulary).")
  result = {}
  for path, want in shapes.items():
    array = flat[path]
    if not isinstance(array, LazyArray):
      array = np.asarray(array)
    if array.shape != want:
      raise CheckpointError(
          f"{source}: {'/'.join(path)} has shape {array.shape}, the config expects {want}: "
          "check emb_dim, num_heads, head_dim, mlp_dim and "
          "relative_attention_num_buckets.")
    result[path] = (array.cast(config.parameter_dtype) if isinstance(array, LazyArray)
                    else array.astype(config.parameter_dtype))
  return traverse_util.unflatten_dict(result)
