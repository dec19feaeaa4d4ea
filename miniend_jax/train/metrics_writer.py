"""Where training metrics go: MODEL_DIR/metrics.jsonl, TensorBoard, and the console.

Only process 0 writes; every process computes the same (global) values.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping

import jax


def _format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _keep_records_up_to(path: str, step: int) -> None:
  """Before a resumed run appends: drop the records of steps after its checkpoint (a killed
  run logged them, the resumed one logs them again) and a line cut short by the kill."""
  if not os.path.exists(path):
    return
  with open(path, encoding="utf-8", errors="replace") as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      continue
    if line.endswith("\n") and record.get("step", 0) <= step:
      kept.append(line)
  if kept != lines:
    with open(path + ".tmp", "w", encoding="utf-8") as f:
      f.writelines(kept)
    os.replace(path + ".tmp", path)


class MetricsWriter:
  """Appends one JSON object per logged step and the same scalars to TensorBoard."""

  def __init__(self, model_dir: str, *, total_steps: int, start_step: int = 0,
               subdir: str = "train", stream=None, console_interval_seconds: float = 0.0):
    """`console_interval_seconds`: print a progress line at most this often (the first
    and last steps always print); files and TensorBoard get every written step."""
    self.enabled = jax.process_index() == 0
    self._console_interval = console_interval_seconds
    self._last_console = -math.inf
    self.total_steps = total_steps
    self._stream = stream or sys.stderr
    self._start_time = time.time()
    self._start_step = start_step
    self._jsonl = None
    self._summary = None
    if self.enabled:
      os.makedirs(model_dir, exist_ok=True)
      path = os.path.join(model_dir, "metrics.jsonl")
      _keep_records_up_to(path, start_step)
      self._jsonl = open(path, "a", encoding="utf-8")
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      self._tf = tf
      self._summary = tf.summary.create_file_writer(os.path.join(model_dir, subdir))

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    self._jsonl.write(json.dumps(record, sort_keys=False) + "\n")
    self._jsonl.flush()
    with self._summary.as_default(step=int(step)):
      for name, value in metrics.items():
        self._tf.summary.scalar(name, float(value))
    self._summary.flush()
    self._progress(step, record)

  def _progress(self, step: int, record: Mapping[str, float]) -> None:
    now = time.time()
    if (now - self._last_console < self._console_interval and step != self.total_steps
        and step != self._start_step + 1):
      return
    self._last_console = now
    done = step - self._start_step
    elapsed = time.time() - self._start_time
    remaining = (self.total_steps - step) * elapsed / done if done > 0 else math.nan
    width = 24
    filled = int(width * step / max(self.total_steps, 1))
    bar = "#" * filled + "." * (width - filled)
    throughput = record.get("timing/target_tokens_per_second", math.nan)
    eta = _format_duration(remaining) if math.isfinite(remaining) else "?"
    print(f"[{bar}] step {step}/{self.total_steps}  loss {record.get('loss', math.nan):.4f}"
          f"  {throughput:,.0f} target tok/s  ETA {eta}", file=self._stream, flush=True)

  def close(self) -> None:
    if self._jsonl is not None:
      self._jsonl.close()
      self._summary.close()
