"""T5Config: the one validated description of a T5 encoder-decoder architecture.

Field names follow t5x's `network.T5Config` (vocab_size, emb_dim, num_heads, ...), so a t5x
gin model file translates line by line; the relative-position settings and the layer-norm
epsilon, which t5x hard-codes, are fields here.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

import jax.numpy as jnp

from miniend_jax.errors import MiniendError

# Activation names accepted in `mlp_activations`. "gelu" is the tanh approximation (t5x's
# flax `nn.gelu`, Hugging Face's "gelu_new"); "gelu_exact" is the erf form.
ACTIVATIONS = ("relu", "gelu", "gelu_exact", "silu", "linear")
DTYPES = ("float32", "bfloat16", "float16")
REMAT_POLICIES = ("none", "minimal", "full")


# The fields that decide what function a set of weights computes. The others (dropout_rate,
# dtype, param_dtype, remat_policy) say how the model is run or stored.
ARCHITECTURE_FIELDS = ("vocab_size", "emb_dim", "num_heads", "num_encoder_layers",
                       "num_decoder_layers", "head_dim", "mlp_dim", "mlp_activations",
                       "logits_via_embedding", "relative_attention_num_buckets",
                       "relative_attention_max_distance", "layer_norm_epsilon", "pad_id",
                       "eos_id", "decoder_start_id")


class ConfigError(MiniendError, ValueError):
  """A T5Config field holds a value no model can be built from."""


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Architecture of a T5 encoder-decoder.

  Attributes:
    vocab_size: rows of the token embedding (32128 for public T5 checkpoints).
    emb_dim: model width (Hugging Face d_model).
    num_heads: attention heads per attention module.
    num_encoder_layers: encoder blocks.
    num_decoder_layers: decoder blocks (independent of the encoder depth).
    head_dim: width of one attention head (HF d_kv); num_heads * head_dim may differ
      from emb_dim.
    mlp_dim: hidden width of the feed-forward block (HF d_ff).
    mlp_activations: ("relu",) for T5 1.0; ("gelu", "linear") for the gated-GELU MLP of
      T5 1.1 and Flan-T5. Two or more entries make a gated MLP (wi_0, wi_1, ...).
    dropout_rate: dropout on embeddings, attention probabilities, sub-layer outputs and
      the MLP's hidden layer, as in t5x.
    logits_via_embedding: True ties the output layer to the token embedding and scales the
      decoder output by emb_dim**-0.5 (T5 1.0); False uses an untied `logits_dense` (1.1).
    relative_attention_num_buckets: buckets of the relative position bias.
    relative_attention_max_distance: distance beyond which all offsets share a bucket.
    layer_norm_epsilon: RMSNorm epsilon.
    dtype: compute dtype of activations ("float32" or "bfloat16"). Attention softmax and
      RMSNorm always run in float32 and logits are returned in float32.
    param_dtype: dtype parameters are stored in.
    remat_policy: rematerialisation of each layer in the backward pass, for memory:
      "none" keeps every activation; "minimal" recomputes attention scores, softmaxes,
      norms and activations but keeps matmul outputs; "full" keeps only layer inputs and
      recomputes each layer (about one more forward pass). Same results either way.
    pad_id, eos_id, decoder_start_id: the T5 special ids (0, 1, 0).
  """

  vocab_size: int = 32128
  emb_dim: int = 512
  num_heads: int = 8
  num_encoder_layers: int = 6
  num_decoder_layers: int = 6
  head_dim: int = 64
  mlp_dim: int = 2048
  mlp_activations: tuple[str, ...] = ("relu",)
  dropout_rate: float = 0.1
  logits_via_embedding: bool = True
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  layer_norm_epsilon: float = 1e-6
  dtype: str = "float32"
  param_dtype: str = "float32"
  remat_policy: str = "none"
  pad_id: int = 0
  eos_id: int = 1
  decoder_start_id: int = 0

  def __post_init__(self):
    # gin and JSON hand over lists; keep the dataclass hashable.
    if isinstance(self.mlp_activations, list):
      object.__setattr__(self, "mlp_activations", tuple(self.mlp_activations))
    self._validate()

  def _validate(self):
    for name in ("vocab_size", "emb_dim", "num_heads", "num_encoder_layers",
                 "num_decoder_layers", "head_dim", "mlp_dim",
                 "relative_attention_max_distance"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"T5Config.{name} must be a positive integer, got {value!r}.")
    if (not isinstance(self.relative_attention_num_buckets, int)
        or self.relative_attention_num_buckets < 4):
      raise ConfigError(
          "T5Config.relative_attention_num_buckets must be an integer >= 4 (half of the "
          "buckets are exact offsets, half logarithmic, split again by direction in the "
          f"encoder), got {self.relative_attention_num_buckets!r}.")
    # The logarithmic buckets start at num_buckets // 4 (bidirectional) and need a larger
    # maximum distance, otherwise log(max_distance / max_exact) is zero or negative.
    if self.relative_attention_max_distance <= self.relative_attention_num_buckets // 2:
      raise ConfigError(
          "T5Config.relative_attention_max_distance must exceed "
          "relative_attention_num_buckets // 2 "
          f"({self.relative_attention_num_buckets // 2}), got "
          f"{self.relative_attention_max_distance}.")
    if not self.mlp_activations or not isinstance(self.mlp_activations, tuple):
      raise ConfigError(
          "T5Config.mlp_activations must be a non-empty tuple such as ('relu',) or "
          f"('gelu', 'linear'), got {self.mlp_activations!r}.")
    for activation in self.mlp_activations:
      if activation not in ACTIVATIONS:
        raise ConfigError(
            f"T5Config.mlp_activations holds unknown activation {activation!r}; "
            f"choose from {ACTIVATIONS}.")
    if not (isinstance(self.dropout_rate, (int, float)) and 0.0 <= self.dropout_rate < 1.0):
      raise ConfigError(
          f"T5Config.dropout_rate must be in [0, 1), got {self.dropout_rate!r}.")
    if not (isinstance(self.layer_norm_epsilon, (int, float)) and self.layer_norm_epsilon > 0):
      raise ConfigError(
          f"T5Config.layer_norm_epsilon must be positive, got {self.layer_norm_epsilon!r}.")
    for name in ("dtype", "param_dtype"):
      if getattr(self, name) not in DTYPES:
        raise ConfigError(
            f"T5Config.{name} must be one of {DTYPES}, got {getattr(self, name)!r}.")
    if self.remat_policy not in REMAT_POLICIES:
      raise ConfigError(
          f"T5Config.remat_policy must be one of {REMAT_POLICIES}, got "
          f"{self.remat_policy!r}.")
    for name in ("pad_id", "eos_id", "decoder_start_id"):
      value = getattr(self, name)
      if not isinstance(value, int) or not 0 <= value < self.vocab_size:
        raise ConfigError(
            f"T5Config.{name} must be a token id in [0, vocab_size={self.vocab_size}), "
            f"got {value!r}.")

  @property
  def joined_kv_dim(self) -> int:
    """Width of the projected queries, keys and values: num_heads * head_dim."""
    return self.num_heads * self.head_dim

  @property
  def is_gated(self) -> bool:
    return len(self.mlp_activations) > 1

  @property
  def compute_dtype(self) -> Any:
    return jnp.dtype(self.dtype)

  @property
  def parameter_dtype(self) -> Any:
    return jnp.dtype(self.param_dtype)

  def replace(self, **changes) -> T5Config:
    """A copy with `changes` applied (validated again)."""
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
    if unknown:
      raise ConfigError(_unknown_field_message(unknown[0]))
    return dataclasses.replace(self, **changes)

  def architecture_differences(self, other: T5Config, *, names: tuple[str, str] = (
      "this", "other"), ignore: tuple[str, ...] = (), also: tuple[str, ...] = ()
                               ) -> list[str]:
    """What keeps `other` from being the same model as this config: one "field: NAME1 x
    vs NAME2 y" entry per differing field of ARCHITECTURE_FIELDS (minus `ignore`, plus
    `also`). Empty when the same weights
    compute the same function under both (dropout, compute dtype, storage dtype and
    rematerialisation are how a model is run, not what it is).

    The one definition of "same architecture": resuming a run, loading a checkpoint
    against a given config, and copying teacher layers into a student all use it.
    """
    fields = [name for name in ARCHITECTURE_FIELDS + also if name not in ignore]
    return [f"{name}: {names[0]} {getattr(self, name)!r} vs {names[1]} "
            f"{getattr(other, name)!r}" for name in fields
            if getattr(self, name) != getattr(other, name)]

  def to_dict(self) -> dict[str, Any]:
    result = dataclasses.asdict(self)
    result["mlp_activations"] = list(self.mlp_activations)
    return result

  @classmethod
  def from_dict(cls, values: dict[str, Any]) -> T5Config:
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise ConfigError(_unknown_field_message(unknown[0]))
    return cls(**values)


def _unknown_field_message(name: str) -> str:
  fields = [f.name for f in dataclasses.fields(T5Config)]
  close = difflib.get_close_matches(name, fields, n=1)
  hint = f" Did you mean {close[0]!r}?" if close else ""
  return f"T5Config has no field {name!r}.{hint}"


def _t5_1_0(**sizes) -> T5Config:
  return T5Config(mlp_activations=("relu",), logits_via_embedding=True, **sizes)


def _t5_1_1(**sizes) -> T5Config:
  return T5Config(mlp_activations=("gelu", "linear"), logits_via_embedding=False, **sizes)


# Sizes from the published T5 (1.0) and T5 1.1 / Flan-T5 checkpoints' config.json.
PRESETS: dict[str, T5Config] = {
    "t5_1_0_small": _t5_1_0(emb_dim=512, num_heads=8, num_encoder_layers=6,
                            num_decoder_layers=6, head_dim=64, mlp_dim=2048),
    "t5_1_0_base": _t5_1_0(emb_dim=768, num_heads=12, num_encoder_layers=12,
                           num_decoder_layers=12, head_dim=64, mlp_dim=3072),
    "t5_1_0_large": _t5_1_0(emb_dim=1024, num_heads=16, num_encoder_layers=24,
                            num_decoder_layers=24, head_dim=64, mlp_dim=4096),
    "t5_1_1_small": _t5_1_1(emb_dim=512, num_heads=6, num_encoder_layers=8,
                            num_decoder_layers=8, head_dim=64, mlp_dim=1024),
    "t5_1_1_base": _t5_1_1(emb_dim=768, num_heads=12, num_encoder_layers=12,
                           num_decoder_layers=12, head_dim=64, mlp_dim=2048),
    "t5_1_1_large": _t5_1_1(emb_dim=1024, num_heads=16, num_encoder_layers=24,
                            num_decoder_layers=24, head_dim=64, mlp_dim=2816),
    "t5_1_1_xl": _t5_1_1(emb_dim=2048, num_heads=32, num_encoder_layers=24,
                         num_decoder_layers=24, head_dim=64, mlp_dim=5120),
    "t5_1_1_xxl": _t5_1_1(emb_dim=4096, num_heads=64, num_encoder_layers=24,
                          num_decoder_layers=24, head_dim=64, mlp_dim=10240),
    # The MiniEnD paper's student: 6+6 layers of width 384 (docs/method.md, "The paper's student").
    "student_6l_384h": _t5_1_1(emb_dim=384, num_heads=12, num_encoder_layers=6,
                               num_decoder_layers=6, head_dim=32, mlp_dim=1024),
    # For tests and CPU smoke runs: every code path, seconds to compile.
    "tiny": _t5_1_1(vocab_size=128, emb_dim=32, num_heads=4, num_encoder_layers=2,
                    num_decoder_layers=2, head_dim=8, mlp_dim=64, dropout_rate=0.0,
                    relative_attention_num_buckets=8, relative_attention_max_distance=20),
}
PRESETS["flan_t5_small"] = PRESETS["t5_1_1_small"]
PRESETS["flan_t5_base"] = PRESETS["t5_1_1_base"]
PRESETS["flan_t5_large"] = PRESETS["t5_1_1_large"]


def preset(name: str, **overrides) -> T5Config:
  """The named architecture, with `overrides` (e.g. vocab_size=...) applied."""
  if name not in PRESETS:
    close = difflib.get_close_matches(name, PRESETS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"Unknown T5 preset {name!r}.{hint} Known presets: {', '.join(sorted(PRESETS))}.")
  return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]
