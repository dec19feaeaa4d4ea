"""Experiment gin files for the quickstart's training stages.

Each training stage is an ordinary t5x-style experiment: a gin file that includes a run
file (runs/pretrain.gin, runs/distill.gin, runs/finetune.gin) and an objective, then sets
the macros. The quickstart writes it to DIR/gin/<stage>.gin and trains from it exactly as
`python -m miniend_jax.train --gin_file=DIR/gin/<stage>.gin` does, so every stage can be
rerun, inspected or copied as a starting point for a real experiment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from miniend_jax.model.config import PRESETS, T5Config

# The preset the quickstart's architectures are written as overrides of.
BASE_PRESET = "t5_1_1_small"


def gin_literal(value: Any) -> str:
  """A Python value as gin source (gin reads Python literals)."""
  if isinstance(value, (str, int, float, bool, type(None), tuple, list, dict)):
    return repr(value)
  raise TypeError(f"No gin literal for {value!r}.")


def model_bindings(macro: str, scope: str, config: T5Config) -> list[str]:
  """`MACRO = @scope/config.preset()` and the preset's fields that `config` changes."""
  base = PRESETS[BASE_PRESET]
  lines = [f"{macro} = @{scope}/config.preset()",
           f"{scope}/config.preset.name = {gin_literal(BASE_PRESET)}"]
  for field in dataclasses.fields(T5Config):
    value = getattr(config, field.name)
    if value != getattr(base, field.name):
      lines.append(f"{scope}/config.preset.{field.name} = {gin_literal(value)}")
  return lines


def experiment_gin(*, title: str, includes: Sequence[str], macros: Mapping[str, Any],
                   models: Mapping[str, T5Config], vocabulary: str,
                   bindings: Sequence[str] = ()) -> str:
  """The text of one stage's experiment file.

  Args:
    title: the first comment line (what the stage does).
    includes: gin files under gin_configs/ (a run file, an objective).
    macros: macro values (MODEL_DIR, TRAIN_STEPS, ...), set after the includes.
    models: {"STUDENT_CONFIG": config, ...}; each macro gets a scoped preset.
    vocabulary: the SentencePiece model every task reads.
    bindings: further gin bindings, verbatim.
  """
  lines = [f"# {title}", "#",
           "# Written by python -m miniend_jax.quickstart; run this stage on its own with",
           "#   python -m miniend_jax.train --gin_file=<this file>",
           "from __gin__ import dynamic_registration", "import tasks",
           "from miniend_jax.model import config", "from miniend_jax.train import trainer", ""]
  lines += [f'include "{path}"' for path in includes]
  lines.append("")
  lines += [f"{name} = {gin_literal(value)}" for name, value in macros.items()]
  lines.append(f"SENTENCEPIECE_MODEL = {gin_literal(vocabulary)}")
  for macro, config in models.items():
    lines += [""] + model_bindings(macro, macro.lower().removesuffix("_config"), config)
  if bindings:
    lines += [""] + list(bindings)
  return "\n".join(lines) + "\n"
