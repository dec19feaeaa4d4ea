"""Interpolated distillation: OUR interpretation of docs/method.md, "Interpolated distillation".

The MiniEnD paper scales to a 3B teacher with "interpolated distillation" but no public
text defines it. We offer the two published readings; neither is the authors' code.

(a) Teacher assistant (`TeacherAssistantChain`): distil the teacher into a mid-size
    assistant, then the assistant into the student (each stage an ordinary distillation
    run whose teacher is the previous stage's result).
(b) Scheduled target blend (`TargetBlend`, used by `objectives.LogitKL.blend`): the logit
    term's target becomes

        p_target = (1 - a_t) * p_partner + a_t * p_teacher,

    where the partner is the assistant (as in (a), run alongside) or the student itself,
    detached, and a_t rises from 0 to 1 over `BlendSchedule.ramp_steps` steps, linearly
    or on a half cosine. The student thus starts from targets close to what it can
    already represent and ends on the teacher's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from miniend_jax.errors import MiniendError
from miniend_jax.model.config import T5Config

SCHEDULE_SHAPES = ("linear", "cosine")
BLEND_PARTNERS = ("student", "assistant")


class InterpolationError(MiniendError, ValueError):
  """An interpolated-distillation setting is invalid."""


@dataclasses.dataclass(frozen=True)
class BlendSchedule:
  """a_t, the teacher's share of the blended target: 0 until `start_step`, then rising
  to 1 over `ramp_steps` steps ("linear", or "cosine": (1 - cos(pi * progress)) / 2)."""

  ramp_steps: int = 10_000
  start_step: int = 0
  shape: str = "linear"

  def __post_init__(self):
    if not isinstance(self.ramp_steps, int) or self.ramp_steps < 1:
      raise InterpolationError(
          f"BlendSchedule.ramp_steps must be a positive integer, got {self.ramp_steps!r}.")
    if not isinstance(self.start_step, int) or self.start_step < 0:
      raise InterpolationError(
          f"BlendSchedule.start_step must be a non-negative integer, got "
          f"{self.start_step!r}.")
    if self.shape not in SCHEDULE_SHAPES:
      raise InterpolationError(
          f"BlendSchedule.shape must be one of {SCHEDULE_SHAPES}, got {self.shape!r}.")

  def __call__(self, step: jax.Array | int) -> jax.Array:
    """float32 a_t in [0, 1] for a (possibly traced) step."""
    progress = (jnp.asarray(step, jnp.float32) - self.start_step) / self.ramp_steps
    progress = jnp.clip(progress, 0.0, 1.0)
    if self.shape == "cosine":
      return 0.5 * (1.0 - jnp.cos(math.pi * progress))
    return progress


@dataclasses.dataclass(frozen=True)
class TargetBlend:
  """Blend the logit term's target with a partner's distribution (reading (b) above).

  Attributes:
    partner: "student" (the student's own logits, detached) or "assistant" (a
      mid-size model run without gradient next to the teacher).
    schedule: gives a_t, the teacher's share, from the training step.
  """

  partner: str = "student"
  schedule: BlendSchedule = BlendSchedule()

  def __post_init__(self):
    if self.partner not in BLEND_PARTNERS:
      raise InterpolationError(
          f"TargetBlend.partner must be one of {BLEND_PARTNERS}, got {self.partner!r}.")


@dataclasses.dataclass(frozen=True)
class Stage:
  """One distillation run of a teacher-assistant chain."""

  teacher: str
  student: str
  first_step: int
  steps: int


@dataclasses.dataclass(frozen=True)
class TeacherAssistantChain:
  """Reading (a): distil models[0] -> models[1] -> ... -> models[-1], one stage each.

  Attributes:
    models: model names from the teacher to the final student, e.g. ("teacher",
      "assistant", "student"); the trainer maps names to configs and checkpoints.
    steps: training steps of each stage (one fewer entry than `models`).
  """

  models: tuple[str, ...] = ("teacher", "assistant", "student")
  steps: tuple[int, ...] = (10_000, 10_000)

  def __post_init__(self):
    object.__setattr__(self, "models", tuple(self.models))
    object.__setattr__(self, "steps", tuple(self.steps))
    if len(self.models) < 2 or len(set(self.models)) != len(self.models):
      raise InterpolationError(
          f"TeacherAssistantChain.models needs at least two distinct names, got "
          f"{self.models}.")
    if len(self.steps) != len(self.models) - 1:
      raise InterpolationError(
          f"TeacherAssistantChain.steps needs one entry per stage ({len(self.models) - 1} "
          f"for models {self.models}), got {self.steps}.")
    if any(not isinstance(s, int) or s < 1 for s in self.steps):
      raise InterpolationError(
          f"TeacherAssistantChain.steps must be positive integers, got {self.steps}.")

  def stages(self) -> tuple[Stage, ...]:
    first = [0]
    for steps in self.steps[:-1]:
      first.append(first[-1] + steps)
    return tuple(Stage(self.models[i], self.models[i + 1], first[i], self.steps[i])
                 for i in range(len(self.steps)))

  def stage_at(self, step: int) -> Stage:
    """The stage a global step (counted over the whole chain) belongs to."""
    for stage in self.stages():
      if step < stage.first_step + stage.steps:
        return stage
    raise InterpolationError(
        f"Step {step} is past the chain's last stage (total {sum(self.steps)} steps).")

  def check_configs(self, configs: Sequence[T5Config]) -> None:
    """Every model of the chain must share the vocabulary (logits are distilled)."""
    if len(configs) != len(self.models):
      raise InterpolationError(
          f"Give one config per model of the chain {self.models}, got {len(configs)}.")
    for name, config in zip(self.models[1:], configs[1:]):
      if config.vocab_size != configs[0].vocab_size:
        raise InterpolationError(
            f"Model {name!r} has vocab_size {config.vocab_size} but {self.models[0]!r} has "
            f"{configs[0].vocab_size}; every model of a teacher-assistant chain must use "
            "the teacher's vocabulary.")
