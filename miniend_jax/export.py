r"""Export a checkpoint to a Hugging Face T5 directory, verified by reloading it.

    python -m miniend_jax.export --checkpoint_dir=/tmp/run [--output_dir=/tmp/hf] \
      [--vocabulary=spiece.model] [--overwrite]

`--checkpoint_dir` is any checkpoint load_model reads (one of our runs or one of its
checkpoint_<step>/ directories, a t5x checkpoint (give --model_preset), a
Hugging Face directory). When torch is installed the export is reloaded with
transformers and its logits compared with ours on a random batch; a mismatch is an error.
"""

from __future__ import annotations

from absl import flags

from miniend_jax.convert.hf_export import export
from miniend_jax import console

CHECKPOINT_DIR = flags.DEFINE_string("checkpoint_dir", None, "Checkpoint to export.",
                                     required=True)
OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Hugging Face directory to write.",
                                 required=True)
VOCABULARY = flags.DEFINE_string("vocabulary", None,
                                 "SentencePiece model to ship as spiece.model (default: the "
                                 "run directory's spiece.model, if it has one).")
MODEL_PRESET = flags.DEFINE_string("model_preset", None,
                                   "Architecture of a t5x checkpoint (they record none).")
OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a non-empty output directory.")
VERIFY = flags.DEFINE_bool("verify", True, "Reload with transformers and compare logits.")


def _export() -> None:
  result = export(CHECKPOINT_DIR.value, OUTPUT_DIR.value, vocabulary=VOCABULARY.value,
                  model_preset=MODEL_PRESET.value, overwrite=OVERWRITE.value,
                  verify=VERIFY.value)
  difference = result["max_logit_difference"]
  check = ("not verified (torch not installed)" if difference is None
           else f"verified: transformers' logits match within {difference:.2e}")
  print(f"Exported to {result['output_dir']}; {check}.")


def console_main():
  console.run_cli(_export)


if __name__ == "__main__":
  console_main()
