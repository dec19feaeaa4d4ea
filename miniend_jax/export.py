r"""Export a checkpoint to a Hugging Face T5 directory, verified by reloading it.

    python -m miniend_jax.export --checkpoint_dir=/tmp/run [--output_dir=/tmp/hf] \
      [--vocabulary=spiece.model] [--overwrite]

`--checkpoint_dir` is any checkpoint load_model reads (one of our runs or one of its
checkpoint_<step>/ directories, a t5x checkpoint (give --model_preset), a
Hugging Face directory). When torch is installed the export is reloaded with
transformers and its logits compared with ours on a random batch; a mismatch is an error.
"""

from __future__ import annotations

import sys

import numpy as np
from absl import app, flags

from miniend_jax.convert import hf
from miniend_jax.convert.checkpoint_loading import load_model
from miniend_jax.model import Transformer, preset
from miniend_jax.model.config import T5Config

CHECKPOINT_DIR = flags.DEFINE_string("checkpoint_dir", None, "Checkpoint to export.",
                                     required=True)
OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Hugging Face directory to write.",
                                 required=True)
VOCABULARY = flags.DEFINE_string("vocabulary", None,
                                 "SentencePiece model to ship as spiece.model.")
MODEL_PRESET = flags.DEFINE_string("model_preset", None,
                                   "Architecture of a t5x checkpoint (they record none).")
OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a non-empty output directory.")
VERIFY = flags.DEFINE_bool("verify", True, "Reload with transformers and compare logits.")


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
  """Write the export and return {"output_dir", "config", "max_logit_difference"}."""
  config = preset(model_preset) if model_preset else None
  config, params = load_model(checkpoint_dir, config)
  path = hf.save(config, params, output_dir, vocabulary_path=vocabulary, overwrite=overwrite)
  difference = verify_with_transformers(config, params, path) if verify else None
  if difference is not None and difference > tolerance:
    raise ValueError(
        f"The export in {path} does not reproduce the checkpoint: transformers' logits differ "
        f"by up to {difference:.3g} (tolerance {tolerance}).")
  return {"output_dir": path, "config": config, "max_logit_difference": difference}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    result = export(CHECKPOINT_DIR.value, OUTPUT_DIR.value, vocabulary=VOCABULARY.value,
                    model_preset=MODEL_PRESET.value, overwrite=OVERWRITE.value,
                    verify=VERIFY.value)
  except (ValueError, FileExistsError, FileNotFoundError) as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(1)
  difference = result["max_logit_difference"]
  check = ("not verified (torch not installed)" if difference is None
           else f"verified: transformers' logits match within {difference:.2e}")
  print(f"Exported to {result['output_dir']}; {check}.")


def console_main():
  app.run(main)


if __name__ == "__main__":
  console_main()
