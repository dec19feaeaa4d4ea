r"""Evaluate checkpoints on a seqio task or mixture, t5x-style.

    python -m miniend_jax.eval --gin_file=runs/eval.gin \
      --gin.CHECKPOINT_PATH=\"/tmp/run\" --gin.EVAL_OUTPUT_DIR=\"/tmp/run/eval\" \
      --gin.MIXTURE_OR_TASK_NAME=\"embedded_topic_classification\"

Writes <task>-metrics.jsonl and TensorBoard scalars to EVAL_OUTPUT_DIR (see
miniend_jax.evaluation.evaluator.evaluate and gin_configs/runs/eval.gin).
"""

from miniend_jax import console

console.import_tensorflow_quietly()   # before seqio imports it

from miniend_jax import gin_cli  # noqa: E402
from miniend_jax.evaluation import evaluator  # noqa: E402


def console_main():
  gin_cli.console_main(evaluator.evaluate)


if __name__ == "__main__":
  console_main()
