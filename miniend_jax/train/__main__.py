r"""Distil, pretrain or finetune a T5, t5x-style.

    python -m miniend_jax.train \
      --gin_file=gin_configs/experiments/tiny_distill.gin \
      --gin.MODEL_DIR=\"/tmp/run\" [--gin.TRAIN_STEPS=100] \
      [--coordinator_address=host:port --process_count=N --process_index=i]

The gin files bind `miniend_jax.train.trainer.train`'s arguments (see
gin_configs/runs/*.gin for the macros each run needs).
"""

from __future__ import annotations

import sys

import gin
from absl import app, flags, logging

from miniend_jax import gin_cli
from miniend_jax.train import partitioning, trainer

FLAGS = flags.DEFINE_multi_string("gin_file", [], "Gin files; later ones override earlier.")
BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. 'X = 1'.")
SEARCH_PATHS = flags.DEFINE_list("gin_search_paths", [],
                                 "Directories searched for gin files and includes.")
COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                  "host:port of process 0, for multi-host runs.")
PROCESS_COUNT = flags.DEFINE_integer("process_count", None, "Processes in a multi-host run.")
PROCESS_INDEX = flags.DEFINE_integer("process_index", None, "This process's index.")


def run() -> None:
  """Join the multi-host run if asked, parse gin, call the configured trainer."""
  partitioning.initialize_distributed(COORDINATOR.value, PROCESS_COUNT.value,
                                      PROCESS_INDEX.value)
  gin_cli.parse(FLAGS.value, BINDINGS.value, SEARCH_PATHS.value)
  gin.get_configurable(trainer.train)(operative_config=gin.operative_config_str)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    run()
  except (gin_cli.GinConfigError, ValueError, FileNotFoundError, FileExistsError,
          RuntimeError, FloatingPointError) as error:
    # One clear line for user errors (bad config, data, paths); no framework trace.
    logging.error("%s: %s", type(error).__name__, error)
    print(f"error: {error}", file=sys.stderr)
    sys.exit(1)


def console_main():
  app.run(main, argv=gin_cli.rewrite_gin_flags(sys.argv))


if __name__ == "__main__":
  console_main()
