"""The quickstart's output directory: its layout, its settings, and finished-stage records.

    DIR/quickstart.json          the settings the directory was made with
    DIR/stages/<stage>.json      one record per finished stage: wall time and results
    DIR/gin/<stage>.gin          the experiment file of each training stage
    DIR/vocabulary/spiece.model  DIR/teacher/  DIR/student_<objective>/
    DIR/finetune_<model>/        DIR/export/<objective>/  DIR/report.md ...

A stage whose record exists is reused, not run again, so a rerun with the same DIR
continues where an interrupted one stopped (a training stage cut short resumes from its
latest checkpoint, as every training run does) and a finished quickstart reruns in
seconds. A DIR made with other settings is refused: its results would not be comparable.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from miniend_jax.data.sentencepiece_training import write_atomically
from miniend_jax.quickstart.sizes import QuickstartError

SETTINGS_FILE = "quickstart.json"


def format_duration(seconds: float) -> str:
  """m:ss, as the console and the report show stage times."""
  seconds = int(round(seconds))
  return f"{seconds // 60}:{seconds % 60:02d}"


class Workspace:
  """One quickstart output directory."""

  def __init__(self, output_dir: str, settings: dict[str, Any], *, stream=None):
    if not output_dir:
      raise QuickstartError("--output_dir is required.")
    self.root = os.path.abspath(output_dir)
    self.settings = settings
    self.stream = stream or sys.stdout
    if os.path.exists(self.root) and not os.path.isdir(self.root):
      raise QuickstartError(f"--output_dir={output_dir!r} is a file, not a directory.")
    self._check_settings()

  def _check_settings(self) -> None:
    path = self.path(SETTINGS_FILE)
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        previous = json.load(f)
      if previous != self.settings:
        changed = sorted(key for key in set(previous) | set(self.settings)
                         if previous.get(key) != self.settings.get(key))
        details = "; ".join(f"{key}: {previous.get(key)!r} there, {self.settings.get(key)!r} "
                            "now" for key in changed[:4])
        raise QuickstartError(
            f"{self.root} was made with other settings ({details}). Rerun with the same "
            "--size and step flags to continue it, or choose a new --output_dir.")
    elif os.path.isdir(self.root) and os.listdir(self.root):
      raise QuickstartError(
          f"--output_dir={self.root} is not empty and holds no {SETTINGS_FILE}: it is not a "
          "quickstart directory. Choose a new or empty directory.")
    if not os.path.isdir(self.root):
      try:
        os.makedirs(self.root)
      except OSError as error:
        raise QuickstartError(f"Cannot create --output_dir={self.root}: {error}.") from None
    if not os.access(self.root, os.W_OK):
      raise QuickstartError(f"--output_dir={self.root} is not writable.")
    if not os.path.exists(path):
      write_atomically(path, json.dumps(self.settings, indent=2).encode())

  def path(self, *parts: str) -> str:
    return os.path.join(self.root, *parts)

  def record(self, stage: str) -> dict[str, Any] | None:
    """The finished stage's record, or None."""
    path = self.path("stages", f"{stage}.json")
    if not os.path.exists(path):
      return None
    with open(path, encoding="utf-8") as f:
      return json.load(f)

  def records(self) -> dict[str, dict[str, Any]]:
    directory = self.path("stages")
    if not os.path.isdir(directory):
      return {}
    return {name[:-len(".json")]: self.record(name[:-len(".json")])
            for name in sorted(os.listdir(directory)) if name.endswith(".json")}

  def say(self, message: str) -> None:
    print(f"[quickstart] {message}", file=self.stream, flush=True)

  def run_stage(self, stage: str, description: str, work: Callable[[], dict[str, Any]],
                *, index: int, count: int) -> dict[str, Any]:
    """Run `work` unless `stage` already finished; -> its result (a JSON-able dict)."""
    done = self.record(stage)
    label = f"stage {index}/{count} {stage}"
    if done is not None:
      self.say(f"{label}: reused (finished earlier in "
               f"{format_duration(done['wall_seconds'])})")
      return done["result"]
    self.say(f"{label}: {description}")
    start = time.time()
    result = work()
    wall = time.time() - start
    record = {"stage": stage, "description": description, "wall_seconds": wall,
              "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "result": result}
    write_atomically(self.path("stages", f"{stage}.json"),
                     json.dumps(record, indent=2).encode())
    self.say(f"{label}: done in {format_duration(wall)}")
    return result
