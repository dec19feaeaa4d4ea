"""Reading the metrics files evaluation writes: `<task>-metrics.jsonl` (seqio's JSON logger,
one {"step", metric: value...} object per evaluation), the per-example predictions beside
them (`<task>-<step>.jsonl`) and a run's `metrics.jsonl`."""

from __future__ import annotations

import json
import os

from miniend_jax.data import metrics
from miniend_jax.errors import InputMissingError


def read_jsonl(path: str) -> list[dict]:
  """Every JSON object of a JSON-lines file (blank lines skipped)."""
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def latest_task_metrics(eval_dir: str, task: str, *, hint: str = "") -> dict[str, float]:
  """{"step": ..., metric: value} of the latest evaluated step in <task>-metrics.jsonl."""
  path = os.path.join(eval_dir, f"{task}-metrics.jsonl")
  if not os.path.exists(path):
    raise InputMissingError(f"{path} is missing: evaluate the model on {task} first{hint}.")
  records = read_jsonl(path)
  if not records:
    raise InputMissingError(f"{path} holds no evaluation.")
  return max(records, key=lambda r: r.get("step", -1))


def example_scores(eval_dir: str, task: str, step: int, metric: str) -> list[float]:
  """Each example's score behind `metric` at `step`, from the predictions file seqio's JSON
  logger writes beside the metrics (<task>-<step:06>.jsonl): 100 for a right answer and 0
  for a wrong one ("accuracy"), or the example's ROUGE F-measure x 100 ("rouge1",
  "rouge2", "rougeL"). Their mean is the metric the task reports."""
  path = os.path.join(eval_dir, f"{task}-{step:06d}.jsonl")
  if not os.path.exists(path):
    raise InputMissingError(f"{path} is missing: evaluate {task} at step {step} first.")
  records = read_jsonl(path)
  targets = [r["target"] for r in records]
  predictions = [r["prediction"] for r in records]
  if metric == "accuracy":
    return [100.0 * (t == p) for t, p in zip(targets, predictions)]
  if metric in ("rouge1", "rouge2", "rougeL"):
    return metrics.rouge_per_example(targets, predictions, score_keys=(metric,))[
        metric].tolist()
  raise ValueError(f"No per-example scores for metric {metric!r}; known: accuracy, rouge1, "
                   "rouge2, rougeL.")
