r"""Distil, pretrain or finetune a T5, t5x-style.

    python -m miniend_jax.train \
      --gin_file=gin_configs/experiments/tiny_distill.gin \
      --gin.MODEL_DIR=\"/tmp/run\" [--gin.TRAIN_STEPS=100] \
      [--coordinator_address=host:port --process_count=N --process_index=i]

The gin files bind `miniend_jax.train.trainer.train`'s arguments (see
gin_configs/runs/*.gin for the macros each run needs).
"""

from __future__ import annotations

from miniend_jax import console

console.import_tensorflow_quietly()   # before seqio imports it

import gin  # noqa: E402

from miniend_jax import gin_cli  # noqa: E402
from miniend_jax.train import trainer  # noqa: E402


def console_main():
  gin_cli.console_main(trainer.train, operative_config=gin.operative_config_str)


if __name__ == "__main__":
  console_main()
