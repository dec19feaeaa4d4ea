"""Checking loaded weights against a T5Config, with errors that say what to change, and
the one error every checkpoint reader raises for a file it cannot read."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping

import flax.linen as nn
import jax
import numpy as np
from flax import traverse_util

from miniend_jax.convert.lazy_arrays import LazyArray
from miniend_jax.errors import MiniendError
from miniend_jax.model.config import T5Config
from miniend_jax.model.network import init_params
from miniend_jax.unreadable_files import describe

Path = tuple[str, ...]


class CheckpointError(MiniendError, ValueError):
  """A checkpoint directory or its contents cannot be used as asked."""


class UnreadableCheckpointError(CheckpointError):
  """A file of a checkpoint that is there but cannot be read (empty, truncated, another
  format). The message calls it a file of `setting`: "Checkpoint" until a caller that
  knows which setting gave the checkpoint names it (`naming_setting`)."""

  def __init__(self, path: str, reason: str, setting: str = "Checkpoint"):
    kind = "directory" if os.path.isdir(path) else "file"
    super().__init__(f"{setting} {kind} {path!r} cannot be read: {reason}.")
    self.path, self.reason = path, reason


def unreadable_checkpoint(path: str, cause: BaseException | None = None, *,
                          file_format: str, damage: str | None = None,
                          binary: bool = True) -> UnreadableCheckpointError:
  """The error for a checkpoint file that a reader of `file_format` failed on (`cause`,
  the library's error); `damage` and `binary` as for unreadable_files.describe."""
  return UnreadableCheckpointError(path, describe(path, cause, file_format=file_format,
                                                  damage=damage, binary=binary))


@contextlib.contextmanager
def naming_setting(setting: str) -> Iterator[None]:
  """Reports an unreadable checkpoint file met inside as a file of `setting` (e.g.
  TEACHER_CHECKPOINT), the setting the user changes."""
  try:
    yield
  except UnreadableCheckpointError as error:
    raise UnreadableCheckpointError(error.path, error.reason, setting) from None


def read_checkpoint_json(path: str):
  """The JSON value in `path` (a config.json, an index, our meta); a file that is not JSON
  is an UnreadableCheckpointError."""
  try:
    with open(path, "rb") as f:
      return json.loads(f.read())
  except ValueError as error:   # JSONDecodeError, or bytes that are not text
    damage = (f"it is not valid JSON ({error.msg} at line {error.lineno}, column "
              f"{error.colno})" if isinstance(error, json.JSONDecodeError) else None)
    raise unreadable_checkpoint(path, error, file_format="JSON file", damage=damage,
                                binary=False) from None


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
