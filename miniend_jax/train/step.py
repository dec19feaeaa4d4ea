"""The train step: frozen teacher (and assistant) forward, student forward + backward,
objective, update.

One function, jitted once by the trainer with explicit shardings. The frozen models'
parameters are an argument of their own, {"teacher": ..., "assistant": ...} (a role is
absent when the objective does not read it): never differentiated (stop_gradient inside
the objective's forward), never donated, with no optimizer state, run without dropout in
each model's own dtype. Gradient accumulation splits the global batch into microbatches and
scans over them, so memory is that of one microbatch.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

from miniend_jax.distill.forward import distillation_forward
from miniend_jax.distill.losses import DEFAULT_CHUNK_LENGTH, token_statistics
from miniend_jax.distill.objectives import OUTPUT_LAYER, Objective
from miniend_jax.model.config import T5Config
from miniend_jax.taps import Tap
from miniend_jax.train.partitioning import batch_sharding
from miniend_jax.train.state import TrainState

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Everything static about the step (hashable: part of the jit cache key).

  Attributes:
    objective: the distillation objective (or plain cross-entropy without a teacher).
    student_config, teacher_config: architectures; teacher_config None for pretraining.
    assistant_config: the assistant's architecture when the objective blends with one.
    optimizer: the optax transformation applied to {"student", "objective"} params.
    learning_rate: the schedule, reported as a metric (the optimizer applies its own).
    num_microbatches: gradient accumulation; must divide the per-step batch.
    report_accuracy: report accuracy and cross_ent_loss, computed chunk by chunk from the
      student's output layer (one more forward pass of that layer), metrics_chunk_length
      target positions at a time.
    skip_nonfinite: when the loss or a gradient is NaN/inf, keep the previous parameters
      and optimizer state (the step still counts, "nonfinite" reports 1); otherwise the
      update is applied and the trainer stops on the non-finite metrics.
  """

  objective: Objective
  student_config: T5Config
  teacher_config: T5Config | None
  optimizer: optax.GradientTransformation
  learning_rate: Callable[[Array], Array]
  num_microbatches: int = 1
  report_accuracy: bool = True
  metrics_chunk_length: int = DEFAULT_CHUNK_LENGTH
  skip_nonfinite: bool = False
  assistant_config: T5Config | None = None

  @property
  def extra_student_taps(self) -> tuple[Tap, ...]:
    return (OUTPUT_LAYER,) if self.report_accuracy else ()


def _microbatch_metrics(setup: StepConfig, trainable: Any, frozen_params: Mapping[str, Any],
                        batch: Mapping[str, Array], rng: Array, step: Array):
  """(loss, metric sums) on one microbatch."""
  loss, terms, sites = distillation_forward(
      setup.objective, trainable["student"], batch, student_config=setup.student_config,
      teacher_config=setup.teacher_config, teacher_params=frozen_params.get("teacher"),
      assistant_config=setup.assistant_config,
      assistant_params=frozen_params.get("assistant"),
      objective_params=trainable.get("objective"), step=step, dropout_rng=rng,
      extra_student_taps=setup.extra_student_taps)
  metrics = {"loss": loss, **{name: value for name, value in terms.items()}}
  if OUTPUT_LAYER in sites:
    targets = batch["decoder_target_tokens"]
    weights = batch.get("decoder_loss_weights", (targets != 0).astype(jnp.float32))
    metrics.update(token_statistics(sites[OUTPUT_LAYER], targets, weights,
                                    chunk_length=setup.metrics_chunk_length))
  return loss, metrics


def train_step(setup: StepConfig, state: TrainState, frozen_params: Mapping[str, Any],
               batch: Mapping[str, Array], rng: Array) -> tuple[TrainState, dict[str, Array]]:
  """One optimizer update on a global batch -> (new state, scalar metrics).

  `frozen_params`: {"teacher": ..., "assistant": ...}, the roles the objective reads."""
  step_rng = jax.random.fold_in(rng, state.step)
  grad_fn = jax.value_and_grad(
      lambda trainable, micro, micro_rng: _microbatch_metrics(
          setup, trainable, frozen_params, micro, micro_rng, state.step), has_aux=True)
  n = setup.num_microbatches
  if n == 1:
    (_, metrics), grads = grad_fn(state.params, batch, step_rng)
  else:
    micro_batches = jax.tree_util.tree_map(
        lambda x: x.reshape((n, x.shape[0] // n) + x.shape[1:]), dict(batch))

    def accumulate(carry, inputs):
      grads_sum, metrics_sum = carry
      index, micro = inputs
      (_, metrics), grads = grad_fn(state.params, micro, jax.random.fold_in(step_rng, index))
      add = lambda a, b: jax.tree_util.tree_map(jnp.add, a, b)
      return (add(grads_sum, grads), add(metrics_sum, metrics)), None

    zero_grads = jax.tree_util.tree_map(jnp.zeros_like, state.params)
    _, metric_shapes = jax.eval_shape(
        lambda: grad_fn(state.params, jax.tree_util.tree_map(lambda x: x[0], micro_batches),
                        step_rng)[0])
    zero_metrics = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype),
                                          metric_shapes)
    (grads, metrics), _ = lax.scan(accumulate, (zero_grads, zero_metrics),
                                   (jnp.arange(n), micro_batches))
    grads = jax.tree_util.tree_map(lambda g: g / n, grads)
    # Per-microbatch means (loss and terms) are averaged; sums stay sums.
    metrics = {k: (v if k.endswith("_sum") else v / n) for k, v in metrics.items()}

  updates, opt_state = setup.optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  student_grads = grads["student"]
  out = {k: v for k, v in metrics.items() if not k.endswith("_sum")}
  if "weight_sum" in metrics:
    denominator = jnp.maximum(metrics["weight_sum"], 1.0)
    out["accuracy"] = metrics["correct_sum"] / denominator
    out["cross_ent_loss"] = metrics["cross_ent_sum"] / denominator
  out["grad_norm"] = optax.global_norm(grads)
  out["grad_norm/encoder"] = optax.global_norm(student_grads["encoder"])
  out["grad_norm/decoder"] = optax.global_norm(student_grads["decoder"])
  out["grad_norm/embedding"] = optax.global_norm(student_grads["token_embedder"])
  out["learning_rate"] = setup.learning_rate(state.step)
  finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(out["grad_norm"])
  out["nonfinite"] = 1.0 - finite.astype(jnp.float32)
  if setup.skip_nonfinite:
    keep = lambda new, old: jnp.where(finite, new, old)
    params = jax.tree_util.tree_map(keep, params, state.params)
    opt_state = jax.tree_util.tree_map(keep, opt_state, state.opt_state)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
  return new_state, out


def jit_train_step(setup: StepConfig, state_shardings: Any, frozen_shardings: Any,
                   mesh: jax.sharding.Mesh) -> Callable:
  """The step as `train` runs it: (state, frozen_params, batch, rng) -> (state, metrics),
  the state laid out by `state_shardings` and donated, the frozen models by
  `frozen_shardings`, the batch split over the mesh's "data" axis. `train_compile`
  lowers this same function for a TPU topology."""
  return jax.jit(functools.partial(train_step, setup),
                 in_shardings=(state_shardings, frozen_shardings, batch_sharding(mesh), None),
                 out_shardings=(state_shardings, None), donate_argnums=(0,))
