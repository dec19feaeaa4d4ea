"""Analytic minimum FLOPs of one distillation training step (matrix multiplications only).

    student  3 x its forward up to the sites the objective reads (forward + the backward
             pass's two products per matmul), plus 1 x forward for sites read only for
             metrics (the logits, for accuracy, when no term uses them);
    teacher  1 x its forward up to the sites the objective reads: frozen, no backward
             (an assistant's forward, for a blended target, is counted here too);
    losses   the matmuls inside the terms: the output layers, which the logit terms apply
             chunk by chunk to the models' final states (teacher: forward; student:
             forward + backward; a detached student partner of a blend: one more
             forward), relation scores A.B^T (teacher forward; student forward +
             backward) and HiddenMSE's projection;
    metrics  accuracy and cross_ent_loss (report_accuracy): one more forward pass of the
             student's output layer.

The optimizer update and every element-wise operation are left out, so XLA's count of a
compiled step (tools/bench.py) is this plus a few percent; anything well above means the
step computes work it does not need (a teacher backward pass, teacher layers past the
last tap).
"""

from __future__ import annotations

import dataclasses

from miniend_jax.distill.objectives import (OUTPUT_LAYER, AttentionRelations, CrossEntropy,
                                           HiddenMSE, LogitKL, Objective, Term)
from miniend_jax.model.config import T5Config
from miniend_jax.model.flops import forward_flops
from miniend_jax.taps import Tap


@dataclasses.dataclass(frozen=True)
class StepFlops:
  """FLOPs of one training example, by part of the step."""

  student: int
  teacher: int
  losses: int
  metrics: int = 0

  @property
  def total(self) -> int:
    return self.student + self.teacher + self.losses + self.metrics


def _output_layer(config: T5Config, targets_length: int) -> int:
  return 2 * targets_length * config.emb_dim * config.vocab_size


def _term_flops(term: Term, teacher_config: T5Config | None, student_config: T5Config,
                assistant_config: T5Config | None, lengths: dict[str, int]) -> int:
  length = lengths["decoder"]
  if isinstance(term, CrossEntropy):
    return 3 * _output_layer(student_config, length)
  if isinstance(term, LogitKL):
    total = _output_layer(teacher_config, length) + 3 * _output_layer(student_config, length)
    if term.blend is not None:
      partner = assistant_config if term.blend.partner == "assistant" else student_config
      total += _output_layer(partner, length)
    return total
  if isinstance(term, AttentionRelations):
    total = 0
    for a, b in term.pairs:
      rows_by_cols = lengths[term.side(a)] * lengths[term.side(b)]
      total += 2 * rows_by_cols * teacher_config.joined_kv_dim        # teacher: forward
      total += 3 * 2 * rows_by_cols * student_config.joined_kv_dim    # student: fwd + bwd
    return total
  if isinstance(term, HiddenMSE) and term.project:
    length = lengths[term.stack]
    return 3 * 2 * length * student_config.emb_dim * teacher_config.emb_dim
  return 0


def step_flops(objective: Objective, *, student_config: T5Config,
               teacher_config: T5Config | None, inputs_length: int, targets_length: int,
               extra_student_taps: tuple[Tap, ...] = (),
               assistant_config: T5Config | None = None) -> StepFlops:
  """The analytic minimum of one training example (see the module docstring);
  `extra_student_taps` are StepConfig.extra_student_taps (the metrics' output layer)."""
  lengths = {"encoder": inputs_length, "decoder": targets_length}
  count = lambda config, taps: forward_flops(
      config, inputs_length=inputs_length, targets_length=targets_length, taps=taps).total
  trained_taps = objective.student_taps(student_config)
  trained = count(student_config, trained_taps)
  read = count(student_config, tuple(trained_taps) + tuple(extra_student_taps))
  teacher = 0
  if objective.uses_teacher:
    teacher = count(teacher_config, objective.teacher_taps(teacher_config))
  if objective.uses_assistant:
    teacher += count(assistant_config, objective.assistant_taps(assistant_config))
  losses = sum(_term_flops(term, teacher_config, student_config, assistant_config, lengths)
               for term in objective.terms)
  metrics = (_output_layer(student_config, targets_length)
             if OUTPUT_LAYER in extra_student_taps else 0)
  return StepFlops(student=3 * trained + (read - trained), teacher=teacher, losses=losses,
                   metrics=metrics)
