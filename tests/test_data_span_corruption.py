"""Span corruption: lengths (docs/data.md, "Span corruption"), masks, sentinels, preprocessor."""

import numpy as np
import pytest
import seqio
import tensorflow as tf

from miniend_jax.data import span_corruption as sc
from miniend_jax.data.errors import SequenceLengthError
from miniend_jax.data.vocabulary import load_vocabulary

DENSITY, MEAN = 0.15, 3.0


@pytest.fixture(scope="module")
def vocabulary(sentencepiece_model):
  return load_vocabulary(sentencepiece_model)


def _method_helper(inputs_length, density=DENSITY, mean=MEAN):
  """The largest n whose corrupted input fits: docs/data.md, "Span corruption", literally."""
  def lengths(n):
    noise = round(n * density)
    spans = round(noise / mean)
    return n - noise + spans + 1, noise + spans + 1
  n = max(n for n in range(1, 2 * inputs_length) if lengths(n)[0] <= inputs_length)
  return n, lengths(n)[1]


@pytest.mark.parametrize("inputs_length,tokens_length,targets_length",
                         [(512, 568, 114), (1024, 1137, 229), (256, 284, 58)])
def test_random_spans_helper_known_values(inputs_length, tokens_length, targets_length):
  assert sc.random_spans_helper(inputs_length, DENSITY, MEAN) == (tokens_length,
                                                                  targets_length)


def test_random_spans_helper_matches_method_formula():
  # Our helper clips the counts as the mask does; at realistic lengths that changes nothing.
  for inputs_length in range(16, 1100, 37):
    assert sc.random_spans_helper(inputs_length) == _method_helper(inputs_length)
  assert sc.random_spans_helper(64, 0.5, 2.0) == _method_helper(64, 0.5, 2.0)


def test_sentinels_replace_spans_on_hand_made_mask(vocabulary):
  tokens = np.arange(10, 20, dtype=np.int32)
  mask = np.array([0, 1, 1, 0, 0, 1, 0, 0, 1, 1], bool)
  extra_id = lambda i: vocabulary.vocab_size - 1 - i
  inputs = sc.noise_span_to_unique_sentinel(tokens, mask, vocabulary).numpy()
  targets = sc.nonnoise_span_to_unique_sentinel(tokens, mask, vocabulary).numpy()
  np.testing.assert_array_equal(
      inputs, [10, extra_id(0), 13, 14, extra_id(1), 16, 17, extra_id(2)])
  np.testing.assert_array_equal(
      targets, [extra_id(0), 11, 12, extra_id(1), 15, extra_id(2), 18, 19])
  # The ids are seqio's own <extra_id_i> pieces: 1000 pieces + 100 sentinels.
  assert vocabulary.vocab_size == 1100
  assert vocabulary.encode("<extra_id_0>") == [extra_id(0)] == [1099]
  assert vocabulary.encode("<extra_id_2>") == [extra_id(2)]


@tf.function
def _mask(length, seed):
  seeds = tf.random.experimental.stateless_split(seed, 2)
  return sc.random_spans_noise_mask(length, DENSITY, MEAN, seeds)


@pytest.mark.parametrize("length", [2, 3, 10, 37, 100, 568])
def test_noise_mask_counts_and_shape_over_many_seeds(length):
  num_noise = min(max(round(length * DENSITY), 1), length - 1)
  num_spans = min(max(round(num_noise / MEAN), 1), length - num_noise)
  position_noise = np.zeros(length)
  for seed in range(150):
    mask = _mask(length, tf.constant([seed, 7])).numpy()
    starts = np.flatnonzero(mask & ~np.r_[False, mask[:-1]])
    assert mask.shape == (length,)
    assert mask.sum() == num_noise
    assert len(starts) == num_spans
    assert not mask[0] and mask[-1]
    position_noise += mask
  if length == 568:
    assert abs(num_noise / num_spans - MEAN) < 0.1  # 85 noise tokens in 28 spans
    inner = position_noise[1:-10] / 150  # Away from the always-noise end.
    assert abs(inner.mean() - DENSITY) < 0.02


def test_noise_span_lengths_average_the_setting():
  lengths = []
  for seed in range(100):
    mask = _mask(200, tf.constant([seed, 1])).numpy()
    edges = np.diff(np.r_[0, mask.astype(int), 0])
    lengths += list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))
  assert abs(np.mean(lengths) - MEAN) < 0.1
  assert len(set(lengths)) > 3  # Random lengths, not a fixed pattern.


def test_same_seed_same_mask_other_seed_other_mask():
  first = _mask(100, tf.constant([3, 4])).numpy()
  np.testing.assert_array_equal(first, _mask(100, tf.constant([3, 4])).numpy())
  assert (first != _mask(100, tf.constant([5, 4])).numpy()).any()


def _documents():
  lengths = [7, 120, 3, 45, 60, 1, 33]
  start = np.cumsum([0] + lengths)
  return [np.arange(s, s + n, dtype=np.int32) + 3 for s, n in zip(start, lengths)]


def _corrupted(vocabulary, seed, inputs_length=32, documents_per_group=3):
  dataset = tf.data.Dataset.from_generator(
      lambda: ({"targets": d} for d in _documents()),
      output_signature={"targets": tf.TensorSpec([None], tf.int32)})
  features = {"targets": seqio.Feature(vocabulary), "inputs": seqio.Feature(vocabulary)}
  with seqio.utils.map_seed_manager(seed):
    dataset = sc.span_corruption(dataset, {"inputs": inputs_length, "targets": 32}, features,
                                 documents_per_group=documents_per_group)
  return [{k: v.numpy() for k, v in example.items()} for example in dataset]


def _uncorrupt(inputs, targets, first_sentinel):
  """The raw segment, rebuilt by putting each target span back at its sentinel."""
  spans, current = {}, None
  for token in targets:
    if token >= first_sentinel:
      current = token
      spans[current] = []
    else:
      spans[current].append(token)
  out = []
  for token in inputs:
    out.extend(spans[token] if token >= first_sentinel else [token])
  return out


def test_span_corruption_preprocessor_rebuilds_the_documents(vocabulary):
  examples = _corrupted(vocabulary, seed=11)
  tokens_length, targets_length = sc.random_spans_helper(32)
  first_sentinel = vocabulary.vocab_size - vocabulary.extra_ids
  rebuilt = [_uncorrupt(e["inputs"], e["targets"], first_sentinel) for e in examples]
  # Documents are joined in groups of 3, each group cut into segments of tokens_length;
  # the 1-token tail of the last group is dropped.
  groups = [np.concatenate(_documents()[i:i + 3]) for i in range(0, 7, 3)]
  expected = [g[i:i + tokens_length].tolist() for g in groups
              for i in range(0, len(g), tokens_length) if len(g[i:i + tokens_length]) >= 2]
  assert rebuilt == expected
  for example in examples:
    assert len(example["inputs"]) + 1 <= 32  # EOS still fits.
    assert len(example["targets"]) + 1 <= targets_length
    assert example["targets"][0] == vocabulary.vocab_size - 1  # Starts with <extra_id_0>.
    assert example["inputs"][0] < first_sentinel  # The first token is never noise.


def test_span_corruption_preprocessor_is_seeded(vocabulary):
  first, again, other = (_corrupted(vocabulary, seed) for seed in (5, 5, 6))
  same = lambda a, b: all((x["inputs"] == y["inputs"]).all() for x, y in zip(a, b))
  assert len(first) == len(again) and same(first, again)
  assert not same(first, other)


def test_too_short_sequence_length_is_a_clear_error(vocabulary):
  features = {"targets": seqio.Feature(vocabulary)}
  dataset = tf.data.Dataset.from_tensors({"targets": tf.range(10)})
  with pytest.raises(SequenceLengthError, match="cannot hold one corrupted span.*at least 3"):
    sc.span_corruption(dataset, {"inputs": 2, "targets": 10}, features)
  with pytest.raises(SequenceLengthError, match=r"TASK_FEATURE_LENGTHS\['targets'\].*114"):
    sc.span_corruption(dataset, {"inputs": 512, "targets": 100}, features)
  with pytest.raises(SequenceLengthError, match="'inputs' length"):
    sc.span_corruption(dataset, None, features)
  with pytest.raises(SequenceLengthError, match="227 noise spans.*100 sentinels"):
    sc.span_corruption(dataset, {"inputs": 4096, "targets": 1024}, features)
  with pytest.raises(ValueError, match="noise_density"):
    sc.random_spans_helper(512, noise_density=1.5)
