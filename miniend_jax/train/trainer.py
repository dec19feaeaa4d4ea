"""The training loop: distil (or pretrain, or finetune) a T5 student, t5x-style.

`train(...)` is keyword-only with everything injected, so gin binds its arguments
(gin_configs/runs/*.gin). It validates every input before compiling anything, builds the
mesh and shardings, initialises or restores the state, then loops: read this host's rows
of the global batch, run the jitted step, log, checkpoint. SIGTERM (preemption) writes a
checkpoint and returns cleanly; a killed run resumes from its newest intact checkpoint
(train/checkpoints.py verifies what it reads); a NaN/inf loss or gradient stops the run
before any checkpoint holds it, or has its update skipped (ON_NONFINITE).
"""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils

from miniend_jax.convert.checkpoint_loading import load_model
from miniend_jax.data.dataset import BatchIterator, DatasetConfig, vocabulary_size
from miniend_jax.distill.objectives import Objective
from miniend_jax.distill.student_init import init_student
from miniend_jax.evaluation.attention_health import (COLLAPSE_THRESHOLD, attention_health,
                                                     collapsed_layers)
from miniend_jax.model.config import T5Config
from miniend_jax.model.network import logical_axes
from miniend_jax.train import partitioning
from miniend_jax.train.checkpoints import Checkpointer, abstract_like
from miniend_jax.train.metrics_writer import MetricsWriter
from miniend_jax.train.model_info import write_model_info
from miniend_jax.train.optimizers import Schedule, constant
from miniend_jax.train.state import TrainState
from miniend_jax.train.step import StepConfig, train_step


NONFINITE_POLICIES = ("stop", "skip")


class TrainError(ValueError):
  """A training setting cannot work; the message names the setting to change."""


def _check_model_dir(model_dir: str) -> None:
  if not model_dir:
    raise TrainError("MODEL_DIR is not set: pass --gin.MODEL_DIR=\\\"/path/to/run\\\".")
  if os.path.exists(model_dir) and not os.path.isdir(model_dir):
    raise TrainError(f"MODEL_DIR {model_dir!r} is a file, not a directory.")
  existing = os.path.abspath(model_dir)   # the directory, or its nearest existing ancestor
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise TrainError(f"MODEL_DIR {model_dir!r} cannot be created: {existing!r} is a file.")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise TrainError(f"MODEL_DIR {model_dir!r} is not writable ({existing!r} is read-only "
                     "for this user): choose another MODEL_DIR.")


def _load_teacher(objective: Objective, teacher_checkpoint: str | None,
                  teacher_config: T5Config | None, teacher_dtype: str | None,
                  ) -> tuple[T5Config | None, Any, str]:
  """(teacher config, NumPy params or None, a sentence describing the teacher)."""
  if not objective.uses_teacher:
    return None, None, "none (the objective has no teacher term)"
  if teacher_checkpoint:
    config, params = load_model(teacher_checkpoint, teacher_config)
    origin = f"loaded from {teacher_checkpoint}"
  elif teacher_config is not None:
    config, params = teacher_config, None
    origin = ("RANDOMLY INITIALISED (no TEACHER_CHECKPOINT given): the student learns "
              "from an untrained teacher")
  else:
    raise TrainError("The objective distils from a teacher: set TEACHER_CHECKPOINT (or "
                     "TEACHER_CONFIG for a randomly initialised teacher).")
  if teacher_dtype:
    config = config.replace(dtype=teacher_dtype, param_dtype=teacher_dtype)
  return config, params, origin


def _shardings_like_params(tree: Any, params: Any, param_shardings: Any,
                           mesh: jax.sharding.Mesh) -> Any:
  """Shardings for an optimizer state: a leaf mirroring a parameter (same path suffix and
  shape) is laid out like it; every other leaf (counts, factored moments) is replicated."""
  by_path = {}
  for (path, leaf), sharding in zip(jax.tree_util.tree_leaves_with_path(params),
                                    jax.tree_util.tree_leaves(param_shardings)):
    by_path[tuple(str(k) for k in path)] = (leaf.shape, sharding)
  replicated = partitioning.replicated(mesh)

  def choose(path, leaf):
    keys = tuple(str(k) for k in path)
    for start in range(len(keys)):
      match = by_path.get(keys[start:])
      if match is not None and match[0] == leaf.shape:
        return match[1]
    return replicated

  return jax.tree_util.tree_map_with_path(choose, tree)


def train(*, model_dir: str, student_config: T5Config, objective: Objective,
          train_dataset_cfg: DatasetConfig, total_steps: int,
          optimizer: Callable[..., optax.GradientTransformation],
          learning_rate: Schedule | None = None,
          teacher_checkpoint: str | None = None, teacher_config: T5Config | None = None,
          teacher_dtype: str | None = None,
          initial_checkpoint_path: str | None = None, student_init: str = "random",
          checkpoint_period: int = 1000, keep_checkpoints: int | None = None,
          log_period: int = 10, model_parallel_size: int = 1,
          num_devices: int | None = None,
          logical_axis_rules: partitioning.LogicalRules = partitioning.STANDARD_RULES,
          num_microbatches: int = 1, report_accuracy: bool = True, seed: int = 0,
          inference_evaluator: Callable[..., Any] | None = None,
          eval_period: int | None = None,
          console_interval_seconds: float = 0.0, on_nonfinite: str = "stop",
          health_examples: int = 8,
          operative_config: Callable[[], str] | None = None) -> dict[str, float]:
  """Train until `total_steps` (resuming from MODEL_DIR's latest checkpoint).

  Args:
    model_dir: MODEL_DIR: checkpoints, metrics.jsonl, config.gin, model-info.txt, train/.
    student_config: the trained model's architecture.
    objective: the loss (gin_configs/objectives/*.gin).
    train_dataset_cfg: the data (a seqio task/mixture; BATCH_SIZE is its batch size).
    total_steps: TRAIN_STEPS.
    optimizer: an optax constructor taking `learning_rate` (e.g. optimizers.adamw).
    learning_rate: the schedule (default constant 1e-3).
    teacher_checkpoint: TEACHER_CHECKPOINT: a Hugging Face, t5x or miniend checkpoint.
    teacher_config: the teacher's architecture (needed for t5x checkpoints and for a
      random teacher; checked against the weights otherwise).
    teacher_dtype: e.g. "bfloat16" to run and hold the teacher in lower precision.
    initial_checkpoint_path: INITIAL_CHECKPOINT_PATH: start the student from these
      weights (finetuning); any format load_model reads.
    student_init: "random" or "teacher_layers" (copy maximally spaced teacher layers).
    checkpoint_period, keep_checkpoints: every how many steps to save; how many to keep.
    log_period: every how many steps to write metrics (means over the period).
    model_parallel_size: MODEL_PARALLEL_SIZE: size of the mesh's "model" axis.
    num_devices: use only the first N devices (default: all devices of all hosts).
    logical_axis_rules: logical axis -> mesh axis (t5x's standard rules by default).
    num_microbatches: gradient accumulation steps per update.
    report_accuracy: log the student's accuracy and cross-entropy on targets.
    seed: parameter initialisation and dropout.
    inference_evaluator: called as (student_config, student_params, step, output_dir)
      every `eval_period` steps and at the end (e.g. evaluation.InferenceEvaluator:
      seqio metrics into MODEL_DIR/eval/<task>-metrics.jsonl).
    eval_period: EVAL_PERIOD; None evaluates only at the end (when an evaluator is set).
    console_interval_seconds: print the console progress line at most this often (0:
      at every logged step); metrics.jsonl and TensorBoard get every logged step.
    on_nonfinite: ON_NONFINITE: "stop" raises FloatingPointError at the first step whose
      loss or gradient is NaN/inf, naming it and the non-finite terms, before any
      checkpoint holds that step; "skip" drops such steps' updates (metric "nonfinite").
    health_examples: at every checkpoint, the student's attention health (per-layer
      normalized attention entropy, encoder-output cosine between examples;
      evaluation/attention_health.py) on the first this-many examples of the step's
      batch goes into that step's metrics, with a warning when a layer has collapsed
      (0: never).
    operative_config: returns the gin operative config text, written to config.gin.

  Returns:
    The last logged metrics.
  """
  # ---- validate everything a user can get wrong, before any compilation ----
  _check_model_dir(model_dir)
  if total_steps < 1:
    raise TrainError(f"TRAIN_STEPS must be >= 1, got {total_steps}.")
  if eval_period is not None and eval_period < 1:
    raise TrainError(f"EVAL_PERIOD must be >= 1 or None, got {eval_period}.")
  if on_nonfinite not in NONFINITE_POLICIES:
    raise TrainError(f"ON_NONFINITE must be one of {NONFINITE_POLICIES}, got "
                     f"{on_nonfinite!r}.")
  if student_init not in ("random", "teacher_layers"):
    raise TrainError(f"student_init must be 'random' or 'teacher_layers', got "
                     f"{student_init!r}.")
  teacher_config, teacher_weights, teacher_origin = _load_teacher(
      objective, teacher_checkpoint, teacher_config, teacher_dtype)
  objective.check(teacher_config, student_config)
  devices = jax.devices()
  if num_devices is not None:
    if not 1 <= num_devices <= len(devices):
      raise TrainError(f"num_devices={num_devices} must be in [1, {len(devices)}].")
    devices = devices[:num_devices]
  mesh = partitioning.make_mesh(model_parallel_size, devices)
  partitioning.check_batch_size(train_dataset_cfg.batch_size, mesh)
  if (train_dataset_cfg.batch_size // jax.process_count()) % num_microbatches:
    raise TrainError(
        f"num_microbatches={num_microbatches} must divide the per-host batch "
        f"({train_dataset_cfg.batch_size // jax.process_count()}).")
  initial = None
  if initial_checkpoint_path:
    initial = load_model(initial_checkpoint_path, student_config)[1]

  # Nothing is created in MODEL_DIR until the data, too, has been checked.
  start_step = 0
  if os.path.isdir(model_dir):
    existing = Checkpointer(model_dir, period=checkpoint_period)
    try:
      start_step = existing.latest_step() or 0
      if start_step:
        existing.check_config(start_step, student_config)
    finally:
      existing.close()
  # Every host reads the whole global batch stream and keeps its own rows: the batches,
  # and so the losses, are identical whatever the number of hosts and devices.
  _check_vocabulary(vocabulary_size(train_dataset_cfg), student_config, teacher_config)
  data = BatchIterator(train_dataset_cfg, shard_id=0, num_shards=1, start_step=start_step)
  checkpointer = Checkpointer(model_dir, period=checkpoint_period, keep=keep_checkpoints)
  rows = train_dataset_cfg.batch_size // jax.process_count()
  first_row = jax.process_index() * rows

  schedule = learning_rate or constant(1e-3)
  tx = optimizer(learning_rate=schedule)
  setup = StepConfig(objective=objective, student_config=student_config,
                     teacher_config=teacher_config, optimizer=tx, learning_rate=schedule,
                     num_microbatches=num_microbatches, report_accuracy=report_accuracy,
                     skip_nonfinite=on_nonfinite == "skip")

  with partitioning.activate(mesh, logical_axis_rules):
    student_shardings = partitioning.logical_to_sharding(
        mesh, logical_axes(student_config), logical_axis_rules)
    teacher_params, teacher_shardings = None, None
    if teacher_config is not None:
      teacher_shardings = partitioning.logical_to_sharding(
          mesh, logical_axes(teacher_config), logical_axis_rules)
      if teacher_weights is None:
        teacher_weights = jax.jit(
            lambda rng: init_student(teacher_config, rng, method="random"),
            out_shardings=teacher_shardings)(jax.random.key(seed + 1))
      teacher_params = jax.device_put(
          jax.tree_util.tree_map(lambda x: jnp.asarray(x, teacher_config.parameter_dtype),
                                 teacher_weights), teacher_shardings)

    # Weights the state starts from travel as arguments, never as jit constants.
    def init_trainable(rng, initial_student, teacher):
      student_rng, objective_rng = jax.random.split(rng)
      if initial_student is not None:
        student = initial_student
      elif student_init == "teacher_layers":
        student = init_student(student_config, student_rng, method="teacher_layers",
                               teacher_config=teacher_config, teacher_params=teacher)
      else:
        student = init_student(student_config, student_rng, method="random")
      trainable = {"student": student}
      objective_params = objective.init_params(objective_rng, teacher_config, student_config)
      if objective_params is not None:
        trainable["objective"] = objective_params
      return trainable

    init_args = (jax.random.key(seed), initial, teacher_params)
    abstract_trainable = jax.eval_shape(init_trainable, *init_args)
    trainable_shardings = {"student": student_shardings}
    if "objective" in abstract_trainable:
      trainable_shardings["objective"] = jax.tree_util.tree_map(
          lambda _: partitioning.replicated(mesh), abstract_trainable["objective"])
    abstract_opt_state = jax.eval_shape(tx.init, abstract_trainable)
    state_shardings = TrainState(
        step=partitioning.replicated(mesh), params=trainable_shardings,
        opt_state=_shardings_like_params(abstract_opt_state, abstract_trainable,
                                         trainable_shardings, mesh))
    state = jax.jit(lambda *args: TrainState.create(init_trainable(*args), tx),
                    out_shardings=state_shardings)(*init_args)
    if start_step:
      restored, restored_step = checkpointer.restore_latest(abstract_like(state))
      if restored_step != start_step:   # fell back past corrupt checkpoints
        start_step = restored_step
        data = BatchIterator(train_dataset_cfg, shard_id=0, num_shards=1,
                             start_step=start_step)
      if restored is not None:
        state = restored
        logging.info("Resumed from %s at step %d.", model_dir, start_step)

    _write_run_files(model_dir, operative_config, teacher_origin, student_config,
                     teacher_config, state.params, teacher_params, mesh, logical_axis_rules)
    batch_shardings = partitioning.batch_sharding(mesh)
    step_fn = jax.jit(functools.partial(train_step, setup),
                      in_shardings=(state_shardings, teacher_shardings, batch_shardings, None),
                      out_shardings=(state_shardings, None), donate_argnums=(0,))
    dropout_rng = jax.random.key(seed + 2)

    writer = MetricsWriter(model_dir, total_steps=total_steps, start_step=start_step,
                           console_interval_seconds=console_interval_seconds)
    preempted = {"flag": False}
    previous_handler = signal.signal(signal.SIGTERM,
                                     lambda *_: preempted.__setitem__("flag", True))
    last_logged: dict[str, float] = {}
    try:
      step = start_step
      pending, period_start, seqs, target_tokens = [], time.time(), 0, 0
      fetched = []   # host copies of the first len(fetched) entries of `pending`
      health: dict[str, float] = {}
      while step < total_steps:
        global_batch = next(data)
        host_batch = {k: v[first_row:first_row + rows] for k, v in global_batch.items()}
        batch = partitioning.host_batch_to_global(host_batch, mesh)
        state, metrics = step_fn(state, teacher_params, batch, dropout_rng)
        step += 1
        pending.append(metrics)
        # Read the flag once: a SIGTERM arriving later in this iteration is handled in the
        # next, so a stop always follows the checkpoint (and the checks) of its step.
        stopping = preempted["flag"]
        save_now = checkpointer.should_save(step) or step == total_steps or stopping
        log_now = step % log_period == 0 or step == total_steps
        if save_now or log_now:   # one transfer of the period's metrics, not one per step
          fetched += jax.device_get(pending[len(fetched):])
          if on_nonfinite == "stop":
            _stop_on_nonfinite(step - len(fetched) + 1, fetched, checkpointer.latest_step())
        if save_now and health_examples:
          health = _attention_health(student_config, state.params["student"],
                                     global_batch, health_examples, step)
        seqs += train_dataset_cfg.batch_size
        target_tokens += int(np.sum(host_batch["decoder_target_tokens"] != 0)) * \
            jax.process_count()
        if log_now:
          means = jax.tree_util.tree_map(lambda *v: float(np.mean(v)), *fetched)
          means["nonfinite"] = float(sum(m["nonfinite"] for m in fetched))   # a count
          elapsed = max(time.time() - period_start, 1e-9)
          means["timing/steps_per_second"] = len(pending) / elapsed
          means["timing/seqs_per_second"] = seqs / elapsed
          means["timing/target_tokens_per_second"] = target_tokens / elapsed
          means.update(health)
          health = {}
          writer.write(step, means)
          last_logged = means
          pending, fetched, period_start, seqs, target_tokens = [], [], time.time(), 0, 0
        if inference_evaluator is not None and (
            step == total_steps or (eval_period and step % eval_period == 0)):
          student = multihost_utils.process_allgather(state.params["student"], tiled=True)
          inference_evaluator(student_config, student, step,
                              os.path.join(model_dir, "eval"))
        if save_now:
          checkpointer.save(step, state, config=student_config,
                            data_position={"step": step})
        if stopping:
          logging.warning("SIGTERM: checkpoint written at step %d; stopping.", step)
          break
    finally:
      signal.signal(signal.SIGTERM, previous_handler)
      writer.close()
      checkpointer.close()
  return last_logged


def _attention_health(config: T5Config, params, global_batch, examples: int, step: int
                      ) -> dict[str, float]:
  """Normalized attention entropies and the encoder-output cosine of the first `examples`
  rows (the same on every host); warns when a layer's attention has collapsed."""
  rows = {k: v[:examples] for k, v in global_batch.items()
          if k in ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")}
  health = {k: v for k, v in attention_health(config, params, rows).items()
            if not k.startswith("attention_entropy/")}
  collapsed = collapsed_layers(health)
  if collapsed:
    logging.warning(
        "Step %d: attention has collapsed in %s (normalized entropy below %.2f: each query "
        "attends to about one position; encoder-output cosine between examples %.3f). A "
        "model in this state finetunes poorly and passes the collapse on to students: "
        "lower the learning rate or train with Adafactor (runs/pretrain.gin); see "
        "docs/method.md, 'Attention collapse'.", step, ", ".join(collapsed),
        COLLAPSE_THRESHOLD, health["encoder_output_cosine"])
  return health


def _check_vocabulary(needed: int, student_config: T5Config,
                      teacher_config: T5Config | None) -> None:
  """Token ids at or past a model's vocab_size would be read as garbage embeddings."""
  for role, config in (("student", student_config), ("teacher", teacher_config)):
    if config is not None and config.vocab_size < needed:
      rounded = -(-needed // 128) * 128
      raise TrainError(
          f"The task's vocabulary has {needed} token ids but the {role}'s vocab_size is "
          f"{config.vocab_size}: set the {role} config's vocab_size to at least {needed} "
          f"(e.g. {rounded}), or use a smaller SentencePiece model.")


def _stop_on_nonfinite(first_step: int, steps_metrics: list[dict], last_saved: int | None
                       ) -> None:
  """FloatingPointError at the first step whose loss or gradient was NaN/inf
  (`steps_metrics` are the host metrics of consecutive steps from `first_step`)."""
  for step, metrics in enumerate(steps_metrics, start=first_step):
    if not metrics["nonfinite"]:
      continue
    bad = sorted(name for name, value in metrics.items()
                 if name != "nonfinite" and not np.isfinite(value))
    raise FloatingPointError(
        f"Non-finite values at step {step} in {', '.join(bad)}; stopping without writing "
        f"a checkpoint for it (the newest is step {last_saved or 0}). Lower the learning "
        "rate, check the data, or set ON_NONFINITE = \"skip\" to drop such steps.")


def _write_run_files(model_dir, operative_config, teacher_origin, student_config,
                     teacher_config, student_params, teacher_params, mesh, rules) -> None:
  if jax.process_index() != 0:
    return
  os.makedirs(model_dir, exist_ok=True)
  if operative_config is not None:
    with open(os.path.join(model_dir, "config.gin"), "w") as f:
      f.write(f"# Teacher: {teacher_origin}\n")
      f.write(operative_config())
  logging.info("Teacher: %s", teacher_origin)
  write_model_info(os.path.join(model_dir, "model-info.txt"), mesh=mesh, rules=rules,
                   student_config=student_config, student_params=student_params,
                   teacher_config=teacher_config, teacher_params=teacher_params)
