"""T5 building blocks with t5x parameter names and logical axis names.

Every parameter is created through `nn.with_logical_partitioning`, so `model.init` returns
boxed parameters whose logical axes map onto a mesh through the partitioning rules, and
`model.apply` accepts boxed or plain arrays alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from miniend_jax.model.config import T5Config

Array = jax.Array
# Added to attention logits at masked positions (t5x's value); finite, so a fully masked
# row (a padding query) gives a uniform row instead of NaN.
MASK_BIAS = -1e10

_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": nn.relu,
    "gelu": lambda x: nn.gelu(x, approximate=True),
    "gelu_exact": lambda x: nn.gelu(x, approximate=False),
    "silu": nn.silu,
    "linear": lambda x: x,
}


def _param(module: nn.Module, name: str, init: Callable, shape: tuple[int, ...],
           axes: tuple[str, ...], dtype: Any) -> Array:
  return module.param(name, nn.with_logical_partitioning(init, axes), shape, dtype)


def constrain(x: Array, axes: tuple[str | None, ...]) -> Array:
  """Logical sharding constraint on an activation (a no-op without a mesh and rules)."""
  return nn.with_logical_constraint(x, axes)


class RMSNorm(nn.Module):
  """T5 layer norm: scale only, no mean subtraction, no bias; computed in float32."""

  config: T5Config

  @nn.compact
  def __call__(self, x: Array) -> Array:
    cfg = self.config
    scale = _param(self, "scale", nn.initializers.ones, (x.shape[-1],), ("embed",),
                   cfg.parameter_dtype)
    x32 = x.astype(jnp.float32)
    variance = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    y = x32 * lax.rsqrt(variance + cfg.layer_norm_epsilon)
    return (y * scale.astype(jnp.float32)).astype(cfg.compute_dtype)


class Dense(nn.Module):
  """A bias-free projection with a 2-D kernel [in, out] named "kernel"."""

  features: int
  axes: tuple[str, str]
  config: T5Config
  kernel_init: Callable = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")

  @nn.compact
  def __call__(self, x: Array) -> Array:
    cfg = self.config
    kernel = _param(self, "kernel", self.kernel_init, (x.shape[-1], self.features),
                    self.axes, cfg.parameter_dtype)
    return jnp.dot(x.astype(cfg.compute_dtype), kernel.astype(cfg.compute_dtype))


class Embed(nn.Module):
  """Token embedding [vocab, embed]; `attend` reuses it as a tied output layer."""

  config: T5Config

  def setup(self):
    cfg = self.config
    self.embedding = _param(self, "embedding", nn.initializers.normal(stddev=1.0),
                            (cfg.vocab_size, cfg.emb_dim), ("vocab", "embed"),
                            cfg.parameter_dtype)

  def __call__(self, tokens: Array) -> Array:
    return jnp.take(self.embedding.astype(self.config.compute_dtype), tokens, axis=0)

  def attend(self, query: Array) -> Array:
    """query [..., embed] -> float32 logits [..., vocab]."""
    return jnp.dot(query.astype(jnp.float32), self.embedding.astype(jnp.float32).T)


class MlpBlock(nn.Module):
  """Feed-forward block: wi (ungated) or wi_0, wi_1, ... (gated, multiplied), then wo."""

  config: T5Config

  @nn.compact
  def __call__(self, x: Array, *, deterministic: bool) -> Array:
    cfg = self.config
    hidden = None
    for index, activation in enumerate(cfg.mlp_activations):
      name = f"wi_{index}" if cfg.is_gated else "wi"
      h = _ACTIVATIONS[activation](Dense(cfg.mlp_dim, ("embed", "mlp"), cfg, name=name)(x))
      hidden = h if hidden is None else hidden * h
    hidden = constrain(hidden, ("batch", "length", "mlp"))
    hidden = nn.Dropout(cfg.dropout_rate)(hidden, deterministic=deterministic)
    return Dense(cfg.emb_dim, ("mlp", "embed"), cfg, name="wo")(hidden)


def relative_position_bucket(relative_position: Array, *, bidirectional: bool,
                             num_buckets: int, max_distance: int) -> Array:
  """Bucket of (key position - query position), as in T5 (Raffel et al. 2020).

  Half of the buckets (per direction when bidirectional) hold exact small offsets, the
  rest cover offsets up to `max_distance` logarithmically; farther offsets share the last.
  """
  bucket = jnp.zeros_like(relative_position)
  if bidirectional:
    num_buckets //= 2
    bucket = bucket + (relative_position > 0).astype(jnp.int32) * num_buckets
    distance = jnp.abs(relative_position)
  else:
    distance = -jnp.minimum(relative_position, 0)
  max_exact = num_buckets // 2
  is_small = distance < max_exact
  log_ratio = (jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / max_exact)
               / math.log(max_distance / max_exact))
  if_large = max_exact + (log_ratio * (num_buckets - max_exact)).astype(jnp.int32)
  if_large = jnp.minimum(if_large, num_buckets - 1)
  return bucket + jnp.where(is_small, distance, if_large)


class RelativePositionBiases(nn.Module):
  """The per-stack table [heads, buckets] of learned attention-logit biases."""

  config: T5Config
  bidirectional: bool

  @nn.compact
  def __call__(self, query_length: int, key_length: int) -> Array:
    """-> float32 bias [1, heads, query_length, key_length]."""
    cfg = self.config
    table = _param(self, "rel_embedding",
                   nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
                   (cfg.num_heads, cfg.relative_attention_num_buckets),
                   ("heads", "relpos_buckets"), cfg.parameter_dtype)
    relative = jnp.arange(key_length)[None, :] - jnp.arange(query_length)[:, None]
    buckets = relative_position_bucket(
        relative, bidirectional=self.bidirectional,
        num_buckets=cfg.relative_attention_num_buckets,
        max_distance=cfg.relative_attention_max_distance)
    bias = jnp.take(table.astype(jnp.float32), buckets, axis=1)  # [heads, q, k]
    return bias[None]


class MultiHeadAttention(nn.Module):
  """T5 attention: no 1/sqrt(head_dim) on the logits (folded into the query init).

  `bias` is additive, float32, broadcastable to [batch, heads, q_len, k_len]: the masks
  and the relative position bias. With `decode=True` and an initialised cache, `inputs_q`
  holds one new position; its keys and values are written into the cache at
  `cache_index` and `bias` holds the full [.., max_length, max_length] table, whose row
  `cache_index` this step uses.

  `tap_sites` (subset of q, k, v, probs) are sown into "intermediates".
  """

  config: T5Config

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Array, bias: Array | None, *,
               deterministic: bool, decode: bool = False,
               tap_sites: frozenset[str] = frozenset()) -> Array:
    cfg = self.config
    batch, q_length = inputs_q.shape[:2]
    depth_scaling = cfg.head_dim ** -0.5

    def query_init(*args):
      return nn.initializers.variance_scaling(1.0, "fan_in", "normal")(*args) * depth_scaling

    joined = ("embed", "joined_kv")
    query = Dense(cfg.joined_kv_dim, joined, cfg, kernel_init=query_init, name="query")(inputs_q)
    key = Dense(cfg.joined_kv_dim, joined, cfg, name="key")(inputs_kv)
    value = Dense(cfg.joined_kv_dim, joined, cfg, name="value")(inputs_kv)
    for site, projected in (("q", query), ("k", key), ("v", value)):
      if site in tap_sites:
        self.sow("intermediates", site, projected)

    def split_heads(x):  # [batch, length, heads*head_dim] -> [batch, length, heads, head_dim]
      x = x.reshape(x.shape[0], x.shape[1], cfg.num_heads, cfg.head_dim)
      return constrain(x, ("batch", "length", "heads", "kv"))

    query, key, value = split_heads(query), split_heads(key), split_heads(value)

    if decode:
      query, key, value, bias = self._update_cache(key, value, query, bias)

    logits = jnp.einsum("bqhd,bkhd->bhqk", query, key,
                        preferred_element_type=jnp.float32)  # [batch, heads, q, k]
    if bias is not None:
      logits = logits + bias
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    if "probs" in tap_sites:
      self.sow("intermediates", "probs", probs)
    # As in t5x's T5: one attention-dropout mask per key position, shared by all queries
    # (Hugging Face draws one per query and key): q times fewer random bits.
    probs = nn.Dropout(cfg.dropout_rate, broadcast_dims=(2,))(probs,
                                                             deterministic=deterministic)
    out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(cfg.compute_dtype), value)
    out = out.reshape(batch, q_length, cfg.joined_kv_dim)
    return Dense(cfg.emb_dim, ("joined_kv", "embed"), cfg, name="out")(out)

  def _update_cache(self, key, value, query, bias):
    """Autoregressive step: append this position's key/value to the cache."""
    initialised = self.has_variable("cache", "cached_key")
    cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
    cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
    cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
    if not initialised:
      # Called with full-length inputs only to create the cache of that length.
      return query, key, value, bias
    if key.shape[1] != 1:
      raise ValueError(
          f"decode=True takes one position per step once the cache exists, got "
          f"{key.shape[1]}.")
    index = cache_index.value
    max_length = cached_key.value.shape[1]
    key = lax.dynamic_update_slice(cached_key.value, key, (0, index, 0, 0))
    value = lax.dynamic_update_slice(cached_value.value, value, (0, index, 0, 0))
    cached_key.value, cached_value.value = key, value
    cache_index.value = index + 1
    # Only positions written so far may be attended to.
    visible = jnp.where(jnp.arange(max_length) <= index, 0.0, MASK_BIAS)[None, None, None, :]
    if bias is not None:
      bias = lax.dynamic_slice_in_dim(bias, index, 1, axis=2) + visible
    else:
      bias = visible
    return query, key, value, bias
