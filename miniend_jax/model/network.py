"""The T5 encoder-decoder: Encoder, Decoder and Transformer (t5x module and parameter names).

Masks follow t5x: token 0 is padding; packed examples carry segment ids (attention only
within a segment). The relative position bias is computed from positions within the
(packed) row, which equals the per-segment positions wherever attention is allowed, so
`*_positions` are accepted for seqio compatibility but need not be given.
"""

from __future__ import annotations

from collections.abc import Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp

from miniend_jax.model.config import T5Config
from miniend_jax.model.layers import (MASK_BIAS, Dense, Embed, MlpBlock, MultiHeadAttention,
                                      RelativePositionBiases, RMSNorm, constrain)
from miniend_jax.taps import OutputLayer, Tap, TapPlan

Array = jax.Array
Taps = Iterable[Tap | str] | TapPlan | None


def attention_bias(query_valid: Array | None, key_valid: Array | None, *,
                   query_segments: Array | None = None, key_segments: Array | None = None,
                   causal_length: int | None = None) -> Array | None:
  """Additive float32 mask bias [batch or 1, 1, q_len, k_len] (0 allowed, MASK_BIAS not)."""
  allowed = None

  def combine(mask):
    nonlocal allowed
    allowed = mask if allowed is None else jnp.logical_and(allowed, mask)

  if query_valid is not None:
    combine(query_valid[:, None, :, None])
  if key_valid is not None:
    combine(key_valid[:, None, None, :])
  if query_segments is not None and key_segments is not None:
    combine(query_segments[:, None, :, None] == key_segments[:, None, None, :])
  if causal_length is not None:
    positions = jnp.arange(causal_length)
    combine((positions[None, :] <= positions[:, None])[None, None])
  if allowed is None:
    return None
  return jnp.where(allowed, 0.0, MASK_BIAS).astype(jnp.float32)


class EncoderLayer(nn.Module):
  config: T5Config
  layer_index: int

  @nn.compact
  def __call__(self, x: Array, bias: Array, deterministic: bool, plan: TapPlan) -> Array:
    cfg = self.config
    dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))
    y = RMSNorm(cfg, name="pre_attention_layer_norm")(x)
    y = MultiHeadAttention(cfg, name="attention")(
        y, y, bias, deterministic=deterministic,
        tap_sites=plan.attention_sites("encoder", self.layer_index, "self_attention"))
    x = x + dropout(y, deterministic=deterministic)
    y = RMSNorm(cfg, name="pre_mlp_layer_norm")(x)
    y = MlpBlock(cfg, name="mlp")(y, deterministic=deterministic)
    x = x + dropout(y, deterministic=deterministic)
    x = constrain(x, ("batch", "length", "embed"))
    if plan.wants("encoder", self.layer_index, "hidden"):
      self.sow("intermediates", "hidden", x)
    return x


class DecoderLayer(nn.Module):
  config: T5Config
  layer_index: int

  @nn.compact
  def __call__(self, x: Array, encoded: Array, self_bias: Array, cross_bias: Array | None,
               deterministic: bool, decode: bool, plan: TapPlan) -> Array:
    cfg = self.config
    dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))
    y = RMSNorm(cfg, name="pre_self_attention_layer_norm")(x)
    y = MultiHeadAttention(cfg, name="self_attention")(
        y, y, self_bias, deterministic=deterministic, decode=decode,
        tap_sites=plan.attention_sites("decoder", self.layer_index, "self_attention"))
    x = x + dropout(y, deterministic=deterministic)
    y = RMSNorm(cfg, name="pre_cross_attention_layer_norm")(x)
    y = MultiHeadAttention(cfg, name="encoder_decoder_attention")(
        y, encoded, cross_bias, deterministic=deterministic,
        tap_sites=plan.attention_sites("decoder", self.layer_index, "cross_attention"))
    x = x + dropout(y, deterministic=deterministic)
    y = RMSNorm(cfg, name="pre_mlp_layer_norm")(x)
    y = MlpBlock(cfg, name="mlp")(y, deterministic=deterministic)
    x = x + dropout(y, deterministic=deterministic)
    x = constrain(x, ("batch", "length", "embed"))
    if plan.wants("decoder", self.layer_index, "hidden"):
      self.sow("intermediates", "hidden", x)
    return x


# Which activations a layer keeps for the backward pass (T5Config.remat_policy); the rest
# is recomputed there. "minimal" keeps the projections' and MLP's matmul outputs and
# recomputes attention scores, softmaxes, norms and activations; "full" keeps only each
# layer's input and recomputes the whole layer.
_CHECKPOINT_POLICIES = {"minimal": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
                        "full": jax.checkpoint_policies.nothing_saveable}


def _layer_class(layer: type[nn.Module], config: T5Config, static_argnums: tuple[int, ...],
                 decode: bool = False) -> type[nn.Module]:
  """The layer, rematerialised as configured (never while decoding: no backward pass).
  static_argnums count `self` as 0: the flags and the tap plan."""
  if config.remat_policy == "none" or decode:
    return layer
  return nn.remat(layer, policy=_CHECKPOINT_POLICIES[config.remat_policy],
                  static_argnums=static_argnums)


class Encoder(nn.Module):
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, tokens: Array, segment_ids: Array | None = None, *,
               deterministic: bool, plan: TapPlan) -> Array:
    """tokens [batch, length] -> encoded [batch, length, emb_dim] (after encoder_norm)."""
    cfg = self.config
    length = tokens.shape[1]
    bias = attention_bias(tokens != cfg.pad_id, tokens != cfg.pad_id,
                          query_segments=segment_ids, key_segments=segment_ids)
    bias = bias + RelativePositionBiases(cfg, bidirectional=True, name="relpos_bias")(
        length, length)
    x = self.shared_embedding(tokens)  # [batch, length, embed]
    x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
    x = constrain(x, ("batch", "length", "embed"))
    layer = _layer_class(EncoderLayer, cfg, static_argnums=(3, 4))
    for index in range(cfg.num_encoder_layers):
      x = layer(cfg, index, name=f"layers_{index}")(x, bias, deterministic, plan)
    x = RMSNorm(cfg, name="encoder_norm")(x)
    return nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)


class Decoder(nn.Module):
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, encoded: Array, encoder_tokens: Array, tokens: Array,
               target_tokens: Array | None = None, encoder_segment_ids: Array | None = None,
               segment_ids: Array | None = None, *, deterministic: bool, decode: bool,
               max_decode_length: int | None, plan: TapPlan) -> Array:
    """-> float32 logits [batch, length, vocab]."""
    cfg = self.config
    length = tokens.shape[1]
    if decode:
      # One position per step: the self-attention cache applies the causal limit, and
      # the bias table spans the whole cache so its row for this step can be taken.
      table_length = max_decode_length or length
      self_bias = RelativePositionBiases(cfg, bidirectional=False, name="relpos_bias")(
          table_length, table_length)
      cross_bias = attention_bias(None, encoder_tokens != cfg.pad_id)
    else:
      query_valid = None if target_tokens is None else target_tokens != cfg.pad_id
      self_bias = attention_bias(query_valid, query_valid, query_segments=segment_ids,
                                 key_segments=segment_ids, causal_length=length)
      self_bias = self_bias + RelativePositionBiases(
          cfg, bidirectional=False, name="relpos_bias")(length, length)
      cross_bias = attention_bias(query_valid, encoder_tokens != cfg.pad_id,
                                  query_segments=segment_ids,
                                  key_segments=encoder_segment_ids)
    x = self.shared_embedding(tokens)
    x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
    x = constrain(x, ("batch", "length", "embed"))
    layer = _layer_class(DecoderLayer, cfg, static_argnums=(5, 6, 7), decode=decode)
    for index in range(cfg.num_decoder_layers):
      x = layer(cfg, index, name=f"layers_{index}")(x, encoded, self_bias, cross_bias,
                                                     deterministic, decode, plan)
    x = RMSNorm(cfg, name="decoder_norm")(x)
    x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
    if cfg.logits_via_embedding:
      # T5 1.0 ties the output layer to the embedding and rescales (Mesh TF convention).
      logits = self.shared_embedding.attend(x) * cfg.emb_dim ** -0.5
      kernel = lambda: (self.shared_embedding.embedding.astype(jnp.float32).T
                        * cfg.emb_dim ** -0.5)
    else:
      output_dense = Dense(cfg.vocab_size, ("embed", "vocab"), cfg.replace(dtype="float32"),
                           name="logits_dense")
      logits = output_dense(x.astype(jnp.float32))
      kernel = lambda: nn.unbox(output_dense.variables["params"]["kernel"]).astype(
          jnp.float32)
    if plan.wants_output_layer:
      # Unused full logits are then removed by XLA when only this site is read.
      self.sow("intermediates", "output_layer", OutputLayer(x.astype(jnp.float32), kernel()))
    logits = constrain(logits, ("batch", "length", "vocab"))
    if plan.wants_logits:
      self.sow("intermediates", "logits", logits)
    return logits


class Transformer(nn.Module):
  """T5 encoder-decoder. `__call__` returns float32 logits [batch, target_length, vocab].

  Taps (see miniend_jax.taps) are passed per call; apply with mutable=["intermediates"]
  to receive them. Autoregressive decoding: call `decode(..., decode=True)` once with
  full-length zeros and mutable=["cache"] to create the cache, then one position per step.
  """

  config: T5Config

  def setup(self):
    self.token_embedder = Embed(self.config)
    self.encoder = Encoder(self.config, self.token_embedder)
    self.decoder = Decoder(self.config, self.token_embedder)

  def encode(self, encoder_input_tokens: Array, encoder_segment_ids: Array | None = None,
             encoder_positions: Array | None = None, *, enable_dropout: bool = False,
             taps: Taps = None) -> Array:
    del encoder_positions  # Relative positions come from the row (module docstring).
    return self.encoder(encoder_input_tokens, encoder_segment_ids,
                        deterministic=not enable_dropout,
                        plan=TapPlan.build(taps, self.config))

  def decode(self, encoded: Array, encoder_input_tokens: Array, decoder_input_tokens: Array,
             decoder_target_tokens: Array | None = None,
             encoder_segment_ids: Array | None = None,
             decoder_segment_ids: Array | None = None,
             decoder_positions: Array | None = None, *, enable_dropout: bool = False,
             decode: bool = False, max_decode_length: int | None = None,
             taps: Taps = None) -> Array:
    del decoder_positions
    return self.decoder(encoded, encoder_input_tokens, decoder_input_tokens,
                        decoder_target_tokens, encoder_segment_ids, decoder_segment_ids,
                        deterministic=not enable_dropout, decode=decode,
                        max_decode_length=max_decode_length,
                        plan=TapPlan.build(taps, self.config))

  def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
               decoder_target_tokens: Array | None = None,
               encoder_segment_ids: Array | None = None,
               decoder_segment_ids: Array | None = None,
               encoder_positions: Array | None = None,
               decoder_positions: Array | None = None, *, enable_dropout: bool = False,
               taps: Taps = None) -> Array:
    plan = TapPlan.build(taps, self.config)
    encoded = self.encode(encoder_input_tokens, encoder_segment_ids, encoder_positions,
                          enable_dropout=enable_dropout, taps=plan)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens,
                       decoder_target_tokens, encoder_segment_ids, decoder_segment_ids,
                       decoder_positions, enable_dropout=enable_dropout, taps=plan)


def init_params(config: T5Config, rng: jax.Array, *, batch_size: int = 1,
                encoder_length: int = 8, decoder_length: int = 8):
  """Random parameters (boxed with their logical axes; `nn.unbox` gives plain arrays)."""
  encoder_tokens = jnp.ones((batch_size, encoder_length), jnp.int32)
  decoder_tokens = jnp.ones((batch_size, decoder_length), jnp.int32)
  return Transformer(config).init(rng, encoder_tokens, decoder_tokens)["params"]


def logical_axes(config: T5Config):
  """The logical axis names of every parameter, as a tree of PartitionSpecs."""
  shapes = jax.eval_shape(lambda rng: init_params(config, rng), jax.random.key(0))
  return nn.get_partition_spec(shapes)


def parameter_count(config: T5Config) -> int:
  """Number of parameters of the architecture (computed from shapes, nothing allocated)."""
  shapes = jax.eval_shape(lambda rng: init_params(config, rng), jax.random.key(0))
  return sum(leaf.size for leaf in jax.tree_util.tree_leaves(nn.unbox(shapes)))
