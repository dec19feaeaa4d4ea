"""Export any checkpoint to a Hugging Face T5 directory, verified by reloading it.

`export(checkpoint_dir, output_dir)` reads whatever load_model reads (one of our runs or one
of its checkpoint_<step>/ directories, a t5x checkpoint given its preset, a Hugging Face
directory), writes it with hf.save and, when torch is installed, reloads the result with
transformers and compares its logits with ours on a random batch; a mismatch is an error.
`python -m miniend_jax.export` is the command line.
"""

from __future__ import annotations

import numpy as np

from miniend_jax.convert import hf
from miniend_jax.convert.checkpoint_loading import load_model
from miniend_jax.convert.model_vocabulary import vocabulary_file
from miniend_jax.model import Transformer, preset
from miniend_jax.model.config import T5Config


def verify_with_transformers(config: T5Config, params, output_dir: str, *,
                             seed: int = 0) -> float | None:
  """Max |logit difference| between transformers' reload and ours (None without torch)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  rng = np.random.default_rng(seed)
  encoder = rng.integers(2, config.vocab_size, (2, 12))
  encoder[1, 7:] = 0
  decoder = rng.integers(2, config.vocab_size, (2, 6))
  decoder[:, 0] = config.decoder_start_id
  model = transformers.T5ForConditionalGeneration.from_pretrained(output_dir).eval()
  with torch.no_grad():
    theirs = model(input_ids=torch.tensor(encoder), attention_mask=torch.tensor(encoder != 0),
                   decoder_input_ids=torch.tensor(decoder)).logits.numpy()
  ours = np.asarray(Transformer(config).apply({"params": params}, encoder, decoder))
  return float(np.max(np.abs(theirs - ours)))


def export(checkpoint_dir: str, output_dir: str, *, vocabulary: str | None = None,
           model_preset: str | None = None, overwrite: bool = False, verify: bool = True,
           tolerance: float = 1e-3) -> dict:
  """Write the export and return {"output_dir", "config", "max_logit_difference"}.
  `vocabulary`: the SentencePiece model to ship; by default the one the checkpoint's run
  directory carries (our runs write theirs), if any."""
  config = preset(model_preset) if model_preset else None
  config, params = load_model(checkpoint_dir, config)
  vocabulary = vocabulary or vocabulary_file(checkpoint_dir)
  path = hf.save(config, params, output_dir, vocabulary_path=vocabulary, overwrite=overwrite)
  difference = verify_with_transformers(config, params, path) if verify else None
  if difference is not None and difference > tolerance:
    raise ValueError(
        f"The export in {path} does not reproduce the checkpoint: transformers' logits differ "
        f"by up to {difference:.3g} (tolerance {tolerance}).")
  return {"output_dir": path, "config": config, "max_logit_difference": difference}
