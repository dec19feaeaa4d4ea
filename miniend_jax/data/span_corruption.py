"""T5's span corruption as a seqio preprocessor, ours (docs/data.md, "Span corruption").

A tokenized document stream is concatenated in groups of documents and cut into raw
segments of `tokens_length` tokens, the longest whose corrupted form fits the encoder.
In each segment a random set of spans is marked as noise: the inputs keep the other tokens
and replace the i-th noise span by the sentinel <extra_id_i>; the targets list each noise
span after its sentinel. With T5's defaults (noise density 0.15, mean span length 3)
an encoder length of 512 takes 568 raw tokens and needs 114 target positions.

    raw      The  cat  sat  on  the  mat  .
    mask      .    N    .    .   N    N   .     (N = noise; never the first token)
    inputs   The <extra_id_0> sat on <extra_id_1> .  </s>
    targets  <extra_id_0> cat <extra_id_1> the mat   </s>

Lengths follow one formula everywhere (helper and mask): for a segment of n >= 2 tokens,
noise = clip(round(n * density), 1, n - 1) and spans = clip(round(noise / mean), 1,
n - noise), rounding half to even in float64 like Python's round(). The corrupted lengths
are then inputs = n - noise + spans + 1 and targets = noise + spans + 1 (the +1 is EOS,
appended afterwards by seqio's append_eos_after_trim, as in T5 pipelines).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import seqio
import tensorflow as tf

from miniend_jax.data.errors import DataError, SequenceLengthError

NOISE_DENSITY = 0.15
MEAN_NOISE_SPAN_LENGTH = 3.0
DOCUMENTS_PER_GROUP = 128


def _check_noise_settings(noise_density: float, mean_noise_span_length: float) -> None:
  if not 0 < noise_density < 1:
    raise DataError(f"noise_density must be in (0, 1), got {noise_density}.")
  if mean_noise_span_length < 1:
    raise DataError(
        f"mean_noise_span_length must be at least 1, got {mean_noise_span_length}.")


def _span_counts(length: int, noise_density: float,
                 mean_noise_span_length: float) -> tuple[int, int]:
  """(noise tokens, noise spans) of a segment of `length` >= 2 tokens."""
  num_noise = min(max(round(length * noise_density), 1), length - 1)
  num_spans = min(max(round(num_noise / mean_noise_span_length), 1), length - num_noise)
  return num_noise, num_spans


def _corrupted_lengths(length: int, noise_density: float,
                       mean_noise_span_length: float) -> tuple[int, int]:
  """(inputs, targets) lengths, EOS included, of a corrupted segment of `length` tokens."""
  num_noise, num_spans = _span_counts(length, noise_density, mean_noise_span_length)
  return length - num_noise + num_spans + 1, num_noise + num_spans + 1


def random_spans_helper(inputs_length: int, noise_density: float = NOISE_DENSITY,
                        mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH
                        ) -> tuple[int, int]:
  """(tokens_length, targets_length): the raw segment length whose corrupted inputs,
  EOS included, fill `inputs_length` at most, and the target length that segment needs.

  E.g. 512 -> (568, 114), 1024 -> (1137, 229), 256 -> (284, 58) with T5's defaults.
  """
  _check_noise_settings(noise_density, mean_noise_span_length)
  lengths = lambda n: _corrupted_lengths(n, noise_density, mean_noise_span_length)
  if lengths(2)[0] > inputs_length:
    raise SequenceLengthError(
        f"An inputs length of {inputs_length} cannot hold one corrupted span (it needs at "
        f"least {lengths(2)[0]}: a kept token, a sentinel and EOS). Raise the 'inputs' "
        "entry of the task feature lengths (TASK_FEATURE_LENGTHS).")
  tokens_length = 2
  # The corrupted inputs length never decreases as the raw length grows, so the first
  # length that overflows ends the search.
  while lengths(tokens_length + 1)[0] <= inputs_length:
    tokens_length += 1
  return tokens_length, lengths(tokens_length)[1]


def _random_segmentation(num_items: tf.Tensor, num_segments: tf.Tensor,
                         seed: tf.Tensor) -> tf.Tensor:
  """Lengths [num_segments] of a uniformly random split of `num_items` items into
  `num_segments` non-empty runs: a random subset of the num_items - 1 gaps are cuts."""
  keys = tf.random.stateless_uniform([num_items - 1], seed=seed)
  cuts = tf.sort(tf.math.top_k(keys, k=num_segments - 1).indices) + 1
  bounds = tf.concat([[0], cuts, [num_items]], axis=0)
  return bounds[1:] - bounds[:-1]


def random_spans_noise_mask(length, noise_density: float, mean_noise_span_length: float,
                            seeds: Sequence[tf.Tensor]) -> tf.Tensor:
  """Boolean noise mask [length] with alternating kept and noise spans.

  Kept and noise tokens are each split into the same number of random non-empty spans,
  interleaved starting with a kept span and ending with a noise span: the first token is
  never noise, the last always is.

  Args:
    length: tokens in the segment (>= 2), a Python int or an int scalar tensor.
    noise_density: fraction of tokens to mark as noise.
    mean_noise_span_length: mean length of a noise span.
    seeds: two stateless seeds (each shape [2]): noise span lengths, kept span lengths.
  """
  length = tf.convert_to_tensor(length, tf.int32)
  num_noise = tf.cast(tf.round(tf.cast(length, tf.float64) * noise_density), tf.int32)
  num_noise = tf.clip_by_value(num_noise, 1, length - 1)
  num_spans = tf.cast(tf.round(tf.cast(num_noise, tf.float64) / mean_noise_span_length),
                      tf.int32)
  num_spans = tf.clip_by_value(num_spans, 1, length - num_noise)
  noise_lengths = _random_segmentation(num_noise, num_spans, seeds[0])
  kept_lengths = _random_segmentation(length - num_noise, num_spans, seeds[1])
  span_ends = tf.cumsum(tf.reshape(tf.stack([kept_lengths, noise_lengths], axis=1), [-1]))
  span_index = tf.searchsorted(span_ends, tf.range(length), side="right")
  return tf.equal(span_index % 2, 1)


def noise_span_to_unique_sentinel(tokens, noise_mask, vocabulary) -> tf.Tensor:
  """Inputs: each noise span becomes one sentinel, the i-th <extra_id_i> =
  vocab_size - 1 - i; kept tokens stay."""
  tokens = tf.convert_to_tensor(tokens)
  noise_mask = tf.convert_to_tensor(noise_mask, tf.bool)
  previous_noise = tf.pad(noise_mask[:-1], [[1, 0]])
  span_start = tf.logical_and(noise_mask, tf.logical_not(previous_noise))
  sentinels = vocabulary.vocab_size - tf.cumsum(tf.cast(span_start, tokens.dtype))
  marked = tf.where(span_start, sentinels, tokens)
  return tf.boolean_mask(marked, tf.logical_not(tf.logical_and(noise_mask, previous_noise)))


def nonnoise_span_to_unique_sentinel(tokens, noise_mask, vocabulary) -> tf.Tensor:
  """Targets: the reverse of the inputs, "<extra_id_0> noise_0 <extra_id_1> noise_1 ..."."""
  return noise_span_to_unique_sentinel(
      tokens, tf.logical_not(tf.convert_to_tensor(noise_mask, tf.bool)), vocabulary)


def _concatenate_and_split(dataset: tf.data.Dataset, feature: str, tokens_length: int,
                           documents_per_group: int) -> tf.data.Dataset:
  """Segments of `tokens_length` tokens (the last of a group shorter) cut from groups of
  `documents_per_group` concatenated documents; segments under 2 tokens are dropped."""
  groups = dataset.map(lambda example: example[feature]).ragged_batch(documents_per_group)

  def split(group: tf.RaggedTensor) -> tf.data.Dataset:
    tokens = group.flat_values
    starts = tf.range(0, tf.size(tokens), tokens_length)
    return tf.data.Dataset.from_tensor_slices(tf.RaggedTensor.from_row_starts(tokens, starts))

  return groups.flat_map(split).filter(lambda segment: tf.size(segment) >= 2)


def span_corruption(dataset: tf.data.Dataset, sequence_length: Mapping[str, int] | None,
                    output_features: Mapping[str, seqio.Feature], *,
                    noise_density: float = NOISE_DENSITY,
                    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
                    documents_per_group: int = DOCUMENTS_PER_GROUP) -> tf.data.Dataset:
  """seqio preprocessor: tokenized documents {"targets"} -> {"inputs", "targets"}.

  Runs after tokenization and before `seqio.preprocessors.append_eos_after_trim`. The
  random masks come from seqio's per-preprocessor seeds, so `get_dataset(seed=...)` makes
  them reproducible.

  Args:
    dataset: examples with a 1-D int "targets" feature of token ids (one per document).
    sequence_length: the task feature lengths; "inputs" sets the segment length and a
      given "targets" length must hold the targets (see `random_spans_helper`).
    output_features: the task's features; "targets" supplies the vocabulary (sentinels).
    noise_density: fraction of tokens corrupted.
    mean_noise_span_length: mean length of a corrupted span.
    documents_per_group: documents concatenated before cutting segments (T5: 128), so
      short documents fill whole segments.
  """
  if not sequence_length or not sequence_length.get("inputs"):
    raise SequenceLengthError(
        "Span corruption needs an 'inputs' length in the task feature lengths "
        "(TASK_FEATURE_LENGTHS, e.g. {'inputs': 512, 'targets': 114}).")
  inputs_length = sequence_length["inputs"]
  tokens_length, targets_length = random_spans_helper(
      inputs_length, noise_density, mean_noise_span_length)
  if sequence_length.get("targets") and sequence_length["targets"] < targets_length:
    raise SequenceLengthError(
        f"Span corruption with inputs length {inputs_length} makes targets of up to "
        f"{targets_length} tokens, but the 'targets' length is {sequence_length['targets']}. "
        f"Set TASK_FEATURE_LENGTHS['targets'] to at least {targets_length}.")
  vocabulary = output_features["targets"].vocabulary
  num_spans = _span_counts(tokens_length, noise_density, mean_noise_span_length)[1]
  if num_spans > vocabulary.extra_ids:
    raise SequenceLengthError(
        f"Inputs length {inputs_length} makes {num_spans} noise spans, more than the "
        f"{vocabulary.extra_ids} sentinels of the vocabulary. Lower the 'inputs' length or "
        "the noise density, or raise mean_noise_span_length.")

  @seqio.map_over_dataset(num_seeds=2)
  def corrupt(tokens: tf.Tensor, seeds) -> dict[str, tf.Tensor]:
    noise_mask = random_spans_noise_mask(
        tf.size(tokens), noise_density, mean_noise_span_length, seeds)
    return {"inputs": noise_span_to_unique_sentinel(tokens, noise_mask, vocabulary),
            "targets": nonnoise_span_to_unique_sentinel(tokens, noise_mask, vocabulary)}

  segments = _concatenate_and_split(dataset, "targets", tokens_length, documents_per_group)
  return corrupt(segments)
