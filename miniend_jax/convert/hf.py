"""Hugging Face transformers T5 <-> our parameters (t5x names).

`load(path)` reads a local `T5ForConditionalGeneration` directory (config.json plus
model.safetensors, sharded safetensors with an index, or pytorch_model.bin when torch is
installed). `save(config, params, output_dir)` writes one that transformers 5.x reloads
with the same logits, untied (T5 1.1) output layers included, and, given a SentencePiece
model, the tokenizer files `AutoTokenizer.from_pretrained` needs.

PyTorch Linear weights are [out, in]: the transpose of our [in, out] kernels.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import ml_dtypes
import numpy as np
from flax import traverse_util

from miniend_jax.convert.lazy_arrays import LazyArray
from miniend_jax.convert.validation import (CheckpointError, params_for_config,
                                            read_checkpoint_json, unreadable_checkpoint)
from miniend_jax.errors import InputMissingError, OutputExistsError
from miniend_jax.model.config import ConfigError, T5Config
from miniend_jax.unreadable_files import truncated

# Hugging Face activation names -> ours. "gelu_new" and "gelu_pytorch_tanh" are the tanh
# approximation t5x calls "gelu".
_HF_ACTIVATIONS = {"relu": "relu", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu",
                   "gelu": "gelu_exact", "silu": "silu", "swish": "silu"}
_OUR_ACTIVATIONS = {"relu": "relu", "gelu": "gelu_new", "gelu_exact": "gelu", "silu": "silu"}
SENTINEL_COUNT = 100


# ----------------------------------------------------------------------------- config


def config_from_hf(hf: Mapping[str, Any], **overrides) -> T5Config:
  """T5Config from the fields of a transformers T5 config.json."""
  if hf.get("model_type", "t5") not in ("t5", "mt5"):
    raise CheckpointError(
        f"config.json has model_type {hf.get('model_type')!r}; only T5 encoder-decoders "
        "(model_type 't5' or 'mt5') can be loaded.")
  projection = hf.get("feed_forward_proj", "relu")
  gated = projection.startswith("gated-")
  # transformers maps "gated-gelu" to the tanh approximation, any other "[gated-]act" to act.
  activation_name = "gelu_new" if projection == "gated-gelu" else projection.split("-")[-1]
  if activation_name not in _HF_ACTIVATIONS:
    raise CheckpointError(
        f"config.json feed_forward_proj={projection!r}: activation {activation_name!r} "
        f"is not supported; supported: {sorted(_HF_ACTIVATIONS)}.")
  activation = _HF_ACTIVATIONS[activation_name]
  values = dict(
      vocab_size=hf["vocab_size"], emb_dim=hf["d_model"], num_heads=hf["num_heads"],
      num_encoder_layers=hf["num_layers"],
      num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
      head_dim=hf["d_kv"], mlp_dim=hf["d_ff"],
      mlp_activations=(activation, "linear") if gated else (activation,),
      dropout_rate=hf.get("dropout_rate", 0.1),
      logits_via_embedding=hf.get("tie_word_embeddings", True) is not False,
      relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
      relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
      layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-6),
      pad_id=hf.get("pad_token_id", 0) if hf.get("pad_token_id") is not None else 0,
      eos_id=_first(hf.get("eos_token_id", 1)),
      decoder_start_id=hf.get("decoder_start_token_id", 0) or 0,
  )
  values.update(overrides)
  return T5Config(**values)


def _first(value):
  return value[0] if isinstance(value, (list, tuple)) else value


def config_to_hf(config: T5Config) -> dict[str, Any]:
  """The config.json transformers needs for `config` (untied stays untied on reload)."""
  activation = config.mlp_activations[0]
  if config.is_gated:
    if config.mlp_activations[1:] != ("linear",):
      raise ConfigError(
          "T5Config.mlp_activations: Hugging Face T5 supports one gated activation followed "
          f"by 'linear', got {config.mlp_activations}.")
    projection = "gated-gelu" if activation == "gelu" else f"gated-{_OUR_ACTIVATIONS[activation]}"
  else:
    projection = _OUR_ACTIVATIONS.get(activation)
    if projection is None:
      raise ConfigError(
          f"T5Config.mlp_activations={config.mlp_activations} has no Hugging Face form.")
  return {
      "architectures": ["T5ForConditionalGeneration"],
      "model_type": "t5",
      "is_encoder_decoder": True,
      "vocab_size": config.vocab_size,
      "d_model": config.emb_dim,
      "d_kv": config.head_dim,
      "d_ff": config.mlp_dim,
      "num_layers": config.num_encoder_layers,
      "num_decoder_layers": config.num_decoder_layers,
      "num_heads": config.num_heads,
      "relative_attention_num_buckets": config.relative_attention_num_buckets,
      "relative_attention_max_distance": config.relative_attention_max_distance,
      "dropout_rate": config.dropout_rate,
      "layer_norm_epsilon": config.layer_norm_epsilon,
      "initializer_factor": 1.0,
      "feed_forward_proj": projection,
      # transformers 5.x reads this key to decide the output scaling of a tied model and
      # whether to keep a separate lm_head; it must be written even though its own
      # T5Config.to_dict() reports True.
      "tie_word_embeddings": config.logits_via_embedding,
      "pad_token_id": config.pad_id,
      "eos_token_id": config.eos_id,
      "decoder_start_token_id": config.decoder_start_id,
      "use_cache": True,
      "dtype": "float32",
  }


# ----------------------------------------------------------------------------- weights


def _attention_names(stack: str) -> list[tuple[str, str, str]]:
  """(our module, HF layer index, HF module) for each attention of a block."""
  if stack == "encoder":
    return [("attention", "0", "SelfAttention")]
  return [("self_attention", "0", "SelfAttention"),
          ("encoder_decoder_attention", "1", "EncDecAttention")]


def _layer_norm_names(stack: str) -> list[tuple[str, str]]:
  if stack == "encoder":
    return [("pre_attention_layer_norm", "0"), ("pre_mlp_layer_norm", "1")]
  return [("pre_self_attention_layer_norm", "0"), ("pre_cross_attention_layer_norm", "1"),
          ("pre_mlp_layer_norm", "2")]


def parameter_map(config: T5Config) -> dict[tuple[str, ...], tuple[str, bool]]:
  """Our parameter path -> (HF state-dict key, whether the array is transposed)."""
  names: dict[tuple[str, ...], tuple[str, bool]] = {
      ("token_embedder", "embedding"): ("shared.weight", False)}
  if not config.logits_via_embedding:
    names[("decoder", "logits_dense", "kernel")] = ("lm_head.weight", True)
  mlp_names = ([f"wi_{i}" for i in range(len(config.mlp_activations))]
               if config.is_gated else ["wi"])
  for stack, depth in (("encoder", config.num_encoder_layers),
                       ("decoder", config.num_decoder_layers)):
    names[(stack, "relpos_bias", "rel_embedding")] = (
        f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", True)
    names[(stack, f"{stack}_norm", "scale")] = (f"{stack}.final_layer_norm.weight", False)
    mlp_index = "1" if stack == "encoder" else "2"
    for i in range(depth):
      block = f"{stack}.block.{i}.layer"
      ours = (stack, f"layers_{i}")
      for module, index, hf_module in _attention_names(stack):
        for our_name, hf_name in (("query", "q"), ("key", "k"), ("value", "v"), ("out", "o")):
          names[ours + (module, our_name, "kernel")] = (
              f"{block}.{index}.{hf_module}.{hf_name}.weight", True)
      for module, index in _layer_norm_names(stack):
        names[ours + (module, "scale")] = (f"{block}.{index}.layer_norm.weight", False)
      for name in mlp_names + ["wo"]:
        names[ours + ("mlp", name, "kernel")] = (
            f"{block}.{mlp_index}.DenseReluDense.{name}.weight", True)
  return names


# safetensors dtype names of the weights a T5 checkpoint holds.
_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
                       "F64": np.float64}
# Keys transformers writes that duplicate the shared embedding.
_TIED_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


def params_from_state_dict(config: T5Config, state: Mapping[str, np.ndarray]) -> dict:
  """Our nested parameter dict from a transformers T5 state dict (NumPy arrays)."""
  expected = parameter_map(config)
  missing = sorted(key for key, _ in expected.values() if key not in state)
  if missing:
    raise CheckpointError(
        f"The checkpoint lacks {len(missing)} tensor(s) this config needs, e.g. "
        f"{missing[:3]}: check num_layers / num_decoder_layers / feed_forward_proj / "
        "tie_word_embeddings in config.json against the weights.")
  known = {key for key, _ in expected.values()} | set(_TIED_COPIES)
  if config.logits_via_embedding:
    known.add("lm_head.weight")
  unexpected = sorted(set(state) - known)
  if unexpected:
    raise CheckpointError(
        f"The checkpoint holds {len(unexpected)} tensor(s) this config does not use, e.g. "
        f"{unexpected[:3]}: check num_layers / num_decoder_layers / feed_forward_proj in "
        "config.json against the weights.")
  flat = {path: _transposed(state[key]) if transpose else state[key]
          for path, (key, transpose) in expected.items()}
  return params_for_config(config, flat, source="the Hugging Face checkpoint")


def _transposed(array):
  return array.transposed() if isinstance(array, LazyArray) else np.asarray(array).T


def state_dict_from_params(config: T5Config, params) -> dict[str, np.ndarray]:
  """A transformers T5 state dict (float32 NumPy) from our parameters."""
  flat = traverse_util.flatten_dict(nn.unbox(jax.device_get(params)))
  state = {}
  for path, (key, transpose) in parameter_map(config).items():
    if path not in flat:
      raise CheckpointError(f"The parameters lack {'/'.join(path)}: do they match the config?")
    array = np.asarray(flat[path], dtype=np.float32)
    state[key] = np.ascontiguousarray(array.T if transpose else array)
  return state


# ----------------------------------------------------------------------------- files


def _read_state_dict(path: str) -> dict[str, np.ndarray]:
  single = os.path.join(path, "model.safetensors")
  index = os.path.join(path, "model.safetensors.index.json")
  torch_single = os.path.join(path, "pytorch_model.bin")
  torch_index = os.path.join(path, "pytorch_model.bin.index.json")
  if os.path.exists(single) or os.path.exists(index):
    state = {}
    for file in _weight_files(single, index):
      state.update(_read_safetensors(file))
    return state
  if os.path.exists(torch_single) or os.path.exists(torch_index):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise CheckpointError(
          f"{path} holds only PyTorch weights (pytorch_model.bin); install torch "
          "(pip install torch==2.13.0) or convert the checkpoint to safetensors.") from None
    state = {}
    for file in _weight_files(torch_single, torch_index):
      try:
        tensors = torch.load(file, map_location="cpu", weights_only=True)
      except Exception as error:  # torch raises RuntimeError, EOFError, KeyError, ...
        raise unreadable_checkpoint(file, error, file_format="PyTorch weights file",
                                    damage=_zip_damage(file)) from None
      state.update({k: v.float().numpy() for k, v in tensors.items()})
    return state
  raise CheckpointError(
      f"No weights in {path}: expected model.safetensors, model.safetensors.index.json or "
      "pytorch_model.bin.")


def _weight_files(single: str, index: str) -> list[str]:
  """[`single`] if it exists, else the shards `index` (a *.index.json) lists."""
  if os.path.exists(single):
    return [single]
  weight_map = read_checkpoint_json(index)
  weight_map = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
  if not isinstance(weight_map, dict):
    raise CheckpointError(f"{index} has no \"weight_map\" object listing the shard files; "
                          "copy it again.")
  directory = os.path.dirname(index)
  return [os.path.join(directory, name) for name in sorted(set(weight_map.values()))]


def _read_safetensors(file: str) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

  try:
    return load_file(file)
  except Exception as error:  # safetensors raises its own error types on bad files.
    raise _unreadable_safetensors(file, error) from None


def _unreadable_safetensors(file: str, error: BaseException) -> CheckpointError:
  return unreadable_checkpoint(file, error, file_format="safetensors file",
                               damage=_safetensors_damage(file))


# safetensors refuses headers above 100 MB; a larger "length" means another format.
_SAFETENSORS_MAX_HEADER = 100_000_000


def _safetensors_damage(file: str) -> str | None:
  """"the file is truncated (...)" when the file's safetensors header records more bytes
  than the file holds, else None (not a safetensors header, or not truncated)."""
  if not os.path.isfile(file):
    return None
  size = os.path.getsize(file)
  with open(file, "rb") as f:
    start = f.read(8)
    header_size = int.from_bytes(start, "little")
    if len(start) < 8 or header_size > _SAFETENSORS_MAX_HEADER:
      return None
    if 8 + header_size > size:
      return truncated(8 + header_size, size, "its safetensors header alone says")
    try:
      header = json.loads(f.read(header_size))
      end = 8 + header_size + max((entry["data_offsets"][1] for key, entry in header.items()
                                   if key != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
      return None
  return truncated(end, size, "the safetensors header says") if end > size else None


def _zip_damage(file: str) -> str | None:
  """"the file is truncated (...)" for a zip archive (torch.save's format) whose end, the
  directory of its members, is missing."""
  if not os.path.isfile(file):
    return None
  with open(file, "rb") as f:
    is_zip = f.read(4) == b"PK\x03\x04"
  if is_zip and not zipfile.is_zipfile(file):
    return ("the file is truncated (it is a zip archive without its central directory, "
            "which is written last)")
  return None


def load_config(path: str, **config_overrides) -> T5Config:
  """The T5Config of a local transformers T5 directory (its config.json only)."""
  config_file = os.path.join(path, "config.json")
  if not os.path.exists(config_file):
    raise CheckpointError(
        f"{path!r} is not a Hugging Face model directory: it has no config.json.")
  values = read_checkpoint_json(config_file)
  if not isinstance(values, dict):
    raise CheckpointError(f"{config_file} holds no JSON object; copy it again.")
  return config_from_hf(values, **config_overrides)


def _lazy_safetensors(path: str) -> dict[str, LazyArray] | None:
  """The state dict of model.safetensors (or its shards) as LazyArrays; None when the
  directory holds other weight files."""
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top

  single = os.path.join(path, "model.safetensors")
  index = os.path.join(path, "model.safetensors.index.json")
  if not (os.path.exists(single) or os.path.exists(index)):
    return None
  state = {}
  for file in _weight_files(single, index):
    try:
      with safe_open(file, framework="np") as f:
        views = {key: f.get_slice(key) for key in f.keys()}
        headers = {key: (view.get_shape(), view.get_dtype()) for key, view in views.items()}
    except Exception as error:  # safetensors raises its own error types on bad files.
      raise _unreadable_safetensors(file, error) from None
    for key, (shape, dtype_name) in headers.items():
      dtype = _SAFETENSORS_DTYPES.get(dtype_name)
      if dtype is None:
        raise CheckpointError(f"{file}: tensor {key!r} has dtype {dtype_name}, which is not "
                              "a floating-point weight type.")

      def read(index, file=file, key=key):
        try:
          with safe_open(file, framework="np") as handle:
            return handle.get_slice(key)[index]
        except Exception as error:  # the file changed since its header was read
          raise _unreadable_safetensors(file, error) from None

      state[key] = LazyArray(shape, dtype, read, f"{file}:{key}")
  return state


def load(path: str, *, lazy: bool = False, **config_overrides) -> tuple[T5Config, dict]:
  """(T5Config, params) from a local transformers T5 directory. `lazy`: LazyArray leaves
  read slice by slice when placed (lazy_arrays.py), for safetensors weights; .bin weights
  are read whole."""
  if not os.path.isdir(path):
    raise CheckpointError(
        f"Hugging Face checkpoint directory {path!r} does not exist (it must be a local "
        "directory holding config.json and the weights).")
  config = load_config(path, **config_overrides)
  state = _lazy_safetensors(path) if lazy else None
  if state is not None:
    return config, params_from_state_dict(config, state)
  state = _read_state_dict(path)
  state = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in state.items()}
  return config, params_from_state_dict(config, state)


def save(config: T5Config, params, output_dir: str, vocabulary_path: str | None = None, *,
         overwrite: bool = False) -> str:
  """Write a transformers T5 directory; refuses a non-empty `output_dir` unless `overwrite`.

  Files are written to a temporary directory beside `output_dir` and moved in place at the
  end, so a failure leaves what was there before untouched.
  """
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

  output_dir = os.path.abspath(output_dir)
  if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
    raise OutputExistsError(
        f"Export directory {output_dir} is not empty; choose an empty or new directory, or "
        "pass overwrite=True to replace it.")
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise OutputExistsError(f"Export path {output_dir} is a file, not a directory.")
  if vocabulary_path is not None and not os.path.isfile(vocabulary_path):
    raise InputMissingError(f"SentencePiece model {vocabulary_path!r} does not exist.")
  state = state_dict_from_params(config, params)
  parent = os.path.dirname(output_dir)
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
  try:
    save_file(state, os.path.join(staging, "model.safetensors"), metadata={"format": "pt"})
    _write_json(os.path.join(staging, "config.json"), config_to_hf(config))
    _write_json(os.path.join(staging, "generation_config.json"), {
        "decoder_start_token_id": config.decoder_start_id, "eos_token_id": config.eos_id,
        "pad_token_id": config.pad_id})
    if vocabulary_path is not None:
      _write_tokenizer(staging, vocabulary_path)
    if os.path.isdir(output_dir):
      shutil.rmtree(output_dir)
    os.replace(staging, output_dir)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return output_dir


def _write_tokenizer(directory: str, vocabulary_path: str) -> None:
  # transformers' T5Tokenizer ignores vocab_file=: it must find spiece.model in the
  # directory it loads (docs/model.md, "Hugging Face conversion").
  shutil.copyfile(vocabulary_path, os.path.join(directory, "spiece.model"))
  special = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
  extra = [f"<extra_id_{i}>" for i in range(SENTINEL_COUNT)]
  _write_json(os.path.join(directory, "special_tokens_map.json"),
              {**special, "additional_special_tokens": extra})
  _write_json(os.path.join(directory, "tokenizer_config.json"), {
      "tokenizer_class": "T5Tokenizer", "extra_ids": SENTINEL_COUNT,
      "additional_special_tokens": extra, "model_max_length": 512, **special})


def _write_json(path: str, value: Any) -> None:
  with open(path, "w") as f:
    json.dump(value, f, indent=2, sort_keys=True)
    f.write("\n")
