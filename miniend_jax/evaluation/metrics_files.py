"""Reading the metrics files evaluation writes: `<task>-metrics.jsonl` (seqio's JSON logger,
one {"step", metric: value...} object per evaluation) and a run's `metrics.jsonl`."""

from __future__ import annotations

import json
import os


def read_jsonl(path: str) -> list[dict]:
  """Every JSON object of a JSON-lines file (blank lines skipped)."""
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def latest_task_metrics(eval_dir: str, task: str, *, hint: str = "") -> dict[str, float]:
  """{"step": ..., metric: value} of the latest evaluated step in <task>-metrics.jsonl."""
  path = os.path.join(eval_dir, f"{task}-metrics.jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} is missing: evaluate the model on {task} first{hint}.")
  records = read_jsonl(path)
  if not records:
    raise ValueError(f"{path} holds no evaluation.")
  return max(records, key=lambda r: r.get("step", -1))
