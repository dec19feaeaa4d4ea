"""Beam search with the key/value cache and t5x's length penalty.

The search follows t5x's beam search: `num_beams` alive hypotheses (no EOS yet), ranked
by log-probability, are extended every step; hypotheses that emit EOS move to a separate
set of `num_beams` finished ones, ranked by length-penalised score. The loop stops once no
alive hypothesis can still beat the worst finished one, or at `max_decode_length`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from miniend_jax.evaluation.decoding import (decode_step, greedy_decode, init_cache,
                                             sequence_log_likelihood)
from miniend_jax.model.config import T5Config
from miniend_jax.model.network import Transformer


def _length_penalty(length: jax.Array, alpha: jax.Array) -> jax.Array:
  """Brevity penalty of Wu et al. 2016 (GNMT, eq. 14): ((5 + length) / 6) ** alpha."""
  return ((5.0 + length) / 6.0) ** alpha


@functools.partial(jax.jit, static_argnames=("config", "max_decode_length", "num_beams"))
def beam_search(config: T5Config, params, encoder_input_tokens: jax.Array, *,
                max_decode_length: int, num_beams: int = 4,
                alpha: float = 0.6) -> tuple[jax.Array, jax.Array]:
  """Beam search: -> (tokens [batch, num_beams, max_decode_length], scores [batch, num_beams]).

  Hypotheses come best first. Tokens exclude the decoder start token and hold padding
  (`config.pad_id`) after EOS. Rows of the batch are searched independently, in parallel.

  Scoring convention (t5x): a hypothesis y_1..y_n scores
    log p(y_1..y_n | x) / ((5 + n) / 6) ** alpha,
  where n counts the generated tokens including EOS. A hypothesis that has not emitted
  EOS by `max_decode_length` is scored with n = max_decode_length. alpha = 0 ranks by
  log-probability; larger alpha favours longer outputs. When a row has fewer than
  `num_beams` distinct hypotheses (tiny vocabulary and length), the missing ones are
  all padding with score -inf.

  `num_beams=1` is greedy decoding, scored with the same convention (as in transformers,
  where one beam means greedy search). A one-beam t5x search is not greedy: it also keeps
  the EOS extension greedy passes over as a finished hypothesis, which can outscore
  greedy's output.

  Each step, every alive hypothesis's EOS extension is offered to the finished set (t5x
  offers only those among the 2 * num_beams most likely extensions); the `num_beams` most
  likely non-EOS extensions stay alive. At the last step the alive extensions are
  finished as they are. The search stops early once, in every row, the best score any
  alive hypothesis could still reach is no better than the worst finished score: its
  log-probability can only fall, so it is bounded by the current log-probability under the
  largest penalty of the lengths it could end with.

  Args:
    config: the model architecture (static).
    params: the model parameters (unboxed).
    encoder_input_tokens: int [batch, encoder_length], padding `config.pad_id`.
    max_decode_length: the most tokens a hypothesis may hold (static).
    num_beams: hypotheses kept alive and returned per row (static).
    alpha: the length penalty exponent (traced: changing it does not recompile).

  Returns:
    tokens: int32 [batch, num_beams, max_decode_length], best hypothesis first.
    scores: float32 [batch, num_beams], length-penalised, sorted descending.

  Raises:
    ValueError: num_beams or max_decode_length is not a positive integer, or the
      encoder tokens are not [batch, length].
  """
  for name, value in (("num_beams", num_beams), ("max_decode_length", max_decode_length)):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ValueError(f"beam_search: {name} must be a positive integer, got {value!r}.")
  if encoder_input_tokens.ndim != 2:
    raise ValueError(
        "beam_search: encoder_input_tokens must be [batch, length], got shape "
        f"{encoder_input_tokens.shape}.")
  batch, length, beams = encoder_input_tokens.shape[0], max_decode_length, num_beams
  alpha = jnp.asarray(alpha, jnp.float32)
  if num_beams == 1:
    tokens = greedy_decode(config, params, encoder_input_tokens,
                           max_decode_length=max_decode_length)  # [batch, length]
    is_eos = tokens == config.eos_id
    generated = jnp.where(jnp.any(is_eos, axis=1), jnp.argmax(is_eos, axis=1) + 1, length)
    log_prob = sequence_log_likelihood(config, params, encoder_input_tokens, tokens)
    scores = log_prob / _length_penalty(generated.astype(jnp.float32), alpha)
    return tokens[:, None, :], scores[:, None]
  model = Transformer(config)
  encoded = model.apply({"params": params}, encoder_input_tokens, method=Transformer.encode)
  # Row b * beams + k of the flattened batch is beam k of row b.
  encoded = jnp.repeat(encoded, beams, axis=0)  # [batch * beams, encoder_length, embed]
  encoder_tokens = jnp.repeat(encoder_input_tokens, beams, axis=0)
  cache = init_cache(config, params, encoded, encoder_tokens, length)
  positions = jnp.arange(length)

  def write(tokens, step, new):  # tokens [batch, n, length], new [batch, n]
    return jnp.where(positions == step, new[:, :, None], tokens)

  def gather(values, indices):  # values [batch, n, ...], indices [batch, m] -> [batch, m, ...]
    return jax.vmap(lambda row, index: row[index])(values, indices)

  def can_improve(state):
    step, _, _, alive_log_probs, _, finished_scores = state
    # A log-probability (<= 0) divided by the largest penalty it can still get.
    largest_penalty = jnp.maximum(_length_penalty(step + 1.0, alpha),
                                  _length_penalty(float(length), alpha))
    best_alive = jnp.max(alive_log_probs, axis=1) / largest_penalty  # [batch]
    worst_finished = jnp.min(finished_scores, axis=1)  # [batch], -inf until beams finish
    return jnp.logical_and(step < length, jnp.any(best_alive > worst_finished))

  def step_fn(state):
    step, cache, alive_tokens, alive_log_probs, finished_tokens, finished_scores = state
    previous = jnp.where(step == 0, config.decoder_start_id,
                         alive_tokens[:, :, jnp.maximum(step - 1, 0)])  # [batch, beams]
    logits, cache = decode_step(config, params, cache, encoded, encoder_tokens,
                                previous.reshape(batch * beams, 1), length)
    log_probs = jax.nn.log_softmax(logits).reshape(batch, beams, -1)  # [batch, beams, vocab]
    candidates = alive_log_probs[:, :, None] + log_probs  # [batch, beams, vocab]
    vocab = candidates.shape[-1]

    # Every EOS extension is a finished candidate of n = step + 1 tokens.
    eos_tokens = write(alive_tokens, step, jnp.full((batch, beams), config.eos_id))
    eos_scores = candidates[:, :, config.eos_id] / _length_penalty(step + 1.0, alpha)

    # The most likely non-EOS extensions stay alive.
    continuing = candidates.at[:, :, config.eos_id].set(-jnp.inf)
    alive_log_probs, flat = lax.top_k(continuing.reshape(batch, beams * vocab), beams)
    parents, chosen = flat // vocab, flat % vocab  # [batch, beams]
    alive_tokens = write(gather(alive_tokens, parents), step, chosen)
    rows = (jnp.arange(batch)[:, None] * beams + parents).reshape(-1)  # [batch * beams]
    cache = jax.tree.map(lambda x: x if x.ndim == 0 else x[rows], cache)

    # At the last step the alive hypotheses are finished without EOS.
    truncated_scores = jnp.where(step + 1 == length,
                                 alive_log_probs / _length_penalty(float(length), alpha),
                                 -jnp.inf)
    pool_tokens = jnp.concatenate([finished_tokens, eos_tokens, alive_tokens], axis=1)
    pool_scores = jnp.concatenate([finished_scores, eos_scores, truncated_scores], axis=1)
    finished_scores, best = lax.top_k(pool_scores, beams)  # [batch, beams]
    finished_tokens = gather(pool_tokens, best)  # [batch, beams, length]
    return (step + 1, cache, alive_tokens, alive_log_probs, finished_tokens,
            finished_scores)

  pad_tokens = jnp.full((batch, beams, length), config.pad_id, jnp.int32)
  # Only beam 0 starts alive, so the first step does not extend copies of one prefix.
  initial_log_probs = jnp.where(jnp.arange(beams) == 0, 0.0, -jnp.inf).astype(jnp.float32)
  state = (jnp.array(0, jnp.int32), cache, pad_tokens,
           jnp.broadcast_to(initial_log_probs, (batch, beams)), pad_tokens,
           jnp.full((batch, beams), -jnp.inf, jnp.float32))
  *_, tokens, scores = lax.while_loop(can_improve, step_fn, state)
  tokens = jnp.where(jnp.isneginf(scores)[:, :, None], config.pad_id, tokens)
  return tokens, scores
