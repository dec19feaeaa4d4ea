"""Beam search against greedy decoding, brute-force enumeration and teacher-forced scoring.

One tiny config with a 5-token vocabulary throughout (one compilation of each function per
shape): EOS is frequent, so finished hypotheses of every length and truncated ones occur
in each test, and brute force can enumerate every sequence.
"""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from miniend_jax.evaluation.beam_search import beam_search
from miniend_jax.evaluation.decoding import greedy_decode
from miniend_jax.model import Transformer, init_params, preset

VOCAB_SIZE = 5
CONFIG = preset("tiny", vocab_size=VOCAB_SIZE)
# The shape the teacher-forced reference pads its input to: one compilation.
REFERENCE_ROWS, REFERENCE_LENGTH = 512, 8


@jax.jit
def _params(rng):
  return nn.unbox(init_params(CONFIG, rng))


def _encoder_tokens(seed, batch=3, length=10):
  """Random encoder rows with three different amounts of padding."""
  tokens = np.random.default_rng(seed).integers(2, VOCAB_SIZE, (batch, length))
  tokens[1 % batch, 6:] = 0
  tokens[2 % batch, 3:] = 0
  return tokens


@jax.jit
def _token_log_probs(params, encoder_tokens, targets):
  """log p(targets[:, i] | targets[:, :i], encoder) [batch, length], one full forward pass."""
  inputs = jnp.pad(targets[:, :-1], ((0, 0), (1, 0)), constant_values=CONFIG.decoder_start_id)
  logits = Transformer(CONFIG).apply({"params": params}, encoder_tokens, inputs)
  log_probs = jax.nn.log_softmax(logits)  # [batch, length, vocab]
  return jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]


def _reference_scores(params, encoder_tokens, sequences, alpha):
  """Scores [n] of sequences [n, length] given encoder rows [n, encoder_length].

  The documented rule: the log-probability summed up to and including the first EOS (over
  all tokens without EOS), divided by the GNMT brevity penalty ((5 + n) / 6) ** alpha of
  that many tokens.
  """
  rows, length = sequences.shape
  # Trailing padding leaves the earlier positions' causal log-probs unchanged.
  padded = np.zeros((REFERENCE_ROWS, REFERENCE_LENGTH), np.int32)
  padded[:rows, :length] = sequences
  padded_encoder = np.zeros((REFERENCE_ROWS, encoder_tokens.shape[1]), np.int32)
  padded_encoder[:rows] = encoder_tokens
  token_log_probs = np.asarray(_token_log_probs(params, padded_encoder, padded),
                               np.float64)[:rows, :length]
  is_eos = sequences == CONFIG.eos_id
  lengths = np.where(is_eos.any(-1), is_eos.argmax(-1) + 1, length)
  counted = np.arange(length) < lengths[:, None]
  log_probs = np.where(counted, token_log_probs, 0.0).sum(-1)
  return log_probs / ((5.0 + lengths) / 6.0) ** alpha


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_one_beam_is_greedy_decoding(alpha):
  """num_beams=1 is greedy decoding token for token (transformers' convention), scored by
  the same length-penalised teacher-forced log-probability as every hypothesis."""
  length = 6
  for seed in range(3):
    params = _params(jax.random.key(seed))
    encoder = _encoder_tokens(seed)
    greedy = np.asarray(greedy_decode(CONFIG, params, jnp.asarray(encoder),
                                      max_decode_length=length))
    tokens, scores = beam_search(CONFIG, params, jnp.asarray(encoder),
                                 max_decode_length=length, num_beams=1, alpha=alpha)
    assert tokens.shape == (3, 1, length) and scores.shape == (3, 1)
    np.testing.assert_array_equal(np.asarray(tokens[:, 0]), greedy)
    np.testing.assert_allclose(np.asarray(scores[:, 0]),
                               _reference_scores(params, encoder, greedy, alpha=alpha),
                               atol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_enough_beams_find_the_brute_force_ranking(alpha):
  """With num_beams >= vocab_size ** (max_decode_length - 1) every prefix stays alive, so
  the search is exact: its hypotheses are the top num_beams of all distinct sequences."""
  length = 4
  num_beams = VOCAB_SIZE ** (length - 1)
  params = _params(jax.random.key(10))
  encoder = _encoder_tokens(10, batch=2)
  tokens, scores = beam_search(CONFIG, params, jnp.asarray(encoder), max_decode_length=length,
                               num_beams=num_beams, alpha=alpha)
  sequences = np.array(list(itertools.product(range(VOCAB_SIZE), repeat=length)))
  # Padding after the first EOS; sequences that differ only after it are one hypothesis.
  after_eos = np.cumsum(np.cumsum(sequences == CONFIG.eos_id, axis=1), axis=1) > 1
  distinct = np.unique(np.where(after_eos, CONFIG.pad_id, sequences), axis=0)
  assert len(distinct) > num_beams
  for row in range(encoder.shape[0]):
    row_encoder = np.repeat(encoder[row:row + 1], len(distinct), axis=0)
    reference = _reference_scores(params, row_encoder, distinct, alpha)
    order = np.argsort(-reference)[:num_beams]
    np.testing.assert_allclose(np.asarray(scores[row]), reference[order], atol=1e-5)
    # Hypotheses whose scores tie within float32 noise may come in either order, so each
    # returned sequence is checked against its own reference score, and all are distinct.
    found = np.asarray(tokens[row])
    index = {tuple(sequence): i for i, sequence in enumerate(distinct)}
    found_scores = reference[[index[tuple(sequence)] for sequence in found]]
    np.testing.assert_allclose(found_scores, np.asarray(scores[row]), atol=1e-5)
    assert len({tuple(sequence) for sequence in found}) == num_beams


def _step_by_step_beam_search(params, encoder_row, num_beams, length, alpha):
  """The documented search in NumPy, without early stopping: -> [(tokens, score)], best first.

  Each step scores every alive prefix extended by every token with a full forward pass;
  EOS extensions join the finished hypotheses, the num_beams most likely others stay
  alive, and at the last step the alive ones are finished as they are.
  """
  alive, finished = [()], []
  for step in range(length):
    extended = np.array([prefix + (token,) for prefix in alive for token in range(VOCAB_SIZE)])
    row_encoder = np.repeat(encoder_row[None], len(extended), axis=0)
    log_probs = _reference_scores(params, row_encoder, extended, alpha=0.0)
    ends = extended[:, -1] == CONFIG.eos_id
    finished += [(tuple(sequence), log_prob / ((5.0 + step + 1) / 6.0) ** alpha)
                 for sequence, log_prob in zip(extended[ends], log_probs[ends])]
    order = np.argsort(-log_probs[~ends])[:num_beams]
    alive = [tuple(sequence) for sequence in extended[~ends][order]]
    if step == length - 1:
      finished += [(sequence, log_prob / ((5.0 + length) / 6.0) ** alpha)
                   for sequence, log_prob in zip(alive, log_probs[~ends][order])]
  best = sorted(finished, key=lambda hypothesis: -hypothesis[1])[:num_beams]
  return [(np.pad(sequence, (0, length - len(sequence))), score) for sequence, score in best]


@pytest.mark.parametrize("num_beams,alpha", [(4, 0.0), (4, 0.6), (4, 2.0), (2, 4.0)])
def test_equals_a_step_by_step_search_without_early_stopping(num_beams, alpha):
  """Few beams (an inexact search) on a model whose finished hypotheses end the search
  before max_decode_length: the same hypotheses and scores as the plain search. With
  alpha = 4 a stop rule that ignored the larger penalty of longer hypotheses would stop
  too early."""
  params = _params(jax.random.key(1))
  encoder = np.random.default_rng(1).integers(2, VOCAB_SIZE, (3, 10))
  tokens, scores = beam_search(CONFIG, params, jnp.asarray(encoder), max_decode_length=6,
                               num_beams=num_beams, alpha=alpha)
  for row in range(3):
    expected = _step_by_step_beam_search(params, encoder[row], num_beams, 6, alpha)
    np.testing.assert_array_equal(np.asarray(tokens[row]), [t for t, _ in expected])
    np.testing.assert_allclose(np.asarray(scores[row]), [s for _, s in expected], atol=1e-5)


@pytest.fixture(scope="module")
def searched():
  """A beam search of 3 rows, 4 beams, 6 tokens: params, encoder tokens, tokens, scores."""
  params = _params(jax.random.key(20))
  encoder = _encoder_tokens(20)
  tokens, scores = beam_search(CONFIG, params, jnp.asarray(encoder), max_decode_length=6,
                               num_beams=4, alpha=0.6)
  return params, encoder, np.asarray(tokens), np.asarray(scores)


def test_scores_sorted_padded_and_equal_teacher_forced_scoring(searched):
  params, encoder, tokens, scores = searched
  assert tokens.shape == (3, 4, 6) and scores.shape == (3, 4)
  assert np.all(np.diff(scores, axis=1) <= 0)
  for row in tokens:
    assert len(np.unique(row, axis=0)) == 4  # distinct hypotheses
  flat = tokens.reshape(12, 6)
  is_eos = flat == CONFIG.eos_id
  after_eos = np.cumsum(np.cumsum(is_eos, axis=1), axis=1) > 1
  assert np.all(flat[after_eos] == CONFIG.pad_id)
  assert is_eos.any(1).any() and not is_eos.any(1).all()  # finished and truncated ones
  reference = _reference_scores(params, np.repeat(encoder, 4, axis=0), flat, alpha=0.6)
  np.testing.assert_allclose(scores.reshape(12), reference, atol=1e-5)


def test_batch_rows_are_independent(searched):
  params, encoder, tokens, scores = searched
  for row in range(encoder.shape[0]):
    alone_tokens, alone_scores = beam_search(
        CONFIG, params, jnp.asarray(encoder[row:row + 1]), max_decode_length=6, num_beams=4,
        alpha=0.6)
    np.testing.assert_array_equal(np.asarray(alone_tokens)[0], tokens[row])
    np.testing.assert_allclose(np.asarray(alone_scores)[0], scores[row], atol=1e-5)


def test_fewer_hypotheses_than_beams_are_padded_with_minus_infinity(searched):
  """One token of a 5-token vocabulary makes 5 hypotheses; the other 3 beams are empty."""
  params, encoder, _, _ = searched
  tokens, scores = beam_search(CONFIG, params, jnp.asarray(encoder), max_decode_length=1,
                               num_beams=8, alpha=0.6)
  for row in range(3):
    every_token = np.arange(VOCAB_SIZE)[:, None]
    reference = _reference_scores(params, np.repeat(encoder[row:row + 1], VOCAB_SIZE, axis=0),
                                  every_token, alpha=0.6)
    order = np.argsort(-reference)
    np.testing.assert_array_equal(np.asarray(tokens[row]),
                                  np.pad(every_token[order], ((0, 3), (0, 0))))
    np.testing.assert_allclose(np.asarray(scores[row, :VOCAB_SIZE]), reference[order],
                               atol=1e-5)
    assert np.all(np.isneginf(np.asarray(scores[row, VOCAB_SIZE:])))


@pytest.mark.parametrize("setting,value", [("num_beams", 0), ("num_beams", -2),
                                           ("num_beams", 2.0), ("max_decode_length", 0)])
def test_bad_settings_raise(searched, setting, value):
  params, encoder, _, _ = searched
  settings = {"max_decode_length": 4, "num_beams": 2, setting: value}
  with pytest.raises(ValueError, match=f"{setting} must be a positive integer"):
    beam_search(CONFIG, params, jnp.asarray(encoder), **settings)


def test_encoder_tokens_must_be_a_batch(searched):
  params, encoder, _, _ = searched
  with pytest.raises(ValueError, match=r"encoder_input_tokens must be \[batch, length\]"):
    beam_search(CONFIG, params, jnp.asarray(encoder[0]), max_decode_length=4)
