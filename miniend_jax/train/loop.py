"""The training loop: run the jitted step, then the periodic actions that are due.

After each step the loop decides what is due (`Due`) and runs, in this order:

1. fetch the period's metrics (one host transfer per period) and apply the non-finite
   policy ("stop" raises before any checkpoint holds the bad step);
2. measure the student's attention health (at checkpoint steps);
3. log: means over the period, throughput, health -> metrics.jsonl, TensorBoard, console;
4. evaluate (every EVAL_PERIOD steps and at the end);
5. checkpoint (every CHECKPOINT_PERIOD steps, at the end, and on SIGTERM);
6. stop after the checkpoint when SIGTERM (preemption) arrived.

Every host runs the same loop on its own rows of the same global batch.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from miniend_jax.errors import MiniendError
from miniend_jax.evaluation.attention_health import (COLLAPSE_THRESHOLD, attention_health,
                                                     collapsed_layers)
from miniend_jax.model.config import T5Config
from miniend_jax.train import partitioning
from miniend_jax.train.checkpoints import Checkpointer
from miniend_jax.train.metrics_writer import MetricsWriter


class NonFiniteError(MiniendError, FloatingPointError):
  """A step's loss or gradient was NaN/inf under ON_NONFINITE = "stop"."""


@dataclasses.dataclass(frozen=True)
class Due:
  """What the loop does after a step."""

  fetch: bool
  health: bool
  log: bool
  evaluate: bool
  save: bool
  stop: bool


class Preemption:
  """While active, SIGTERM sets `requested` instead of killing the process."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self) -> Preemption:
    self._previous = signal.signal(signal.SIGTERM, self._request)
    return self

  def _request(self, *_) -> None:
    self.requested = True

  def __exit__(self, *_) -> None:
    signal.signal(signal.SIGTERM, self._previous)


class PeriodMetrics:
  """The device metrics of the steps since the last log, fetched in as few transfers as
  possible, and the period's throughput counts."""

  def __init__(self):
    self._start_period()

  def _start_period(self) -> None:
    self.pending: list = []    # per-step device metrics
    self.fetched: list = []    # host copies of the first len(fetched) entries of pending
    self.start, self.sequences, self.target_tokens = time.time(), 0, 0

  def add(self, metrics, sequences: int, target_tokens: int) -> None:
    self.pending.append(metrics)
    self.sequences += sequences
    self.target_tokens += target_tokens

  def fetch(self) -> list[dict]:
    self.fetched += jax.device_get(self.pending[len(self.fetched):])
    return self.fetched

  def means(self) -> dict[str, float]:
    """Means over the period ("nonfinite" is a count), throughput; then starts anew."""
    fetched = self.fetch()
    means = jax.tree_util.tree_map(lambda *v: float(np.mean(v)), *fetched)
    means["nonfinite"] = float(sum(m["nonfinite"] for m in fetched))
    elapsed = max(time.time() - self.start, 1e-9)
    means["timing/steps_per_second"] = len(self.pending) / elapsed
    means["timing/seqs_per_second"] = self.sequences / elapsed
    means["timing/target_tokens_per_second"] = self.target_tokens / elapsed
    self._start_period()
    return means


@dataclasses.dataclass(frozen=True)
class LoopSettings:
  """The loop's user settings (trainer.train documents each)."""

  total_steps: int
  log_period: int
  seed: int
  on_nonfinite: str = "stop"
  health_examples: int = 8
  inference_evaluator: Callable[..., Any] | None = None
  eval_period: int | None = None
  console_interval_seconds: float = 0.0


@dataclasses.dataclass
class TrainLoop:
  """The settings and everything the loop reads; `run` trains from a start step to
  `settings.total_steps`."""

  settings: LoopSettings
  step_fn: Callable
  frozen_params: dict[str, Any]
  data: Iterator[dict[str, np.ndarray]]
  mesh: jax.sharding.Mesh
  batch_size: int
  checkpointer: Checkpointer
  writer: MetricsWriter
  student_config: T5Config
  model_dir: str

  def due(self, step: int, preempted: bool) -> Due:
    settings = self.settings
    last = step == settings.total_steps
    save = self.checkpointer.should_save(step) or last or preempted
    log = step % settings.log_period == 0 or last
    evaluate = settings.inference_evaluator is not None and (
        last or bool(settings.eval_period and step % settings.eval_period == 0))
    return Due(fetch=save or log, health=save and settings.health_examples > 0, log=log,
               evaluate=evaluate, save=save, stop=preempted)

  def run(self, state, start_step: int) -> dict[str, float]:
    """Train; returns the last logged metrics."""
    dropout_rng = jax.random.key(self.settings.seed + 2)
    period, health, last_logged = PeriodMetrics(), {}, {}
    step = start_step
    with Preemption() as preemption:
      while step < self.settings.total_steps:
        host_batch = next(self.data)
        state, metrics = self.step_fn(
            state, self.frozen_params,
            partitioning.host_batch_to_global(host_batch, self.mesh), dropout_rng)
        step += 1
        period.add(metrics, self.batch_size, jax.process_count() *
                   int(np.sum(host_batch["decoder_target_tokens"] != 0)))
        # Read the flag once: a SIGTERM arriving later in this iteration is handled in the
        # next, so a stop always follows the checkpoint (and the checks) of its step.
        due = self.due(step, preemption.requested)
        if due.fetch and self.settings.on_nonfinite == "stop":
          self._stop_on_nonfinite(step, period.fetch())
        if due.health:
          health = self._attention_health(state, host_batch, step)
        if due.log:
          last_logged = {**period.means(), **health}
          health = {}
          self.writer.write(step, last_logged)
        if due.evaluate:
          self._evaluate(state, step)
        if due.save:
          self.checkpointer.save(step, state, config=self.student_config)
        if due.stop:
          logging.warning("SIGTERM: checkpoint written at step %d; stopping.", step)
          break
    return last_logged

  def _stop_on_nonfinite(self, step: int, fetched: list[dict]) -> None:
    """NonFiniteError at the first fetched step whose loss or gradient was NaN/inf (the
    fetched metrics are those of consecutive steps ending at `step`)."""
    for bad_step, metrics in enumerate(fetched, start=step - len(fetched) + 1):
      if not metrics["nonfinite"]:
        continue
      bad = sorted(name for name, value in metrics.items()
                   if name != "nonfinite" and not np.isfinite(value))
      raise NonFiniteError(
          f"Non-finite values at step {bad_step} in {', '.join(bad)}; stopping without "
          f"writing a checkpoint for it (the newest is step "
          f"{self.checkpointer.latest_step() or 0}). Lower the learning rate, check the "
          "data, or set ON_NONFINITE = \"skip\" to drop such steps.")

  def _attention_health(self, state, host_batch, step: int) -> dict[str, float]:
    """Normalized attention entropies and the encoder-output cosine of the global batch's
    first `health_examples` rows (process 0's, sent to every host); warns when attention
    has collapsed."""
    rows = {k: v[:self.settings.health_examples] for k, v in host_batch.items()
            if k in ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")}
    if jax.process_count() > 1:
      rows = multihost_utils.broadcast_one_to_all(rows)
    health = {k: v for k, v in attention_health(self.student_config,
                                                state.params["student"], rows).items()
              if not k.startswith("attention_entropy/")}
    collapsed = collapsed_layers(health)
    if collapsed:
      logging.warning(
          "Step %d: attention has collapsed in %s (normalized entropy below %.2f: each "
          "query attends to about one position; encoder-output cosine between examples "
          "%.3f). A model in this state finetunes poorly and passes the collapse on to "
          "students: lower the learning rate or train with Adafactor (runs/pretrain.gin); "
          "see docs/method.md, 'Attention collapse'.", step, ", ".join(collapsed),
          COLLAPSE_THRESHOLD, health["encoder_output_cosine"])
    return health

  def _evaluate(self, state, step: int) -> None:
    student = multihost_utils.process_allgather(state.params["student"], tiled=True)
    self.settings.inference_evaluator(self.student_config, student, step,
                             os.path.join(self.model_dir, "eval"))
