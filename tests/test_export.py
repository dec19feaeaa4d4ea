"""Export a trained checkpoint to Hugging Face: reloads with the same logits and generation."""

import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from miniend_jax.convert.hf_export import export
from miniend_jax.convert.validation import CheckpointError
from miniend_jax.evaluation.decoding import greedy_decode

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cli_export_reloads_in_transformers_with_same_logits_and_generation(
    tmp_path, trained_checkpoint, sentencepiece_model):
  model_dir, config, params = trained_checkpoint
  output_dir = str(tmp_path / "hf")
  result = subprocess.run(
      [sys.executable, "-m", "miniend_jax.export", f"--checkpoint_dir={model_dir}",
       f"--output_dir={output_dir}", f"--vocabulary={sentencepiece_model}"],
      cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True,
      timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "verified: transformers' logits match within" in result.stdout
  model = transformers.T5ForConditionalGeneration.from_pretrained(output_dir).eval()
  assert model.config.num_decoder_layers == 3
  tokenizer = transformers.AutoTokenizer.from_pretrained(output_dir)
  encoder = tokenizer(["Return the absolute value.", "Open a file."], padding=True,
                      return_tensors="np")["input_ids"]
  with torch.no_grad():
    expected = model.generate(input_ids=torch.tensor(encoder),
                              attention_mask=torch.tensor(encoder != 0), do_sample=False,
                              num_beams=1, max_new_tokens=8, min_new_tokens=0,
                              use_cache=False).numpy()[:, 1:]
  ours = np.asarray(greedy_decode(config, params, jnp.asarray(encoder), max_decode_length=8))
  np.testing.assert_array_equal(ours, np.pad(expected, ((0, 0), (0, 8 - expected.shape[1]))))


def test_export_refuses_a_non_empty_directory(tmp_path, trained_checkpoint):
  model_dir, _, _ = trained_checkpoint
  target = tmp_path / "hf"
  target.mkdir()
  (target / "README.md").write_text("mine")
  with pytest.raises(FileExistsError, match="not empty"):
    export(model_dir, str(target), verify=False)
  assert os.listdir(target) == ["README.md"]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(CheckpointError, match="does not exist"):
    export(str(tmp_path / "nothing"), str(tmp_path / "hf"))
  assert not (tmp_path / "hf").exists()
