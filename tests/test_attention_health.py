"""Attention health: entropies against a NumPy recomputation, the uniform and collapsed
extremes, and the encoder-output cosine."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from miniend_jax.evaluation.attention_health import (COLLAPSE_THRESHOLD, attention_health,
                                                     collapsed_layers)
from miniend_jax.model import Transformer, init_params, preset
from miniend_jax.taps import Tap, collect

CONFIG = preset("tiny", num_encoder_layers=2, num_decoder_layers=2, num_heads=2,
                head_dim=8)
BATCH, ENCODER_LENGTH, DECODER_LENGTH = 3, 10, 6


@pytest.fixture(scope="module")
def params():
  return nn.unbox(init_params(CONFIG, jax.random.key(0)))


@pytest.fixture(scope="module")
def batch():
  rng = np.random.default_rng(0)
  encoder = rng.integers(2, CONFIG.vocab_size, (BATCH, ENCODER_LENGTH))
  encoder[1, 7:] = 0
  targets = rng.integers(2, CONFIG.vocab_size, (BATCH, DECODER_LENGTH))
  targets[2, 4:] = 0
  decoder = np.concatenate([np.zeros((BATCH, 1), np.int64), targets[:, :-1]], axis=1)
  decoder[2, 5:] = 0
  return {"encoder_input_tokens": encoder, "decoder_input_tokens": decoder,
          "decoder_target_tokens": targets}


def _numpy_entropies(params, batch):
  """{site: (mean entropy, normalized entropy)} from the probs taps, in NumPy."""
  taps = [Tap(stack, layer, f"{attention}_probs") for stack, attention in (
      ("encoder", "self_attention"), ("decoder", "self_attention"),
      ("decoder", "cross_attention")) for layer in range(2)]
  _, state = Transformer(CONFIG).apply(
      {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
      batch["decoder_target_tokens"], taps=taps, mutable=["intermediates"])
  sites = collect(state["intermediates"], taps, CONFIG)
  encoder_valid = batch["encoder_input_tokens"] != 0
  decoder_valid = batch["decoder_target_tokens"] != 0
  result = {}
  for tap in taps:
    probs = np.asarray(sites[tap], np.float64)
    entropies, log_keys = [], []
    attention = tap.kind.removesuffix("_probs")
    for b in range(BATCH):
      queries = encoder_valid[b] if tap.stack == "encoder" else decoder_valid[b]
      for q in np.flatnonzero(queries):
        if attention == "self_attention" and tap.stack == "decoder":
          keys = int(np.sum(decoder_valid[b, :q + 1]))
        else:
          keys = int(np.sum(encoder_valid[b]))
        if keys < 2:
          continue
        for h in range(CONFIG.num_heads):
          p = probs[b, h, q][probs[b, h, q] > 0]
          entropies.append(-np.sum(p * np.log(p)))
          log_keys.append(np.log(keys))
    result[f"{tap.stack}_{attention}/{tap.layer}"] = (
        np.mean(entropies), np.sum(entropies) / np.sum(log_keys))
  return result


def test_entropies_match_numpy(params, batch):
  health = attention_health(CONFIG, params, batch)
  expected = _numpy_entropies(params, batch)
  assert len(expected) == 6
  for site, (entropy, normalized) in expected.items():
    assert health[f"attention_entropy/{site}"] == pytest.approx(entropy, rel=1e-5)
    assert health[f"attention_normalized_entropy/{site}"] == pytest.approx(normalized,
                                                                           rel=1e-5)


def _scaled_queries(params, factor):
  def scale(path, leaf):
    names = [getattr(k, "key", "") for k in path]
    return leaf * factor if "query" in names else leaf
  return jax.tree_util.tree_map_with_path(scale, params)


def _zero_position_bias(params):
  def zero(path, leaf):
    names = [getattr(k, "key", "") for k in path]
    return leaf * 0 if "relpos_bias" in names else leaf
  return jax.tree_util.tree_map_with_path(zero, params)


def test_uniform_attention_scores_one(params, batch):
  # No query and no position bias: every query spreads evenly over the keys it may see.
  uniform = _zero_position_bias(_scaled_queries(params, 0.0))
  health = attention_health(CONFIG, uniform, batch)
  normalized = {k: v for k, v in health.items() if k.startswith("attention_normalized")}
  assert len(normalized) == 6
  assert all(v == pytest.approx(1.0, abs=1e-5) for v in normalized.values())
  assert collapsed_layers(health) == []


def test_large_queries_collapse_attention(params, batch):
  collapsed = attention_health(CONFIG, _scaled_queries(params, 300.0), batch)
  assert max(v for k, v in collapsed.items()
             if k.startswith("attention_normalized")) < COLLAPSE_THRESHOLD
  # Flagged: encoder self-attention and cross-attention (decoder self-attention is not).
  assert sorted(collapsed_layers(collapsed)) == [
      "decoder_cross_attention/0", "decoder_cross_attention/1", "encoder_self_attention/0",
      "encoder_self_attention/1"]


def test_encoder_output_cosine(params, batch):
  health = attention_health(CONFIG, params, batch)
  encoded = Transformer(CONFIG).apply({"params": params}, batch["encoder_input_tokens"],
                                      method=Transformer.encode)
  valid = (batch["encoder_input_tokens"] != 0)[..., None]
  pooled = np.sum(np.asarray(encoded) * valid, axis=1) / valid.sum(axis=1)
  unit = pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)
  cosine = unit @ unit.T
  expected = (cosine.sum() - np.trace(cosine)) / (BATCH * (BATCH - 1))
  assert health["encoder_output_cosine"] == pytest.approx(expected, rel=1e-4)
  same = {k: np.repeat(v[:1], BATCH, axis=0) for k, v in batch.items()}
  assert attention_health(CONFIG, params, same)["encoder_output_cosine"] == pytest.approx(
      1.0, abs=1e-5)
