"""Optimizers and learning-rate schedules (optax), with t5x's and the authors' defaults.

Schedules are functions of the step returning the learning rate; optimizers take one.
Gin binds both, e.g. `optimizers.adamw.learning_rate = @optimizers.cosine_decay()`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from miniend_jax.errors import MiniendError

Schedule = Callable[[jnp.ndarray], jnp.ndarray]


class OptimizerError(MiniendError, ValueError):
  """An optimizer or schedule setting is out of range."""


def _check(name: str, value: float, *, minimum: float = 0.0, strict: bool = False) -> None:
  if value < minimum or (strict and value == minimum):
    relation = ">" if strict else ">="
    raise OptimizerError(f"{name} must be {relation} {minimum}, got {value}.")


def _with_linear_warmup(schedule: Schedule, peak: float, warmup_steps: int) -> Schedule:
  if warmup_steps == 0:
    return schedule

  def warmed(step):
    step = jnp.asarray(step, jnp.float32)
    return jnp.where(step < warmup_steps, peak * (step + 1) / warmup_steps, schedule(step))

  return warmed


def constant(learning_rate: float = 1e-3, warmup_steps: int = 0) -> Schedule:
  """t5x's finetuning default (constant 1e-3), with an optional linear warmup."""
  _check("learning_rate", learning_rate, strict=True)
  _check("warmup_steps", warmup_steps)
  return _with_linear_warmup(lambda step: jnp.full((), learning_rate, jnp.float32),
                             learning_rate, warmup_steps)


def rsqrt_decay(base_learning_rate: float = 1.0, warmup_steps: int = 10_000) -> Schedule:
  """t5x's pretraining schedule "constant * rsqrt_decay": base / sqrt(max(step, warmup)).

  Constant at base / sqrt(warmup) for the first `warmup_steps`, then inverse square root.
  """
  _check("base_learning_rate", base_learning_rate, strict=True)
  _check("warmup_steps", warmup_steps, minimum=1)
  return lambda step: base_learning_rate * jnp.asarray(
      jnp.maximum(jnp.asarray(step, jnp.float32), warmup_steps), jnp.float32) ** -0.5


def _check_decay(peak_learning_rate: float, total_steps: int, warmup_steps: int) -> None:
  _check("peak_learning_rate", peak_learning_rate, strict=True)
  if not 0 <= warmup_steps < total_steps:
    raise OptimizerError(
        f"warmup_steps ({warmup_steps}) must be in [0, total_steps={total_steps}): set "
        "WARMUP_STEPS below TRAIN_STEPS, and TRAIN_STEPS >= 1.")


def linear_decay(peak_learning_rate: float = 3e-4, total_steps: int = 10_000,
                 warmup_steps: int = 100, end_learning_rate: float = 0.0) -> Schedule:
  """Linear warmup to the peak, then linear decay to `end_learning_rate` at total_steps."""
  _check_decay(peak_learning_rate, total_steps, warmup_steps)
  return optax.join_schedules(
      [optax.linear_schedule(0.0, peak_learning_rate, warmup_steps),
       optax.linear_schedule(peak_learning_rate, end_learning_rate,
                             total_steps - warmup_steps)], [warmup_steps])


def cosine_decay(peak_learning_rate: float = 3e-4, total_steps: int = 10_000,
                 warmup_steps: int = 100, end_learning_rate: float = 0.0) -> Schedule:
  """Linear warmup to the peak, then cosine decay to `end_learning_rate` at total_steps."""
  _check_decay(peak_learning_rate, total_steps, warmup_steps)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak_learning_rate, warmup_steps=warmup_steps,
      decay_steps=total_steps, end_value=end_learning_rate)


def adafactor(learning_rate: Schedule | float = 1e-3, *, decay_rate: float = 0.8,
              clipping_threshold: float | None = 1.0,
              multiply_by_parameter_scale: bool = True, factored: bool = True,
              min_dim_size_to_factor: int = 128, clip_global_norm: float | None = None,
              ) -> optax.GradientTransformation:
  """Adafactor with t5x's defaults (decay 0.8, factored second moments, parameter
  scaling, update clipping 1.0, no momentum)."""
  transform = optax.adafactor(
      learning_rate=learning_rate, decay_rate=decay_rate,
      clipping_threshold=clipping_threshold,
      multiply_by_parameter_scale=multiply_by_parameter_scale, factored=factored,
      min_dim_size_to_factor=min_dim_size_to_factor)
  return _clipped(transform, clip_global_norm)


def adamw(learning_rate: Schedule | float = 3e-4, *, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, weight_decay: float = 0.01,
          clip_global_norm: float | None = 1.0) -> optax.GradientTransformation:
  """AdamW, the MiniEnD authors' distillation choice; weight decay skips 1-D parameters
  (norm scales)."""
  _check("weight_decay", weight_decay)
  transform = optax.adamw(
      learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
      mask=lambda params: jax.tree_util.tree_map(lambda p: p.ndim > 1, params))
  return _clipped(transform, clip_global_norm)


def _clipped(transform: optax.GradientTransformation,
             clip_global_norm: float | None) -> optax.GradientTransformation:
  if clip_global_norm is None:
    return transform
  _check("clip_global_norm", clip_global_norm, strict=True)
  return optax.chain(optax.clip_by_global_norm(clip_global_norm), transform)
