"""T5Config validation, presets, and t5x parameter and logical-axis names."""

import flax.linen as nn
import jax
import pytest
from flax import traverse_util

from miniend_jax.model import (PRESETS, ConfigError, T5Config, init_params, logical_axes,
                               parameter_count, preset)


def test_presets_match_published_sizes():
  base = preset("t5_1_1_base")
  assert (base.emb_dim, base.num_heads, base.head_dim, base.mlp_dim) == (768, 12, 64, 2048)
  assert base.mlp_activations == ("gelu", "linear") and not base.logits_via_embedding
  small = preset("t5_1_0_small")
  assert small.mlp_activations == ("relu",) and small.logits_via_embedding
  assert preset("t5_1_1_xxl").emb_dim == 4096
  student = preset("student_6l_384h")
  assert (student.emb_dim, student.num_encoder_layers, student.num_decoder_layers,
          student.joined_kv_dim, student.mlp_dim) == (384, 6, 6, 384, 1024)
  for name in ("t5_1_0_small", "t5_1_0_base", "t5_1_0_large", "t5_1_1_small", "t5_1_1_base",
               "t5_1_1_large", "t5_1_1_xl", "t5_1_1_xxl", "tiny"):
    assert name in PRESETS


@pytest.mark.parametrize("name,expected_millions", [
    ("t5_1_0_small", 60.5), ("t5_1_1_base", 247.6), ("t5_1_1_large", 783.2)])
def test_parameter_counts_match_published_models(name, expected_millions):
  """Published counts: t5-small 60.5M, t5-v1_1-base 247.6M, t5-v1_1-large 783.2M."""
  assert abs(parameter_count(preset(name)) / 1e6 - expected_millions) < 0.1


def test_unknown_preset_suggests_the_close_name():
  with pytest.raises(ConfigError, match="Did you mean 't5_1_1_base'"):
    preset("t5_11_base")


@pytest.mark.parametrize("changes,field", [
    (dict(emb_dim=0), "emb_dim"),
    (dict(num_heads=-2), "num_heads"),
    (dict(num_decoder_layers=1.5), "num_decoder_layers"),
    (dict(mlp_activations=("gelu", "swishy")), "mlp_activations"),
    (dict(mlp_activations=()), "mlp_activations"),
    (dict(dropout_rate=1.0), "dropout_rate"),
    (dict(dtype="float8"), "dtype"),
    (dict(relative_attention_num_buckets=2), "relative_attention_num_buckets"),
    (dict(relative_attention_num_buckets=32, relative_attention_max_distance=16),
     "relative_attention_max_distance"),
    (dict(vocab_size=10, eos_id=12), "eos_id"),
])
def test_impossible_configs_name_the_field(changes, field):
  with pytest.raises(ConfigError, match=f"T5Config.{field}"):
    preset("tiny").replace(**changes)


def test_misspelled_field_gets_a_suggestion():
  with pytest.raises(ConfigError, match="Did you mean 'num_heads'"):
    preset("tiny").replace(num_head=4)
  with pytest.raises(ConfigError, match="Did you mean 'emb_dim'"):
    T5Config.from_dict({"embdim": 3})


def test_dict_round_trip_and_hashable():
  config = preset("t5_1_1_small", vocab_size=1000)
  assert T5Config.from_dict(config.to_dict()) == config
  assert hash(config) == hash(T5Config.from_dict(config.to_dict()))
  assert T5Config(mlp_activations=["gelu", "linear"]).mlp_activations == ("gelu", "linear")


def test_parameter_names_and_logical_axes_follow_t5x():
  config = preset("tiny", num_encoder_layers=1, num_decoder_layers=1)
  axes = {"/".join(path): tuple(spec) for path, spec in
          traverse_util.flatten_dict(logical_axes(config)).items()}
  assert axes == {
      "token_embedder/embedding": ("vocab", "embed"),
      "encoder/relpos_bias/rel_embedding": ("heads", "relpos_buckets"),
      "encoder/layers_0/pre_attention_layer_norm/scale": ("embed",),
      "encoder/layers_0/attention/query/kernel": ("embed", "joined_kv"),
      "encoder/layers_0/attention/key/kernel": ("embed", "joined_kv"),
      "encoder/layers_0/attention/value/kernel": ("embed", "joined_kv"),
      "encoder/layers_0/attention/out/kernel": ("joined_kv", "embed"),
      "encoder/layers_0/pre_mlp_layer_norm/scale": ("embed",),
      "encoder/layers_0/mlp/wi_0/kernel": ("embed", "mlp"),
      "encoder/layers_0/mlp/wi_1/kernel": ("embed", "mlp"),
      "encoder/layers_0/mlp/wo/kernel": ("mlp", "embed"),
      "encoder/encoder_norm/scale": ("embed",),
      "decoder/relpos_bias/rel_embedding": ("heads", "relpos_buckets"),
      "decoder/layers_0/pre_self_attention_layer_norm/scale": ("embed",),
      "decoder/layers_0/self_attention/query/kernel": ("embed", "joined_kv"),
      "decoder/layers_0/self_attention/key/kernel": ("embed", "joined_kv"),
      "decoder/layers_0/self_attention/value/kernel": ("embed", "joined_kv"),
      "decoder/layers_0/self_attention/out/kernel": ("joined_kv", "embed"),
      "decoder/layers_0/pre_cross_attention_layer_norm/scale": ("embed",),
      "decoder/layers_0/encoder_decoder_attention/query/kernel": ("embed", "joined_kv"),
      "decoder/layers_0/encoder_decoder_attention/key/kernel": ("embed", "joined_kv"),
      "decoder/layers_0/encoder_decoder_attention/value/kernel": ("embed", "joined_kv"),
      "decoder/layers_0/encoder_decoder_attention/out/kernel": ("joined_kv", "embed"),
      "decoder/layers_0/pre_mlp_layer_norm/scale": ("embed",),
      "decoder/layers_0/mlp/wi_0/kernel": ("embed", "mlp"),
      "decoder/layers_0/mlp/wi_1/kernel": ("embed", "mlp"),
      "decoder/layers_0/mlp/wo/kernel": ("mlp", "embed"),
      "decoder/decoder_norm/scale": ("embed",),
      "decoder/logits_dense/kernel": ("embed", "vocab"),
  }
  tied = logical_axes(preset("tiny", mlp_activations=("relu",), logits_via_embedding=True))
  flat = traverse_util.flatten_dict(tied)
  assert ("decoder", "logits_dense", "kernel") not in flat
  assert ("encoder", "layers_0", "mlp", "wi", "kernel") in flat


def test_param_dtype_is_honoured():
  config = preset("tiny", param_dtype="bfloat16")
  shapes = jax.eval_shape(lambda r: init_params(config, r), jax.random.key(0))
  assert {x.dtype.name for x in jax.tree_util.tree_leaves(nn.unbox(shapes))} == {"bfloat16"}
