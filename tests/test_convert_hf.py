"""Hugging Face import/export: formats, round trips, tokenizer files, and bad input."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
import torch
import transformers

from miniend_jax.convert import hf
from miniend_jax.convert.validation import UnreadableCheckpointError
from miniend_jax.model import Transformer, init_params, preset
from tests.hf_t5 import write_random_hf_t5

TINY_HF = dict(vocab_size=64, d_model=16, d_kv=4, d_ff=24, num_heads=2, num_layers=2,
               num_decoder_layers=1, feed_forward_proj="gated-gelu", tie_word_embeddings=False)


def _batch(vocab, seed=0):
  rng = np.random.default_rng(seed)
  encoder = rng.integers(2, vocab, (2, 9))
  encoder[1, 5:] = 0
  decoder = rng.integers(2, vocab, (2, 6))
  decoder[:, 0] = 0
  return encoder, decoder


def _torch_logits(model, encoder, decoder):
  with torch.no_grad():
    return model(input_ids=torch.tensor(encoder), attention_mask=torch.tensor(encoder != 0),
                 decoder_input_ids=torch.tensor(decoder)).logits.numpy()


def _our_logits(config, params, encoder, decoder):
  return np.asarray(Transformer(config).apply({"params": params}, encoder, decoder))


@pytest.mark.parametrize("preset_name", ["tiny", "tiny_tied"])
def test_save_then_transformers_reload_gives_the_same_logits(tmp_path, preset_name):
  config = (preset("tiny", mlp_activations=("relu",), logits_via_embedding=True,
                   num_decoder_layers=3)
            if preset_name == "tiny_tied" else preset("tiny", num_encoder_layers=3))
  params = init_params(config, jax.random.key(1))  # boxed, as a training run holds them
  hf.save(config, params, str(tmp_path / "export"))
  reloaded = transformers.T5ForConditionalGeneration.from_pretrained(
      str(tmp_path / "export")).eval()
  untied = not config.logits_via_embedding
  assert (reloaded.lm_head.weight.data_ptr() != reloaded.shared.weight.data_ptr()) == untied
  encoder, decoder = _batch(config.vocab_size)
  ours = _our_logits(config, jax.tree_util.tree_map(np.asarray, hf.load(
      str(tmp_path / "export"))[1]), encoder, decoder)
  np.testing.assert_allclose(_torch_logits(reloaded, encoder, decoder), ours, atol=1e-4)
  # Our own reload gives back the config and the very same arrays.
  config_back, params_back = hf.load(str(tmp_path / "export"))
  assert config_back == config
  for a, b in zip(jax.tree_util.tree_leaves(params_back),
                  jax.tree_util.tree_leaves(jax.tree_util.tree_map(
                      np.asarray, __import__("flax").linen.unbox(params)))):
    np.testing.assert_array_equal(a, b)


def test_sharded_safetensors_and_pytorch_bin_load(tmp_path):
  model = write_random_hf_t5(str(tmp_path / "single"), seed=3, **TINY_HF)
  config, params = hf.load(str(tmp_path / "single"))
  encoder, decoder = _batch(config.vocab_size, seed=1)
  expected = _torch_logits(model, encoder, decoder)

  sharded = tmp_path / "sharded"
  sharded.mkdir()
  from safetensors.numpy import load_file, save_file  # pylint: disable=g-import-not-at-top
  state = load_file(str(tmp_path / "single" / "model.safetensors"))
  names = sorted(state)
  weight_map = {}
  for index, part in enumerate((names[:len(names) // 2], names[len(names) // 2:])):
    file = f"model-0000{index + 1}-of-00002.safetensors"
    save_file({k: state[k] for k in part}, str(sharded / file))
    weight_map.update({k: file for k in part})
  (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
  (sharded / "config.json").write_text((tmp_path / "single" / "config.json").read_text())
  np.testing.assert_allclose(_our_logits(*hf.load(str(sharded)), encoder, decoder), expected,
                             atol=1e-4)

  binary = tmp_path / "bin"
  binary.mkdir()
  torch.save({k: torch.from_numpy(v) for k, v in state.items()}, str(binary / "pytorch_model.bin"))
  (binary / "config.json").write_text((tmp_path / "single" / "config.json").read_text())
  np.testing.assert_allclose(_our_logits(*hf.load(str(binary)), encoder, decoder), expected,
                             atol=1e-4)
  del params


def test_exported_tokenizer_matches_our_vocabulary(tmp_path, sentencepiece_model):
  import seqio  # pylint: disable=g-import-not-at-top
  vocabulary = seqio.SentencePieceVocabulary(sentencepiece_model, extra_ids=100)
  config = preset("tiny", vocab_size=vocabulary.vocab_size)
  hf.save(config, init_params(config, jax.random.key(0)), str(tmp_path / "export"),
          vocabulary_path=sentencepiece_model)
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "export"))
  for text in ["Return the absolute value of the argument.",
               "The with statement is used to wrap the execution of a block.", "x = 3 ** 2"]:
    ours = [int(i) for i in vocabulary.encode(text)]
    assert tokenizer(text, add_special_tokens=False).input_ids == ours
    assert tokenizer(text).input_ids == ours + [1]  # EOS appended, as T5 does
    assert tokenizer.decode(ours) == vocabulary.decode(ours)
  assert tokenizer.convert_tokens_to_ids("<extra_id_0>") == vocabulary.vocab_size - 1
  assert tokenizer.convert_tokens_to_ids("<extra_id_99>") == vocabulary.vocab_size - 100
  assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)


def test_export_refuses_a_non_empty_directory_and_keeps_its_files(tmp_path):
  config = preset("tiny")
  params = init_params(config, jax.random.key(0))
  target = tmp_path / "export"
  target.mkdir()
  (target / "notes.txt").write_text("keep me")
  with pytest.raises(FileExistsError, match="not empty.*overwrite=True"):
    hf.save(config, params, str(target))
  assert (target / "notes.txt").read_text() == "keep me"
  hf.save(config, params, str(target), overwrite=True)
  assert sorted(os.listdir(target)) == ["config.json", "generation_config.json",
                                        "model.safetensors"]
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".export-")]


def test_load_errors_are_clear(tmp_path):
  with pytest.raises(hf.CheckpointError, match="does not exist"):
    hf.load(str(tmp_path / "missing"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(hf.CheckpointError, match="no config.json"):
    hf.load(str(tmp_path / "empty"))
  write_random_hf_t5(str(tmp_path / "model"), **TINY_HF)
  config_file = tmp_path / "model" / "config.json"
  original = json.loads(config_file.read_text())

  def load_with(**changes):
    config_file.write_text(json.dumps({**original, **changes}))
    return hf.load(str(tmp_path / "model"))

  with pytest.raises(hf.CheckpointError, match="vocab_size mismatch: the config says 80"):
    load_with(vocab_size=80)
  with pytest.raises(hf.CheckpointError, match="lacks .* tensor.*num_layers"):
    load_with(num_layers=3)
  with pytest.raises(hf.CheckpointError, match="does not use.*num_decoder_layers"):
    load_with(num_decoder_layers=0, num_layers=1)
  with pytest.raises(hf.CheckpointError, match="has shape .*mlp_dim"):
    load_with(d_ff=30)
  with pytest.raises(hf.CheckpointError, match="model_type 'bart'"):
    load_with(model_type="bart")
  with pytest.raises(hf.CheckpointError, match="activation 'tanhh'"):
    load_with(feed_forward_proj="gated-tanhh")
  os.remove(tmp_path / "model" / "model.safetensors")
  with pytest.raises(hf.CheckpointError, match="No weights"):
    load_with()


def _cut_to(path, size):
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:size])
  return len(data)


def _kb(n):
  return f"{n / 1000:.1f} kB"


def _place(params):
  """Every leaf on one device, as the trainer places a model (reading lazy leaves now)."""
  from miniend_jax.convert.lazy_arrays import place_on_mesh  # pylint: disable=g-import-not-at-top
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return place_on_mesh(params, jax.tree_util.tree_map(lambda _: sharding, params), np.float32)


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_damaged_weight_files_are_one_sentence_naming_them(tmp_path, lazy):
  """A truncated, empty or foreign weights file (or a config.json that is not JSON) is one
  UnreadableCheckpointError line naming the file, what is wrong and what to do."""
  original = tmp_path / "original"
  write_random_hf_t5(str(original), **TINY_HF)
  weights = (original / "model.safetensors").read_bytes()

  def damaged(name, damage, file="model.safetensors"):
    directory = tmp_path / name
    shutil.copytree(original, directory)
    damage(directory / file)
    with pytest.raises(UnreadableCheckpointError) as raised:
      _place(hf.load(str(directory), lazy=lazy)[1])
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"Checkpoint file '{directory / file}' cannot be read: ")
    return message.split(" cannot be read: ", 1)[1]

  assert damaged("half", lambda f: _cut_to(f, 12_000)) == (
      f"the file is truncated (the safetensors header says {_kb(len(weights))}, the file "
      "has 12.0 kB); copy it again.")
  header = int.from_bytes(weights[:8], "little")
  assert damaged("header_cut", lambda f: _cut_to(f, 100)) == (
      f"the file is truncated (its safetensors header alone says {_kb(8 + header)}, the "
      "file has 100 bytes); copy it again.")
  assert damaged("empty", lambda f: _cut_to(f, 0)) == "the file is empty; copy it again."
  assert damaged("text", lambda f: f.write_text("Not found\n")) == (
      "it is a text file, not a safetensors file (it starts with 'Not found'); copy it again.")
  lfs = "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 35412\n"
  assert damaged("lfs", lambda f: f.write_text(lfs)).startswith(
      "it is a Git LFS pointer, not the file itself; fetch the file with `git lfs pull`")
  assert damaged("config", lambda f: f.write_text('{"d_model": 16,'), file="config.json") == (
      "it is not valid JSON (Expecting property name enclosed in double quotes at line 1, "
      "column 16); copy it again.")


def test_damaged_shards_and_pytorch_weights_are_one_sentence(tmp_path):
  write_random_hf_t5(str(tmp_path / "single"), **TINY_HF)
  from safetensors.numpy import load_file, save_file  # pylint: disable=g-import-not-at-top
  state = load_file(str(tmp_path / "single" / "model.safetensors"))
  sharded = tmp_path / "sharded"
  sharded.mkdir()
  names = sorted(state)
  weight_map = {}
  for index, part in enumerate((names[:len(names) // 2], names[len(names) // 2:])):
    save_file({k: state[k] for k in part}, str(sharded / f"part{index}.safetensors"))
    weight_map.update({k: f"part{index}.safetensors" for k in part})
  (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
  shutil.copy(tmp_path / "single" / "config.json", sharded)
  _cut_to(sharded / "part1.safetensors", 5000)
  for lazy in (False, True):
    with pytest.raises(UnreadableCheckpointError,
                       match=r"^Checkpoint file '.*/sharded/part1.safetensors' cannot be read: "
                             r"the file is truncated \(the safetensors header says .* kB, the "
                             r"file has 5.0 kB\); copy it again\.$"):
      hf.load(str(sharded), lazy=lazy)
  (sharded / "model.safetensors.index.json").write_text('{"weight_map": {')
  with pytest.raises(UnreadableCheckpointError,
                     match=r"model.safetensors.index.json' cannot be read: it is not valid JSON"):
    hf.load(str(sharded))

  binary = tmp_path / "bin"
  binary.mkdir()
  shutil.copy(tmp_path / "single" / "config.json", binary)
  torch.save({k: torch.from_numpy(v) for k, v in state.items()}, str(binary / "pytorch_model.bin"))
  _cut_to(binary / "pytorch_model.bin", 5000)
  for lazy in (False, True):   # a lazy load reads .bin weights whole, at once
    with pytest.raises(UnreadableCheckpointError,
                       match=r"^Checkpoint file '.*/bin/pytorch_model.bin' cannot be read: the "
                             r"file is truncated \(it is a zip archive without its central "
                             r"directory, which is written last\); copy it again\.$"):
      hf.load(str(binary), lazy=lazy)


def test_a_file_damaged_after_a_lazy_load_fails_as_it_is_placed(tmp_path):
  """The lazy path reads when the weights are placed on the mesh: a file cut short since
  the load is the same sentence then."""
  write_random_hf_t5(str(tmp_path / "model"), **TINY_HF)
  _, params = hf.load(str(tmp_path / "model"), lazy=True)
  size = _cut_to(tmp_path / "model" / "model.safetensors", 20_000)
  with pytest.raises(UnreadableCheckpointError,
                     match=r"^Checkpoint file '.*/model.safetensors' cannot be read: the file is "
                           rf"truncated \(the safetensors header says {_kb(size)}, the file has "
                           r"20.0 kB\); copy it again\.$"):
    _place(params)
