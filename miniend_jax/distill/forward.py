"""One distillation forward pass: teacher (frozen), student, objective -> loss and terms.

Written to sit inside one jitted train step:

    def loss_fn(student_params, objective_params):
      return distillation_loss(objective, student_params, batch,
                               student_config=student_config,
                               teacher_config=teacher_config, teacher_params=teacher_params,
                               objective_params=objective_params, step=step,
                               dropout_rng=dropout_rng)
    (loss, terms), grads = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(...)

The teacher (and an assistant) run without dropout behind stop_gradient and sow only the
taps the objective asks for; under jit, whatever of their computation no tap needs (e.g.
the teacher's output layer when no logit term is used) is removed by XLA.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
from jax import lax

from miniend_jax.distill.objectives import Objective, ObjectiveError
from miniend_jax.model.config import T5Config
from miniend_jax.model.network import Transformer
from miniend_jax.taps import INTERMEDIATES, Tap, collect

Array = jax.Array


def tapped_forward(config: T5Config, params, batch: Mapping[str, Array],
                   taps: tuple[Tap, ...], *, dropout_rng: jax.Array | None = None
                   ) -> dict[Tap, Array]:
  """Run a T5 on a t5x-style batch and return the requested sites {Tap: array}."""
  for key in ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens"):
    if key not in batch:
      raise ObjectiveError(f"The batch lacks {key!r} (t5x feature names are expected).")
  rngs = {"dropout": dropout_rng} if dropout_rng is not None else {}
  _, state = Transformer(config).apply(
      {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
      batch["decoder_target_tokens"], batch.get("encoder_segment_ids"),
      batch.get("decoder_segment_ids"), enable_dropout=dropout_rng is not None,
      taps=taps, rngs=rngs, mutable=[INTERMEDIATES])
  return collect(state.get(INTERMEDIATES, {}), taps, config) if taps else {}


def _frozen_sites(role: str, config: T5Config, params, batch: Mapping[str, Array],
                  taps: tuple[Tap, ...]) -> dict[Tap, Array]:
  """A frozen model's sites: no dropout, no gradient to its parameters or outputs."""
  if params is None:
    raise ObjectiveError(f"The objective reads a {role}: pass {role}_params.")
  return lax.stop_gradient(tapped_forward(config, lax.stop_gradient(params), batch, taps))


def distillation_loss(objective: Objective, student_params, batch: Mapping[str, Array], *,
                      student_config: T5Config, teacher_config: T5Config | None = None,
                      teacher_params=None, objective_params: Mapping[str, Any] | None = None,
                      step: Array | int | None = None, dropout_rng: jax.Array | None = None,
                      assistant_config: T5Config | None = None, assistant_params=None
                      ) -> tuple[Array, dict[str, Array]]:
  """Teacher and student forward passes and the objective: -> (loss, {term: value}).

  The arguments are those of `distillation_forward`, without extra_student_taps.
  """
  loss, terms, _ = distillation_forward(
      objective, student_params, batch, student_config=student_config,
      teacher_config=teacher_config, teacher_params=teacher_params,
      objective_params=objective_params, step=step, dropout_rng=dropout_rng,
      assistant_config=assistant_config, assistant_params=assistant_params)
  return loss, terms


def distillation_forward(objective: Objective, student_params, batch: Mapping[str, Array], *,
                         student_config: T5Config, teacher_config: T5Config | None = None,
                         teacher_params=None,
                         objective_params: Mapping[str, Any] | None = None,
                         step: Array | int | None = None,
                         dropout_rng: jax.Array | None = None,
                         assistant_config: T5Config | None = None, assistant_params=None,
                         extra_student_taps: tuple[Tap, ...] = ()
                         ) -> tuple[Array, dict[str, Array], dict[Tap, Array]]:
  """Teacher and student forward passes and the objective.

  Returns (loss, {term: value}, student sites): the sites are those the objective reads
  plus `extra_student_taps` (e.g. the logits, for accuracy).

  Args:
    objective: the terms to compute.
    student_params: the trainable student's parameters (differentiate with respect to
      these and `objective_params`).
    batch: t5x-style features (see objectives.py).
    student_config, teacher_config: architectures; teacher_config and teacher_params may
      be None for an objective without teacher terms (scratch).
    teacher_params: frozen; wrapped in stop_gradient, run without dropout.
    objective_params: `objective.init_params(...)` (projections of HiddenMSE terms).
    step: training step, for scheduled target blends.
    dropout_rng: enables the student's dropout; None runs it deterministically.
    assistant_config, assistant_params: the assistant of a blended logit target.
  """
  objective.check(teacher_config, student_config, assistant_config)
  teacher_sites: dict[Tap, Array] = {}
  if objective.uses_teacher:
    teacher_sites = _frozen_sites("teacher", teacher_config, teacher_params, batch,
                                  objective.teacher_taps(teacher_config))
  assistant_sites = None
  if objective.uses_assistant:
    assistant_sites = _frozen_sites("assistant", assistant_config, assistant_params, batch,
                                    objective.assistant_taps(assistant_config))
  student_taps = tuple(dict.fromkeys(objective.student_taps(student_config)
                                     + tuple(extra_student_taps)))
  student_sites = tapped_forward(student_config, student_params, batch, student_taps,
                                 dropout_rng=dropout_rng)
  loss, terms = objective(teacher_sites, student_sites, batch, params=objective_params,
                          step=step, assistant_sites=assistant_sites)
  return loss, terms, student_sites
