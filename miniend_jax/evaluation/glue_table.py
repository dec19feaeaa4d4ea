r"""GLUE results in the MiniEnD paper's shape, from evaluation metrics files.

    python -m miniend_jax.evaluation.glue_table \
      --eval_dir=scratch=/runs/scratch/eval --eval_dir=miniend_e=/runs/miniend_e/eval

Each eval directory holds seqio's `glue_<task>_v002-metrics.jsonl` (written by eval or by
evaluation during finetuning); the latest step of each task is used. Columns are the
paper's (SST-2, MRPC F1, STS-B, QQP F1, MNLI-m, MNLI-mm, QNLI, RTE) and the GLUE score is
their mean (STS-B: Pearson by default).
"""

from __future__ import annotations

from collections.abc import Mapping

from absl import app, flags

from miniend_jax.data.metrics import PAPER_GLUE_TASKS, glue_score
from miniend_jax.evaluation.metrics_files import latest_task_metrics

COLUMNS = {"sst2": "SST-2", "mrpc": "MRPC (F1)", "stsb": "STS-B", "qqp": "QQP (F1)",
           "mnli_matched": "MNLI-m", "mnli_mismatched": "MNLI-mm", "qnli": "QNLI",
           "rte": "RTE"}


def latest_metrics(eval_dir: str, tasks=PAPER_GLUE_TASKS) -> dict[str, dict[str, float]]:
  """{task: metrics of its latest evaluated step} from glue_<task>_v002-metrics.jsonl."""
  result = {}
  for task in tasks:
    latest = latest_task_metrics(
        eval_dir, f"glue_{task}_v002",
        hint=" (or the glue_v002_proportional mixture)")
    result[task] = {k: v for k, v in latest.items() if k != "step"}
  return result


def glue_table(eval_dirs: Mapping[str, str], *, stsb_metric: str = "pearson") -> str:
  """A markdown table: one row per model, the paper's columns and the GLUE score."""
  header = ["model", *COLUMNS.values(), "GLUE score"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for name, eval_dir in eval_dirs.items():
    scores = glue_score(latest_metrics(eval_dir), tasks=PAPER_GLUE_TASKS,
                        stsb_metric=stsb_metric)
    cells = [f"{scores[task]:.1f}" for task in COLUMNS] + [f"{scores['glue_score']:.1f}"]
    lines.append("| " + " | ".join([name, *cells]) + " |")
  return "\n".join(lines) + "\n"


EVAL_DIRS = flags.DEFINE_multi_string("eval_dir", [], "name=directory, one per model.")
STSB_METRIC = flags.DEFINE_enum("stsb_metric", "pearson", ["pearson", "spearman", "mean"],
                                "STS-B headline metric.")


def main(argv):
  del argv
  rows = {}
  for entry in EVAL_DIRS.value:
    name, separator, directory = entry.partition("=")
    if not separator:
      raise app.UsageError(f"--eval_dir takes name=directory, got {entry!r}.")
    rows[name] = directory
  print(glue_table(rows, stsb_metric=STSB_METRIC.value), end="")


if __name__ == "__main__":
  app.run(main)
