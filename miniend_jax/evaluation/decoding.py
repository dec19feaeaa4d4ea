"""Autoregressive decoding with the key/value cache."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from miniend_jax.model.config import T5Config
from miniend_jax.model.network import Transformer


def init_cache(config: T5Config, params, encoded: jax.Array, encoder_input_tokens: jax.Array,
               max_decode_length: int):
  """An empty self-attention cache for `max_decode_length` decoder positions."""
  batch = encoder_input_tokens.shape[0]
  _, variables = Transformer(config).apply(
      {"params": params}, encoded, encoder_input_tokens,
      jnp.zeros((batch, max_decode_length), jnp.int32), decode=True,
      max_decode_length=max_decode_length, method=Transformer.decode, mutable=["cache"])
  return variables["cache"]


def decode_step(config: T5Config, params, cache, encoded: jax.Array,
                encoder_input_tokens: jax.Array, tokens: jax.Array, max_decode_length: int):
  """One cached step: tokens [batch, 1] -> (float32 logits [batch, vocab], new cache)."""
  logits, variables = Transformer(config).apply(
      {"params": params, "cache": cache}, encoded, encoder_input_tokens, tokens,
      decode=True, max_decode_length=max_decode_length, method=Transformer.decode,
      mutable=["cache"])
  return logits[:, 0], variables["cache"]


@functools.partial(jax.jit, static_argnames=("config", "max_decode_length"))
def greedy_decode(config: T5Config, params, encoder_input_tokens: jax.Array, *,
                  max_decode_length: int) -> jax.Array:
  """Greedy decoding: -> tokens [batch, max_decode_length] (start token excluded).

  Decoding starts from `config.decoder_start_id`; after a row emits EOS it is filled with
  padding, and the loop stops early once every row has emitted EOS.
  """
  model = Transformer(config)
  batch = encoder_input_tokens.shape[0]
  encoded = model.apply({"params": params}, encoder_input_tokens, method=Transformer.encode)
  cache = init_cache(config, params, encoded, encoder_input_tokens, max_decode_length)

  def not_finished(state):
    step, _, _, _, done = state
    return jnp.logical_and(step < max_decode_length, jnp.logical_not(jnp.all(done)))

  def step_fn(state):
    step, cache, tokens, previous, done = state
    logits, cache = decode_step(config, params, cache, encoded, encoder_input_tokens,
                                previous[:, None], max_decode_length)
    chosen = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    chosen = jnp.where(done, config.pad_id, chosen)
    tokens = lax.dynamic_update_slice_in_dim(tokens, chosen[:, None], step, axis=1)
    return step + 1, cache, tokens, chosen, jnp.logical_or(done, chosen == config.eos_id)

  state = (jnp.array(0, jnp.int32), cache,
           jnp.full((batch, max_decode_length), config.pad_id, jnp.int32),
           jnp.full((batch,), config.decoder_start_id, jnp.int32),
           jnp.zeros((batch,), jnp.bool_))
  return lax.while_loop(not_finished, step_fn, state)[2]


@functools.partial(jax.jit, static_argnames="config")
def sequence_log_likelihood(config: T5Config, params, encoder_input_tokens: jax.Array,
                            target_tokens: jax.Array) -> jax.Array:
  """log p(targets | inputs) by teacher forcing: [batch].

  `target_tokens` [batch, length] are decoded tokens or padded labels. A row counts its
  tokens up to and including its first EOS, except trailing padding; a padding id that a
  model generated before its EOS counts like any token.
  """
  length = target_tokens.shape[1]
  decoder_input = jnp.concatenate(
      [jnp.full_like(target_tokens[:, :1], config.decoder_start_id), target_tokens[:, :-1]],
      axis=1)
  # No target padding mask: causal attention already keeps later positions out.
  logits = Transformer(config).apply({"params": params}, encoder_input_tokens, decoder_input)
  log_probs = jax.nn.log_softmax(logits, axis=-1)  # [batch, length, vocab]
  token = jnp.take_along_axis(log_probs, target_tokens[..., None], axis=-1)[..., 0]
  positions = jnp.arange(length)
  is_eos = target_tokens == config.eos_id
  through_eos = jnp.where(jnp.any(is_eos, axis=1), jnp.argmax(is_eos, axis=1) + 1, length)
  not_pad = target_tokens != config.pad_id
  last_token = length - jnp.argmax(not_pad[:, ::-1], axis=1)  # 1 + index of the last one
  last_token = jnp.where(jnp.any(not_pad, axis=1), last_token, 0)
  counted = (positions < through_eos[:, None]) & (positions < last_token[:, None])
  return jnp.sum(jnp.where(counted, token, 0.0), axis=-1)
