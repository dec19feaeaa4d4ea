r"""Run the whole MiniEnD pipeline offline and write a report.

    python -m miniend_jax.quickstart --output_dir=/tmp/quickstart \
      [--size=small|miniature|medium] [--objectives=scratch,miniend_e|all] \
      [--teacher_steps=N] [--student_steps=N] [--finetune_steps=N] [--seed=0] \
      [--seeds=N] [--finetune_learning_rates=3e-3,1e-2]

Trains a SentencePiece vocabulary on the embedded corpus, pretrains a teacher, trains a
student with each objective (scratch, the baseline, always) under each seed, measures
span-corruption validation loss and attention health, finetunes every model on the
embedded downstream tasks at the rate chosen from a small grid and evaluates it, exports
the best student to Hugging Face format, and writes DIR/report.md (means, 95% intervals,
differences from scratch and a verdict computed from them) with its figures. A rerun with the same DIR and settings reuses the finished stages.
"""

from __future__ import annotations

import os
import time

from absl import flags
from absl import logging as absl_logging

from miniend_jax import console
from miniend_jax.quickstart import sizes

OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Directory for every stage and the "
                                 "report (reused by a rerun).", required=True)
SIZE = flags.DEFINE_enum("size", sizes.DEFAULT_SIZE, list(sizes.SIZES),
                         "miniature: about 2 minutes; small: at most 15 minutes on a 2-core "
                         "CPU; medium: for a GPU.")
OBJECTIVES = flags.DEFINE_string("objectives", "scratch,miniend_e",
                                 "Comma-separated objectives (gin_configs/objectives/), or "
                                 "'all' for the paper's eight. scratch is always included.")
TEACHER_STEPS = flags.DEFINE_integer("teacher_steps", None, "Override the size's teacher "
                                     "pretraining steps.")
STUDENT_STEPS = flags.DEFINE_integer("student_steps", None, "Override the size's steps of "
                                     "every student.")
FINETUNE_STEPS = flags.DEFINE_integer("finetune_steps", None, "Override the size's "
                                      "finetuning steps.")
SEED = flags.DEFINE_integer("seed", 0, "First seed (data order, initialisation); the "
                            "teacher is pretrained under it.")
SEEDS = flags.DEFINE_integer("seeds", None, "Run every student and every finetuning under "
                             "this many seeds (--seed, --seed + 1, ...); the report gives "
                             "means and 95% intervals. Default: the size's (small: 2). A "
                             "rerun with more seeds reuses the finished ones.")
FINETUNE_LEARNING_RATES = flags.DEFINE_list(
    "finetune_learning_rates", None, "Grid of finetuning rates each model's rate is chosen "
    "from by downstream validation loss (default: the size's; small: 3e-3,1e-2).")
CORPUS_DIR = flags.DEFINE_string(
    "corpus_dir", "embedded", "'embedded' (Python's own documentation, the default) or a "
    "directory holding pretraining/, classification/ and summarization/, each with "
    "train.jsonl and validation.jsonl (tools/man_pages_corpus.py writes one).")
FINETUNE_TEACHER = flags.DEFINE_bool("finetune_teacher", True, "Also finetune and evaluate "
                                     "the teacher (the table's reference row).")


def _enable_compilation_cache(output_dir: str) -> None:
  """Stages with the same shapes (the students' finetuning runs) compile once; a rerun
  compiles nothing. An explicitly configured cache is left alone."""
  import jax  # pylint: disable=g-import-not-at-top
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir",
                      os.path.join(os.path.abspath(output_dir), "compilation_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _run() -> None:
  start = time.time()
  absl_logging.set_verbosity(absl_logging.WARNING)
  from miniend_jax.quickstart import corpora, pipeline, report  # pylint: disable=g-import-not-at-top
  from miniend_jax.quickstart.workspace import Workspace  # pylint: disable=g-import-not-at-top
  rates = FINETUNE_LEARNING_RATES.value
  size = sizes.size(SIZE.value, teacher_steps=TEACHER_STEPS.value,
                    student_steps=STUDENT_STEPS.value, finetune_steps=FINETUNE_STEPS.value,
                    finetune_learning_rates=sizes.parse_rates(rates) if rates else None)
  seeds = pipeline.seed_list(SEED.value, SEEDS.value or size.seeds)
  corpus = corpora.corpus(CORPUS_DIR.value)
  objectives = pipeline.parse_objectives(OBJECTIVES.value)
  workspace = Workspace(OUTPUT_DIR.value, pipeline.run_settings(
      size, seed=SEED.value, finetune_teacher=FINETUNE_TEACHER.value, corpus=corpus))
  _enable_compilation_cache(workspace.root)
  run = pipeline.Pipeline(workspace, size, objectives, seeds=seeds,
                          finetune_teacher=FINETUNE_TEACHER.value, corpus=corpus)
  results = run.run()
  report.write(run, results, invocation_seconds=time.time() - start)
  print(open(workspace.path("report.md"), encoding="utf-8").read().split("## Stability")[0])
  workspace.say(f"report: {workspace.path('report.md')}")


def console_main():
  console.run_cli(_run)


if __name__ == "__main__":
  console_main()
