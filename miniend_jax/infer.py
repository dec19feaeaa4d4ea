r"""Write a checkpoint's predictions on a seqio task as JSON lines, t5x-style.

    python -m miniend_jax.infer --gin_file=runs/infer.gin \
      --gin.CHECKPOINT_PATH=\"/tmp/run\" --gin.OUTPUT_FILE=\"/tmp/predictions.jsonl\" \
      --gin.MIXTURE_OR_TASK_NAME=\"embedded_summarization\"

One line per example: {"inputs", "prediction"[, "score"]} (see
miniend_jax.evaluation.evaluator.infer and gin_configs/runs/infer.gin).
"""

from miniend_jax import console

console.import_tensorflow_quietly()   # before seqio imports it

from miniend_jax import gin_cli  # noqa: E402
from miniend_jax.evaluation import evaluator  # noqa: E402


def console_main():
  gin_cli.console_main(evaluator.infer)


if __name__ == "__main__":
  console_main()
