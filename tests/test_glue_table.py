"""The GLUE table renders from seqio metrics files, with the paper's columns and score."""

import json

import pytest

from miniend_jax.evaluation.glue_table import glue_table

HEADLINES = {"sst2": ("accuracy", 90.0), "mrpc": ("f1", 88.0), "stsb": ("pearson_corrcoef", 86.0),
             "qqp": ("f1", 84.0), "mnli_matched": ("accuracy", 82.0),
             "mnli_mismatched": ("accuracy", 80.0), "qnli": ("accuracy", 78.0),
             "rte": ("accuracy", 76.0)}


def write_metrics(directory, shift=0.0):
  directory.mkdir()
  for task, (metric, value) in HEADLINES.items():
    extra = {"spearman_corrcoef": 50.0} if task == "stsb" else {"accuracy": 1.0}
    lines = [{"step": 10, metric: 0.0, **extra},  # an older evaluation is ignored
             {"step": 20, **extra, metric: value + shift}]
    with open(directory / f"glue_{task}_v002-metrics.jsonl", "w") as f:
      f.write("\n".join(json.dumps(line) for line in lines) + "\n")


def test_table_has_the_paper_columns_and_mean_score(tmp_path):
  write_metrics(tmp_path / "a")
  write_metrics(tmp_path / "b", shift=1.0)
  table = glue_table({"scratch": str(tmp_path / "a"), "miniend_e": str(tmp_path / "b")})
  lines = table.splitlines()
  assert lines[0] == ("| model | SST-2 | MRPC (F1) | STS-B | QQP (F1) | MNLI-m | MNLI-mm | "
                      "QNLI | RTE | GLUE score |")
  assert lines[2] == "| scratch | 90.0 | 88.0 | 86.0 | 84.0 | 82.0 | 80.0 | 78.0 | 76.0 | 83.0 |"
  assert lines[3].endswith("| 84.0 |")
  spearman = glue_table({"x": str(tmp_path / "a")}, stsb_metric="spearman")
  assert "| x | 90.0 | 88.0 | 50.0 |" in spearman


def test_missing_task_is_named(tmp_path):
  write_metrics(tmp_path / "a")
  (tmp_path / "a" / "glue_rte_v002-metrics.jsonl").unlink()
  with pytest.raises(FileNotFoundError, match="glue_rte_v002-metrics.jsonl is missing"):
    glue_table({"x": str(tmp_path / "a")})
