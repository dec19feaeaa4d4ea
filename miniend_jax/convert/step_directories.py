"""The t5x checkpoint directory convention: MODEL_DIR/checkpoint_<step>/."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

STEP_DIRECTORY = re.compile(r"^checkpoint_(\d+)$")


def step_of(path: str) -> int | None:
  """The step of a checkpoint_<step> directory path, else None."""
  match = STEP_DIRECTORY.match(os.path.basename(os.path.normpath(path)))
  return int(match.group(1)) if match else None


def step_directories(model_dir: str, *, complete: Callable[[str], bool] = os.path.isdir
                     ) -> list[tuple[int, str]]:
  """[(step, path)] of the checkpoint_<step>/ entries of `model_dir` for which `complete`
  holds, by step. Temporary names of unfinished writes do not match the pattern."""
  found = []
  for name in os.listdir(model_dir):
    match = STEP_DIRECTORY.match(name)
    path = os.path.join(model_dir, name)
    if match and complete(path):
      found.append((int(match.group(1)), path))
  return sorted(found)
