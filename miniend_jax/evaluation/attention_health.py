"""Attention health: does every attention layer still look at more than one position, and
does the encoder's output still depend on its input?

A T5 whose attention has collapsed (each query puts almost all its weight on one key)
models span corruption well enough but finetunes badly: its encoder output barely
changes from one input to the next, so the decoder learns to answer the same thing for
every input, and a student distilled from it inherits the collapse. See
docs/method.md "Attention collapse" for the measurements and the cause.

Two numbers per attention layer, over the real (non-padding) query positions of a batch,
averaged over heads and examples:

- entropy: -sum_k p[k] log p[k] of each query's attention distribution, in nats;
- normalized entropy: the mean entropy divided by the mean of log(number of keys the
  query may attend to), so 1 is uniform attention and 0 is one key per query. Queries
  that can see a single key (the first position of decoder self-attention) are left out.

and one for the encoder: the mean cosine similarity between different examples'
mean-pooled encoder outputs (1: every input gives the same output direction).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from miniend_jax.model.config import T5Config
from miniend_jax.model.network import Transformer
from miniend_jax.taps import INTERMEDIATES, Tap, collect

# Normalized entropy under which a layer's attention counts as collapsed: a uniform
# distribution over 4 of 128 keys scores 0.29, a healthy pretrained T5 layer 0.6-0.95.
COLLAPSE_THRESHOLD = 0.25
ATTENTIONS = (("encoder", "self_attention"), ("decoder", "self_attention"),
              ("decoder", "cross_attention"))


def _taps(config: T5Config) -> list[Tap]:
  taps = []
  for stack, attention in ATTENTIONS:
    depth = config.num_encoder_layers if stack == "encoder" else config.num_decoder_layers
    taps += [Tap(stack, layer, f"{attention}_probs") for layer in range(depth)]
  return taps


def _entropy_sums(probs: jax.Array, query_valid: jax.Array, key_valid: jax.Array,
                  causal: bool) -> jax.Array:
  """[sum of entropies, sum of log(visible keys), count] over counted (head, query)s.

  probs: [batch, heads, q, k]; query_valid: [batch, q]; key_valid: [batch, k].
  """
  p = probs.astype(jnp.float32)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0),
                     axis=-1)  # [batch, heads, q]
  visible = jnp.broadcast_to(key_valid[:, None, :], (p.shape[0],) + p.shape[2:])
  if causal:
    visible = visible & jnp.tril(jnp.ones(p.shape[2:], bool))[None]
  keys = jnp.sum(visible, axis=-1).astype(jnp.float32)  # [batch, q]
  counted = (query_valid & (keys >= 2)).astype(jnp.float32)  # [batch, q]
  heads = p.shape[1]
  return jnp.stack([jnp.sum(entropy * counted[:, None, :]),
                    heads * jnp.sum(jnp.log(jnp.maximum(keys, 1.0)) * counted),
                    heads * jnp.sum(counted)])


@functools.partial(jax.jit, static_argnames="config")
def _statistics(config: T5Config, params, batch) -> dict[str, jax.Array]:
  encoder_tokens = batch["encoder_input_tokens"]
  targets = batch["decoder_target_tokens"]
  taps = _taps(config)

  def forward(module):
    encoded = module.encode(encoder_tokens, taps=taps)
    module.decode(encoded, encoder_tokens, batch["decoder_input_tokens"], targets,
                  taps=taps)
    return encoded

  encoded, state = Transformer(config).apply({"params": params}, method=forward,
                                             mutable=[INTERMEDIATES])
  sites = collect(state[INTERMEDIATES], taps, config)
  encoder_valid = encoder_tokens != config.pad_id
  decoder_valid = targets != config.pad_id
  sums = {}
  for tap in taps:
    attention = tap.kind.removesuffix("_probs")
    decoder_self = (tap.stack, attention) == ("decoder", "self_attention")
    sums[f"{tap.stack}_{attention}/{tap.layer}"] = _entropy_sums(
        sites[tap], encoder_valid if tap.stack == "encoder" else decoder_valid,
        decoder_valid if decoder_self else encoder_valid, causal=decoder_self)
  weights = encoder_valid.astype(jnp.float32)[..., None]
  pooled = jnp.sum(encoded.astype(jnp.float32) * weights, axis=1) / jnp.maximum(
      jnp.sum(weights, axis=1), 1.0)  # [batch, emb_dim]
  unit = pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
  cosine = unit @ unit.T  # [batch, batch]
  pairs = max(unit.shape[0] * (unit.shape[0] - 1), 1)
  return {"sums": sums, "encoder_output_cosine": (jnp.sum(cosine) - jnp.trace(cosine)) / pairs}


def attention_health(config: T5Config, params, batch) -> dict[str, float]:
  """{"attention_entropy/<stack>_<attention>/<layer>": nats,
  "attention_normalized_entropy/...": 0..1, "encoder_output_cosine": -1..1} of one batch
  (encoder_input_tokens, decoder_input_tokens, decoder_target_tokens; two or more
  examples for the cosine)."""
  statistics = jax.device_get(_statistics(config, params, batch))
  result = {}
  for site, (entropy_sum, log_keys_sum, count) in statistics["sums"].items():
    result[f"attention_entropy/{site}"] = float(entropy_sum / max(count, 1.0))
    result[f"attention_normalized_entropy/{site}"] = (
        float(entropy_sum / log_keys_sum) if log_keys_sum > 0 else float("nan"))
  result["encoder_output_cosine"] = float(statistics["encoder_output_cosine"])
  return result


def collapsed_layers(health: dict[str, float],
                     threshold: float = COLLAPSE_THRESHOLD) -> list[str]:
  """The encoder self-attention and cross-attention layers of `health` whose normalized
  entropy is below `threshold`.

  Decoder self-attention is reported but never flagged: over a short causal prefix a
  healthy decoder often attends to the previous token or two (its normalized entropy is
  0.3-0.5 in the quickstart's scratch student), while the input reaches the decoder only
  through the encoder and the cross-attention, where a collapse cuts it off.
  """
  prefixes = tuple(f"attention_normalized_entropy/{site}/"
                   for site in ("encoder_self_attention", "decoder_cross_attention"))
  return [name.removeprefix("attention_normalized_entropy/")
          for name, value in health.items() if name.startswith(prefixes) and value < threshold]
