"""The run record: what MODEL_DIR's checkpoints are, and how each start was configured.

A run's record must never lie about its checkpoints, so it has two parts:

- **The definition**: the settings that make the checkpoints what they are: the objective
  (every term's weight and settings), the teacher and the assistant (architecture and a
  fingerprint of the weights as placed, so also their dtype), the vocabulary and the task.
  It is written into every checkpoint's meta. A resumed run that would change any of them
  (continue MiniEnD-E checkpoints with MiniEnD-D's loss, say) is refused before anything
  is written, with the list of changes; `ALLOW_RESUME_CHANGES = True` continues anyway,
  and the change is recorded (the start's config file says so, and every later
  checkpoint's meta lists it under "definition_changes"). The student's architecture and
  the train state's structure are checked on their own (train/checkpoints.py). Schedule
  settings (TRAIN_STEPS, learning rate, periods, evaluation) may change freely.
- **The config files**: the first start writes MODEL_DIR/config.gin. A later start never
  rewrites it: it writes its own operative config beside it, config_from_step_<N>.gin (N:
  the step it starts from), and logs the bindings that changed since the previous start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from typing import Any

import seqio
from absl import logging

from miniend_jax.convert.model_vocabulary import loaded
from miniend_jax.distill.objectives import Objective
from miniend_jax.errors import MiniendError
from miniend_jax.model.config import T5Config
from miniend_jax.train.checkpoints import fingerprints

FIRST_RECORD = "config.gin"
_LATER_RECORD = re.compile(r"^config_from_step_(\d+)(?:_(\d+))?\.gin$")
# Which setting a user changes to change each part of the definition.
SETTING_OF = {"objective": "the objective (its gin file, weights and macros)",
              "teacher": "TEACHER_CHECKPOINT / TEACHER_CONFIG / TEACHER_DTYPE",
              "assistant": "ASSISTANT_CHECKPOINT / ASSISTANT_CONFIG / ASSISTANT_DTYPE",
              "vocabulary": "SENTENCEPIECE_MODEL", "task": "MIXTURE_OR_TASK_NAME"}
# Term fields that change how a loss is computed, not its value.
_NOT_DEFINING = ("chunk_length",)


class RunDefinitionError(MiniendError, ValueError):
  """A resumed run would continue MODEL_DIR's checkpoints with other defining settings."""


def weights_fingerprint(params: Any) -> str:
  """One hex digest of every array of `params` (the same on any sharding)."""
  return hashlib.sha1(json.dumps(sorted(fingerprints(params).items())).encode()).hexdigest()


def run_definition(*, objective: Objective,
                   frozen: dict[str, tuple[T5Config, Any]], vocabulary: seqio.Vocabulary,
                   task: str) -> dict[str, str]:
  """{setting: value} of what defines this run's checkpoints; `frozen` is {role: (config,
  placed params)} of the teacher and the assistant."""
  definition = {}
  for term in objective.terms:
    for field in dataclasses.fields(term):
      if field.name not in _NOT_DEFINING:
        definition[f"objective.{term.name}.{field.name}"] = repr(getattr(term, field.name))
  definition["objective.terms"] = repr([term.name for term in objective.terms])
  for role, (config, params) in sorted(frozen.items()):
    definition[f"{role}.config"] = json.dumps(config.to_dict(), sort_keys=True)
    definition[f"{role}.weights"] = weights_fingerprint(params)
  vocabulary = loaded(vocabulary)
  model = getattr(vocabulary, "sp_model", None)
  definition["vocabulary"] = (f"{vocabulary.vocab_size} ids" + (
      f", sha1 {hashlib.sha1(model).hexdigest()}" if model else ""))
  definition["task"] = task
  return definition


def definition_changes(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
  """'name: old -> new' for each defining setting that differs."""

  def short(value: str | None) -> str:
    if value is None:
      return "(none)"
    return value if len(value) <= 60 else value[:57] + "..."

  return [f"{name}: {short(recorded.get(name))} -> {short(current.get(name))}"
          for name in sorted(set(recorded) | set(current))
          if recorded.get(name) != current.get(name)]


def check_definition(model_dir: str, step: int, recorded: dict[str, str] | None,
                     current: dict[str, str], allow_changes: bool) -> list[str]:
  """The changes a resume from `step` makes to the definition its checkpoints recorded;
  RunDefinitionError unless there are none or `allow_changes`. Checkpoints written before
  definitions were recorded cannot be compared: nothing is refused."""
  changes = definition_changes(recorded, current) if recorded is not None else []
  if changes and not allow_changes:
    parts = sorted({SETTING_OF[name.split(".")[0]] for name in recorded.keys() | current
                    if recorded.get(name) != current.get(name)})
    raise RunDefinitionError(
        f"MODEL_DIR {model_dir} holds checkpoints (newest: step {step}) trained with other "
        f"settings that define them: {'; '.join(changes)}. Resuming would continue them "
        f"under another definition: restore {', '.join(parts)}, use a new MODEL_DIR, or "
        "set ALLOW_RESUME_CHANGES = True to continue anyway (recorded in the run's "
        "config file and checkpoints).")
  return changes


def _records(model_dir: str) -> list[tuple[int, int, str]]:
  """(start step, repeat, name) of the config files in MODEL_DIR, oldest first."""
  found = []
  for name in os.listdir(model_dir) if os.path.isdir(model_dir) else []:
    later = _LATER_RECORD.match(name)
    if name == FIRST_RECORD:
      found.append((0, 0, name))
    elif later:
      found.append((int(later.group(1)), int(later.group(2) or 1), name))
  return sorted(found)


def record_name(model_dir: str, start_step: int) -> str:
  """config.gin for the first start, else config_from_step_<N>.gin (with _2, _3, ... when
  a start from the same step was recorded before): a name no earlier start used."""
  records = _records(model_dir)
  if not records:
    return FIRST_RECORD
  taken = {name for *_, name in records}
  name, repeat = f"config_from_step_{start_step}.gin", 1
  while name in taken:
    repeat += 1
    name = f"config_from_step_{start_step}_{repeat}.gin"
  return name


def _bindings(text: str) -> dict[str, str]:
  """{binding: value} of a gin file's text (multi-line values joined)."""
  bindings, key = {}, None
  for line in text.splitlines():
    if not line.strip() or line.lstrip().startswith("#"):
      continue
    if line[0] not in " \t)]}":
      key = None
      name, separator, value = line.partition(" = ")
      if separator:
        key = name.strip()
        bindings[key] = value.strip()
    elif key is not None:
      bindings[key] += " " + line.strip()
  return bindings


def changed_bindings(previous: str, current: str) -> list[str]:
  """'binding: old -> new' for each gin binding that differs between two config texts."""
  return definition_changes(_bindings(previous), _bindings(current))


def write_config_record(model_dir: str, start_step: int, operative_config: str,
                        header: list[str]) -> str:
  """Writes this start's config file (never over an earlier one) and logs what changed
  since the previous start; returns its path."""
  records = _records(model_dir)
  path = os.path.join(model_dir, record_name(model_dir, start_step))
  if records:
    with open(os.path.join(model_dir, records[-1][2])) as f:
      changed = changed_bindings(f.read(), operative_config)
    logging.warning("Resuming at step %d; settings changed since the previous start (%s): %s",
                    start_step, records[-1][2], "; ".join(changed) if changed else "none")
  text = "".join(f"# {line}\n" for line in header) + operative_config
  with open(path, "x") as f:
    f.write(text)
  return path
