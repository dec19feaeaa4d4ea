"""Layer-mapping hooks: requested sites only, documented shapes, values that recombine."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from miniend_jax.model import Transformer, init_params, preset
from miniend_jax.taps import Tap, TapError, TapPlan, collect

CONFIG = preset("tiny", num_encoder_layers=3, num_decoder_layers=2, num_heads=2,
                head_dim=12)  # heads * head_dim = 24 != emb_dim = 32
BATCH, ENCODER_LENGTH, DECODER_LENGTH = 2, 11, 7


@pytest.fixture(scope="module")
def params():
  return nn.unbox(init_params(CONFIG, jax.random.key(0)))


@pytest.fixture(scope="module")
def batch():
  rng = np.random.default_rng(0)
  encoder = rng.integers(2, CONFIG.vocab_size, (BATCH, ENCODER_LENGTH))
  encoder[1, 8:] = 0
  decoder = rng.integers(2, CONFIG.vocab_size, (BATCH, DECODER_LENGTH))
  decoder[:, 0] = 0
  targets = np.concatenate([decoder[:, 1:], np.ones((BATCH, 1), np.int64)], axis=1)
  return jnp.asarray(encoder), jnp.asarray(decoder), jnp.asarray(targets)


@functools.partial(jax.jit, static_argnames="taps")
def run(params, encoder, decoder, targets, taps):
  return Transformer(CONFIG).apply({"params": params}, encoder, decoder, targets,
                                   taps=taps, mutable=["intermediates"])


ALL_KINDS = [Tap("encoder", 0, kind) for kind in
             ("self_attention_q", "self_attention_k", "self_attention_v",
              "self_attention_probs", "hidden")] + \
            [Tap("decoder", -1, kind) for kind in
             ("self_attention_q", "self_attention_k", "self_attention_v",
              "self_attention_probs", "cross_attention_q", "cross_attention_k",
              "cross_attention_v", "cross_attention_probs", "hidden", "logits")]


def test_requested_sites_have_documented_shapes(params, batch):
  taps = tuple(ALL_KINDS)
  logits, state = run(params, *batch, taps=taps)
  sites = collect(state["intermediates"], taps, CONFIG)
  joined = CONFIG.num_heads * CONFIG.head_dim
  expected = {
      "encoder:self_attention_q": (BATCH, ENCODER_LENGTH, joined),
      "encoder:self_attention_k": (BATCH, ENCODER_LENGTH, joined),
      "encoder:self_attention_v": (BATCH, ENCODER_LENGTH, joined),
      "encoder:self_attention_probs": (BATCH, CONFIG.num_heads, ENCODER_LENGTH,
                                       ENCODER_LENGTH),
      "encoder:hidden": (BATCH, ENCODER_LENGTH, CONFIG.emb_dim),
      "decoder:self_attention_q": (BATCH, DECODER_LENGTH, joined),
      "decoder:self_attention_k": (BATCH, DECODER_LENGTH, joined),
      "decoder:self_attention_v": (BATCH, DECODER_LENGTH, joined),
      "decoder:self_attention_probs": (BATCH, CONFIG.num_heads, DECODER_LENGTH,
                                       DECODER_LENGTH),
      "decoder:cross_attention_q": (BATCH, DECODER_LENGTH, joined),
      "decoder:cross_attention_k": (BATCH, ENCODER_LENGTH, joined),
      "decoder:cross_attention_v": (BATCH, ENCODER_LENGTH, joined),
      "decoder:cross_attention_probs": (BATCH, CONFIG.num_heads, DECODER_LENGTH,
                                        ENCODER_LENGTH),
      "decoder:hidden": (BATCH, DECODER_LENGTH, CONFIG.emb_dim),
      "decoder:logits": (BATCH, DECODER_LENGTH, CONFIG.vocab_size),
  }
  assert {f"{t.stack}:{t.kind}": v.shape for t, v in sites.items()} == expected
  np.testing.assert_array_equal(np.asarray(sites[Tap("decoder", -1, "logits")]),
                                np.asarray(logits))


def test_no_taps_adds_no_intermediates(params, batch):
  _, state = run(params, *batch, taps=())
  assert not jax.tree_util.tree_leaves(state.get("intermediates", {}))


def test_untapped_layers_store_nothing(params, batch):
  taps = (Tap("encoder", 1, "self_attention_k"),)
  _, state = run(params, *batch, taps=taps)
  stored = jax.tree_util.tree_flatten_with_path(state["intermediates"])[0]
  paths = ["/".join(str(getattr(k, "key", k)) for k in path) for path, _ in stored]
  assert len(paths) == 1 and paths[0].startswith("encoder/layers_1/attention/k")


def test_negative_layers_count_from_the_top(params, batch):
  top = Tap("encoder", -1, "hidden")
  explicit = Tap("encoder", CONFIG.num_encoder_layers - 1, "hidden")
  _, state = run(params, *batch, taps=(top,))
  _, state_explicit = run(params, *batch, taps=(explicit,))
  np.testing.assert_array_equal(
      np.asarray(collect(state["intermediates"], [top], CONFIG)[top]),
      np.asarray(collect(state_explicit["intermediates"], [explicit], CONFIG)[explicit]))


def _rms_norm(x, scale):
  return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + CONFIG.layer_norm_epsilon) * scale


def _gated_gelu_mlp(x, mlp):
  h0 = x @ mlp["wi_0"]["kernel"]
  gelu = 0.5 * h0 * (1 + np.tanh(np.sqrt(2 / np.pi) * (h0 + 0.044715 * h0 ** 3)))
  return (gelu * (x @ mlp["wi_1"]["kernel"])) @ mlp["wo"]["kernel"]


def _attention_from_taps(q, k, v, bias, out_kernel):
  """softmax(q k^T + bias) v, projected by `out` (T5: no 1/sqrt(d) scaling)."""
  def split(x):
    return x.reshape(x.shape[0], x.shape[1], CONFIG.num_heads, CONFIG.head_dim)
  logits = np.einsum("bqhd,bkhd->bhqk", split(q), split(k)) + bias
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  mixed = np.einsum("bhqk,bkhd->bqhd", probs, split(v)).reshape(q.shape)
  return mixed @ out_kernel, probs


def _relative_bias(table, length_q, length_k, bidirectional):
  from miniend_jax.model.layers import relative_position_bucket  # pylint: disable=g-import-not-at-top
  relative = np.arange(length_k)[None, :] - np.arange(length_q)[:, None]
  buckets = np.asarray(relative_position_bucket(
      jnp.asarray(relative), bidirectional=bidirectional,
      num_buckets=CONFIG.relative_attention_num_buckets,
      max_distance=CONFIG.relative_attention_max_distance))
  return np.asarray(table)[:, buckets][None]  # [1, heads, q, k]


def _mask_bias(query_valid, key_valid, causal=False):
  allowed = query_valid[:, None, :, None] & key_valid[:, None, None, :]
  if causal:
    allowed = allowed & np.tril(np.ones((query_valid.shape[1],) * 2, bool))[None, None]
  return np.where(allowed, 0.0, -1e10)


def _layer_input(params, sites, stack, layer, tokens):
  if layer == 0:
    return np.asarray(params["token_embedder"]["embedding"], np.float64)[np.asarray(tokens)]
  return np.asarray(sites[Tap(stack, layer - 1, "hidden")], np.float64)


@pytest.mark.parametrize("layer", [0, 2])
def test_encoder_qkv_taps_recombine_to_the_layer_output(params, batch, layer):
  """From the q/k/v taps and the layer's own weights, NumPy rebuilds the layer's output."""
  encoder, decoder, targets = batch
  taps = tuple(Tap("encoder", layer, f"self_attention_{s}") for s in ("q", "k", "v", "probs"))
  taps += tuple(Tap("encoder", i, "hidden") for i in range(CONFIG.num_encoder_layers))
  _, state = run(params, encoder, decoder, targets, taps=taps)
  sites = collect(state["intermediates"], taps, CONFIG)
  q, k, v, probs = (np.asarray(sites[t], np.float64) for t in taps[:4])
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
  layer_params = p["encoder"][f"layers_{layer}"]
  valid = np.asarray(encoder) != 0
  bias = _mask_bias(valid, valid) + _relative_bias(
      p["encoder"]["relpos_bias"]["rel_embedding"], ENCODER_LENGTH, ENCODER_LENGTH, True)
  attention, rebuilt_probs = _attention_from_taps(
      q, k, v, bias, layer_params["attention"]["out"]["kernel"])
  # Padding queries see only masked keys: their rows are arbitrary, so compare real ones.
  np.testing.assert_allclose(rebuilt_probs.transpose(0, 2, 1, 3)[valid],
                             probs.transpose(0, 2, 1, 3)[valid], atol=1e-5)
  x = _layer_input(p, sites, "encoder", layer, encoder) + attention
  x = x + _gated_gelu_mlp(_rms_norm(x, layer_params["pre_mlp_layer_norm"]["scale"]),
                          layer_params["mlp"])
  expected = np.asarray(sites[Tap("encoder", layer, "hidden")])
  np.testing.assert_allclose(x[valid], expected[valid], atol=1e-4)


def test_decoder_qkv_taps_recombine_to_the_layer_output(params, batch):
  """Self- and cross-attention q/k/v taps rebuild a decoder layer's output."""
  encoder, decoder, targets = batch
  layer = 1
  kinds = [f"{a}_{s}" for a in ("self_attention", "cross_attention") for s in ("q", "k", "v")]
  taps = tuple(Tap("decoder", layer, kind) for kind in kinds)
  taps += (Tap("decoder", layer - 1, "hidden"), Tap("decoder", layer, "hidden"))
  _, state = run(params, encoder, decoder, targets, taps=taps)
  sites = collect(state["intermediates"], taps, CONFIG)
  sq, sk, sv, cq, ck, cv = (np.asarray(sites[t], np.float64) for t in taps[:6])
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
  layer_params = p["decoder"][f"layers_{layer}"]
  decoder_valid = np.asarray(targets) != 0
  encoder_valid = np.asarray(encoder) != 0
  self_bias = _mask_bias(decoder_valid, decoder_valid, causal=True) + _relative_bias(
      p["decoder"]["relpos_bias"]["rel_embedding"], DECODER_LENGTH, DECODER_LENGTH, False)
  x = _layer_input(p, sites, "decoder", layer, decoder)
  x = x + _attention_from_taps(sq, sk, sv, self_bias,
                               layer_params["self_attention"]["out"]["kernel"])[0]
  x = x + _attention_from_taps(cq, ck, cv, _mask_bias(decoder_valid, encoder_valid),
                               layer_params["encoder_decoder_attention"]["out"]["kernel"])[0]
  x = x + _gated_gelu_mlp(_rms_norm(x, layer_params["pre_mlp_layer_norm"]["scale"]),
                          layer_params["mlp"])
  np.testing.assert_allclose(x, np.asarray(sites[taps[-1]]), atol=1e-4)


def test_taps_parse_and_print():
  tap = Tap.parse("decoder:-2:cross_attention_v")
  assert tap == Tap("decoder", -2, "cross_attention_v")
  assert str(tap) == "decoder:-2:cross_attention_v"
  assert TapPlan.build(["encoder:-1:hidden"], CONFIG).taps == frozenset(
      {Tap("encoder", CONFIG.num_encoder_layers - 1, "hidden")})


@pytest.mark.parametrize("make,message", [
    (lambda: Tap("encoder", 0, "cross_attention_q"), "does not exist in the encoder"),
    (lambda: Tap("decoder", 0, "self_attention_kk"), "Did you mean 'self_attention_k'"),
    (lambda: Tap("middle", 0, "hidden"), "'encoder' or 'decoder'"),
    (lambda: Tap.parse("decoder-1-hidden"), "stack:layer:kind"),
    (lambda: Tap("encoder", 3, "hidden").resolve(CONFIG), r"in \[-3, 2\]"),
    (lambda: Tap("decoder", -3, "hidden").resolve(CONFIG), "decoder has 2 layers"),
])
def test_bad_taps_are_refused_clearly(make, message):
  with pytest.raises(TapError, match=message):
    make()


def test_collect_names_a_tap_that_was_not_recorded(params, batch):
  _, state = run(params, *batch, taps=(Tap("encoder", 0, "hidden"),))
  with pytest.raises(TapError, match="was not recorded"):
    collect(state["intermediates"], [Tap("encoder", 1, "hidden")], CONFIG)
