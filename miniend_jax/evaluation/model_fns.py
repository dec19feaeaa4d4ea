"""seqio's predict and score functions for a T5: decode or score an evaluation dataset.

seqio hands the functions an enumerated dataset of model features ((index, features)
pairs, after its feature converter); they return (index, tokens) or (index, score). Batches
are padded to one fixed size so that every batch reuses one compiled function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from miniend_jax.evaluation.beam_search import beam_search
from miniend_jax.evaluation.decoding import greedy_decode, sequence_log_likelihood
from miniend_jax.model.config import T5Config


def _fixed_size_batches(dataset: tf.data.Dataset, batch_size: int
                        ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray], int]]:
  """(indices, features padded to batch_size rows, number of real rows)."""
  for indices, features in dataset.batch(batch_size).as_numpy_iterator():
    real = len(indices)
    if real < batch_size:
      features = {k: np.pad(v, [(0, batch_size - real)] + [(0, 0)] * (v.ndim - 1))
                  for k, v in features.items()}
    yield indices, features, real


def make_predict_fn(config: T5Config, params, *, batch_size: int, max_decode_length: int,
                    num_beams: int = 1) -> Callable:
  """A seqio predict_fn: greedy decoding (num_beams=1) or beam search, best beam."""
  if num_beams < 1:
    raise ValueError(f"num_beams must be >= 1, got {num_beams}.")

  def decode(encoder_tokens):
    if num_beams == 1:
      return greedy_decode(config, params, encoder_tokens, max_decode_length=max_decode_length)
    tokens, _ = beam_search(config, params, encoder_tokens,
                            max_decode_length=max_decode_length, num_beams=num_beams)
    return tokens[:, 0]

  def predict_fn(dataset: tf.data.Dataset, model_feature_shapes=None
                 ) -> Sequence[tuple[int, np.ndarray]]:
    """(index, tokens [max_decode_length]) per example; the vocabulary's decode stops at
    EOS, as seqio expects (t5x returns fixed-length rows too)."""
    del model_feature_shapes
    results = []
    for indices, features, real in _fixed_size_batches(dataset, batch_size):
      tokens = np.asarray(decode(jnp.asarray(features["encoder_input_tokens"])))
      results += list(zip((int(i) for i in indices[:real]), tokens[:real]))
    return results

  return predict_fn


def make_score_fn(config: T5Config, params, *, batch_size: int) -> Callable:
  """A seqio score_fn: the log-likelihood of each example's targets."""

  def score_fn(dataset: tf.data.Dataset, model_feature_shapes=None
               ) -> Sequence[tuple[int, float]]:
    del model_feature_shapes
    results = []
    for indices, features, real in _fixed_size_batches(dataset, batch_size):
      scores = np.asarray(sequence_log_likelihood(
          config, params, jnp.asarray(features["encoder_input_tokens"]),
          jnp.asarray(features["decoder_target_tokens"])))
      results += [(int(i), float(s)) for i, s in zip(indices[:real], scores[:real])]
    return results

  return score_fn
