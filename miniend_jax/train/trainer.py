"""`train`: distil (or pretrain, or finetune) a T5 student, t5x-style.

`train(...)` is keyword-only with everything injected, so gin binds its arguments
(gin_configs/runs/*.gin). It is the orchestration of three parts, each in its own module:

1. frozen_models.py: the teacher (and an assistant), opened on the host (names and shapes
   checked) and read slice by slice as it is placed on the mesh;
2. state_init.py: the train state, abstract -> shardings -> restored from the newest intact
   checkpoint, or initialised (never both);
3. loop.py: the jitted step and the periodic actions (non-finite policy, attention health,
   logging, evaluation, checkpoints, SIGTERM).

Every setting a user can get wrong is checked before anything is compiled or written: a
refused run leaves MODEL_DIR as it was. A killed run resumes from its newest intact
checkpoint (train/checkpoints.py verifies what it reads) and reads exactly the batches an
uninterrupted run would (the data stream is a function of the step).

Only one run writes a MODEL_DIR (run_lock.py: MODEL_DIR/run.lock, taken once every check
has passed). Each start writes its own config file and each checkpoint records what
defines the run (run_record.py); library INFO lines go to MODEL_DIR/train.log
(console.py). A failed write ends as one sentence naming the newest intact checkpoint.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import optax
import seqio
from absl import logging
from flax import traverse_util

from miniend_jax.convert.checkpoint_loading import load_model
from miniend_jax.convert.model_vocabulary import check_model_vocabulary, write_model_vocabulary
from miniend_jax.convert.validation import expected_shapes
from miniend_jax.data.dataset import DatasetConfig, dataset_vocabulary
from miniend_jax.data.host_input import HostBatches, check_input_shards
from miniend_jax.distill.objectives import Objective
from miniend_jax import console
from miniend_jax.errors import MiniendError, write_failure
from miniend_jax.model.config import T5Config
from miniend_jax.model.network import logical_axes
from miniend_jax.train import partitioning
from miniend_jax.train.checkpoints import Checkpointer, CorruptCheckpointError
from miniend_jax.train.frozen_models import (FrozenModel, load_frozen_models,
                                             place_frozen_models)
from miniend_jax.train.loop import LoopSettings, TrainLoop
from miniend_jax.train.metrics_writer import MetricsWriter
from miniend_jax.train.model_info import write_model_info
from miniend_jax.train.optimizers import Schedule, constant
from miniend_jax.train.run_lock import RunLock
from miniend_jax.train.run_record import check_definition, run_definition, write_config_record
from miniend_jax.train.state_init import StateInitializer
from miniend_jax.train.step import StepConfig, jit_train_step


NONFINITE_POLICIES = ("stop", "skip")


class TrainError(MiniendError, ValueError):
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


def train(*, model_dir: str, student_config: T5Config, objective: Objective,
          train_dataset_cfg: DatasetConfig, total_steps: int,
          optimizer: Callable[..., optax.GradientTransformation],
          learning_rate: Schedule | None = None,
          teacher_checkpoint: str | None = None, teacher_config: T5Config | None = None,
          teacher_dtype: str | None = None,
          assistant_checkpoint: str | None = None, assistant_config: T5Config | None = None,
          assistant_dtype: str | None = None,
          initial_checkpoint_path: str | None = None, student_init: str = "random",
          checkpoint_period: int = 1000, keep_checkpoints: int | None = None,
          log_period: int = 10, model_parallel_size: int = 1,
          num_devices: int | None = None,
          logical_axis_rules: partitioning.LogicalRules = partitioning.STANDARD_RULES,
          num_microbatches: int = 1, input_shards: int | None = None,
          report_accuracy: bool = True, seed: int = 0,
          take_over_lock: bool = False, allow_resume_changes: bool = False,
          inference_evaluator: Callable[..., Any] | None = None,
          eval_period: int | None = None,
          console_interval_seconds: float = 0.0, on_nonfinite: str = "stop",
          health_examples: int = 8,
          operative_config: Callable[[], str] | None = None) -> dict[str, float]:
  """Train to `total_steps` from MODEL_DIR's newest intact checkpoint (or from scratch);
  returns the last logged metrics.

  Args (the gin macro each is bound to in gin_configs/runs/, where there is one):
    model_dir: MODEL_DIR: checkpoints, metrics.jsonl, config.gin, model-info.txt, train/.
    student_config, objective: STUDENT_CONFIG; the loss (gin_configs/objectives/).
    train_dataset_cfg: the data (a seqio task/mixture; BATCH_SIZE is its batch size).
    total_steps: TRAIN_STEPS.
    optimizer, learning_rate: an optax constructor (e.g. optimizers.adamw), the schedule.
    teacher_checkpoint, teacher_config, teacher_dtype: TEACHER_CHECKPOINT (Hugging Face,
      t5x or one of our runs), TEACHER_CONFIG (needed for t5x and for a random teacher,
      checked against the weights otherwise), TEACHER_DTYPE (e.g. "bfloat16").
    assistant_checkpoint, assistant_config, assistant_dtype: ASSISTANT_CHECKPOINT,
      ASSISTANT_CONFIG, ASSISTANT_DTYPE: the same for the assistant an interpolated
      objective blends the teacher's logit target with (BLEND_PARTNER = "assistant");
      refused when the objective reads none.
    initial_checkpoint_path: INITIAL_CHECKPOINT_PATH: a new student starts from these
      weights (finetuning); any format load_model reads.
    student_init: "random" or "teacher_layers" (copy maximally spaced teacher layers).
    checkpoint_period, keep_checkpoints: every how many steps to save; how many to keep.
    log_period: every how many steps to write metrics (means over the period).
    model_parallel_size, num_devices, logical_axis_rules, num_microbatches: the mesh's
      "model" axis, the first N devices (default all), logical -> mesh axes; gradient
      accumulation steps per update.
    input_shards: INPUT_SHARDS: the global batch is read as this many shards, each host
      reading its own (data/host_input.py); None: the number of hosts at the run's first
      start. Recorded in the checkpoints: a resumed run keeps it (set it to resume on a
      number of hosts it is not a multiple of).
    report_accuracy: log the student's accuracy and cross-entropy on targets.
    seed: parameter initialisation and dropout.
    take_over_lock: TAKE_OVER_LOCK: take MODEL_DIR's lock from a run on another host
      that is known to be gone (train/run_lock.py).
    allow_resume_changes: ALLOW_RESUME_CHANGES: resume although the objective, a frozen
      model, the vocabulary or the task differ from what the checkpoints were trained
      with (recorded; train/run_record.py).
    inference_evaluator, eval_period: called as (student_config, student_params, step,
      output_dir) every EVAL_PERIOD steps and at the end (e.g. InferenceEvaluator).
    console_interval_seconds: the progress line at most this often (0: every log).
    on_nonfinite: ON_NONFINITE: "stop" raises at the first NaN/inf loss or gradient,
      before any checkpoint holds it; "skip" drops such steps' updates.
    health_examples: attention health of this many examples at each checkpoint (0: off).
    operative_config: returns the gin operative config text, written to config.gin
      (first start) or config_from_step_<N>.gin (a start from step N).
  """
  _check_settings(model_dir=model_dir, total_steps=total_steps, eval_period=eval_period,
                  on_nonfinite=on_nonfinite, student_init=student_init)
  vocabulary = dataset_vocabulary(train_dataset_cfg)
  for setting, path in (("TEACHER_CHECKPOINT", objective.uses_teacher and teacher_checkpoint),
                        ("ASSISTANT_CHECKPOINT",
                         objective.uses_assistant and assistant_checkpoint),
                        ("INITIAL_CHECKPOINT_PATH", initial_checkpoint_path),
                        ("MODEL_DIR (resumed)", model_dir)):
    check_model_vocabulary(path, vocabulary, setting)   # before any model is read
  frozen = load_frozen_models(
      objective, teacher_checkpoint=teacher_checkpoint, teacher_config=teacher_config,
      teacher_dtype=teacher_dtype, assistant_checkpoint=assistant_checkpoint,
      assistant_config=assistant_config, assistant_dtype=assistant_dtype)
  mesh = make_train_mesh(num_devices, model_parallel_size, train_dataset_cfg.batch_size,
                         num_microbatches)
  step_config, initializer = plan_step(
      objective=objective, student_config=student_config,
      frozen_configs={role: model.config for role, model in frozen.items()},
      optimizer=optimizer, learning_rate=learning_rate, num_microbatches=num_microbatches,
      report_accuracy=report_accuracy, on_nonfinite=on_nonfinite, student_init=student_init,
      seed=seed, mesh=mesh, rules=logical_axis_rules)
  _check_vocab_size(vocabulary.vocab_size,
                    {"student": student_config, **{r: m.config for r, m in frozen.items()}})
  resume_step, recorded = _resumable_step(model_dir, student_config)
  input_shards = _input_shards(input_shards, _recorded_input_shards(resume_step, recorded),
                               train_dataset_cfg.batch_size)
  if resume_step >= total_steps and _reads_back_intact(model_dir, resume_step, initializer):
    logging.warning("MODEL_DIR %s is already at step %d (TRAIN_STEPS = %d): nothing to do, "
                    "nothing written. Raise TRAIN_STEPS to train further.", model_dir,
                    resume_step, total_steps)
    return {}
  initial = None
  if initial_checkpoint_path and not resume_step:
    initial = load_model(initial_checkpoint_path, student_config)[1]   # a bad path refuses
  # Each host reads only its own rows; the batches do not depend on the number of hosts.
  # Built now: bad data refuses the run before anything is written.
  read_data = functools.partial(HostBatches, train_dataset_cfg, input_shards=input_shards,
                                host=jax.process_index(), num_hosts=jax.process_count())
  data = read_data(start_step=resume_step)
  logging.info("Input: this host reads input shards %s of %d, %d of the %d rows of each "
               "batch.", list(data.shards), input_shards,
               train_dataset_cfg.batch_size // jax.process_count(),
               train_dataset_cfg.batch_size)
  settings = LoopSettings(
      total_steps=total_steps, log_period=log_period, seed=seed, on_nonfinite=on_nonfinite,
      health_examples=health_examples, inference_evaluator=inference_evaluator,
      eval_period=eval_period, console_interval_seconds=console_interval_seconds)
  lock = RunLock(model_dir, take_over=take_over_lock)
  try:
    lock.acquire(create_dir=False)   # a second launch stops here, before placing models
    with partitioning.activate(mesh, logical_axis_rules):
      frozen_params, frozen_shardings = place_frozen_models(frozen, mesh,
                                                            logical_axis_rules, seed)
      definition = run_definition(
          objective=objective, vocabulary=vocabulary,
          task=train_dataset_cfg.mixture_or_task_name,
          frozen={role: (model.config, frozen_params[role]) for role, model in frozen.items()})
      changes = check_definition(model_dir, resume_step, recorded.get("definition"),
                                 definition, allow_resume_changes)
      history = list(recorded.get("definition_changes", []))
      if changes:
        history.append({"step": resume_step, "changes": changes})
        logging.warning("ALLOW_RESUME_CHANGES = True: resuming step %d with changed defining "
                        "settings: %s", resume_step, "; ".join(changes))
      # Everything is checked: only now is MODEL_DIR written.
      lock.acquire(create_dir=True)
      with console.log_file(_log_path(model_dir)):
        checkpointer = Checkpointer(model_dir, period=checkpoint_period, keep=keep_checkpoints,
                                    run_meta={"input_shards": input_shards,
                                              "definition": definition,
                                              "definition_changes": history})
        try:
          return _train_checked(settings, checkpointer, initializer, step_config, frozen,
                                frozen_params, frozen_shardings, initial, data, read_data,
                                train_dataset_cfg.batch_size, operative_config, vocabulary,
                                changes)
        except MiniendError:
          raise
        except Exception as error:  # pylint: disable=broad-except
          failure = write_failure(error, _resume_hint(model_dir))
          if failure is None:
            raise
          raise failure from error
        finally:
          checkpointer.close()
  finally:
    lock.release()


def _log_path(model_dir: str) -> str:
  """Process 0 logs to MODEL_DIR/train.log, process i > 0 to train.process_<i>.log."""
  name = "train.log" if jax.process_index() == 0 else f"train.process_{jax.process_index()}.log"
  return os.path.join(model_dir, name)


def _resume_hint(model_dir: str) -> str:
  """What is safe after a failed write, and how to go on."""
  newest = None
  try:
    existing = Checkpointer(model_dir, period=1, read_only=True)
    newest = existing.latest_step()
    existing.close()
  except Exception:  # pylint: disable=broad-except  (the disk may be failing too)
    pass
  if newest:
    return (f"The newest intact checkpoint is checkpoint_{newest} in {model_dir}; fix the "
            "cause (e.g. free disk space) and rerun the same command to resume from it.")
  return (f"No checkpoint was written yet in {model_dir}; fix the cause (e.g. free disk "
          "space) and rerun the same command to start again.")


def _train_checked(settings: LoopSettings, checkpointer: Checkpointer,
                   initializer: StateInitializer, step_config: StepConfig,
                   frozen: dict[str, FrozenModel], frozen_params: dict[str, Any],
                   frozen_shardings: dict[str, Any], initial: Any, data: HostBatches,
                   read_data: Callable[..., HostBatches], batch_size: int,
                   operative_config: Callable[[], str] | None,
                   vocabulary: seqio.Vocabulary, changes: list[str]) -> dict[str, float]:
  """The checked run, under its mesh, MODEL_DIR locked: restore or init the state, write
  the run files, compile the step, loop."""
  mesh, rules, model_dir = initializer.mesh, initializer.rules, checkpointer.model_dir
  teacher_params = frozen_params.get("teacher")
  abstract_state = initializer.abstract_state()
  state_shardings = initializer.shardings(abstract_state)
  state, start_step = initializer.from_checkpoint_or_scratch(
      checkpointer, abstract_state, state_shardings, initial_student=initial,
      teacher_params=teacher_params)
  if start_step != data.step:   # fell back past a corrupt checkpoint: read from there
    data = read_data(start_step=start_step)
  _write_run_files(model_dir, start_step, operative_config, frozen, initializer.student_config,
                   state.params, frozen_params, mesh, rules, vocabulary, changes)
  step_fn = jit_train_step(step_config, state_shardings, frozen_shardings, mesh)
  writer = MetricsWriter(model_dir, total_steps=settings.total_steps, start_step=start_step,
                         console_interval_seconds=settings.console_interval_seconds)
  try:
    return TrainLoop(
        settings=settings, step_fn=step_fn, frozen_params=frozen_params, data=data,
        mesh=mesh, batch_size=batch_size, checkpointer=checkpointer,
        writer=writer, student_config=initializer.student_config, model_dir=model_dir,
    ).run(state, start_step)
  finally:
    writer.close()


def plan_step(*, objective: Objective, student_config: T5Config,
              frozen_configs: dict[str, T5Config],
              optimizer: Callable[..., optax.GradientTransformation],
              learning_rate: Schedule | None, num_microbatches: int, report_accuracy: bool,
              on_nonfinite: str, student_init: str, seed: int, mesh: jax.sharding.Mesh,
              rules: partitioning.LogicalRules) -> tuple[StepConfig, StateInitializer]:
  """What the step computes and how its state is laid out, from `train`'s settings and the
  frozen models' architectures ({role: config}); shared with `train_compile`, which
  compiles this same step for a TPU topology."""
  teacher_config = frozen_configs.get("teacher")
  assistant_config = frozen_configs.get("assistant")
  objective.check(teacher_config, student_config, assistant_config)
  for role, config in {"student": student_config, **frozen_configs}.items():
    partitioning.check_model_axis(
        mesh, rules, expected_shapes(config),
        traverse_util.flatten_dict(logical_axes(config), is_leaf=lambda _, x: isinstance(
            x, jax.sharding.PartitionSpec)), role)
  schedule = learning_rate or constant(1e-3)
  tx = optimizer(learning_rate=schedule)
  initializer = StateInitializer(
      student_config=student_config, objective=objective, optimizer=tx, mesh=mesh,
      rules=rules, student_init=student_init, teacher_config=teacher_config, seed=seed)
  step_config = StepConfig(
      objective=objective, student_config=student_config, teacher_config=teacher_config,
      optimizer=tx, learning_rate=schedule, num_microbatches=num_microbatches,
      report_accuracy=report_accuracy, skip_nonfinite=on_nonfinite == "skip",
      assistant_config=assistant_config)
  return step_config, initializer


def _check_settings(*, model_dir: str, total_steps: int, eval_period: int | None,
                    on_nonfinite: str, student_init: str) -> None:
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


def make_train_mesh(num_devices: int | None, model_parallel_size: int, batch_size: int,
                    num_microbatches: int, *, devices: Sequence[jax.Device] | None = None,
                    num_hosts: int | None = None) -> jax.sharding.Mesh:
  """The ("data", "model") mesh over all devices (or the first `num_devices`), checked
  against the batch it must split. `devices` and `num_hosts` default to this run's
  (jax.devices(), jax.process_count()); train_compile passes a TPU topology's."""
  devices = list(jax.devices() if devices is None else devices)
  num_hosts = jax.process_count() if num_hosts is None else num_hosts
  if num_devices is not None:
    if not 1 <= num_devices <= len(devices):
      raise TrainError(f"num_devices={num_devices} must be in [1, {len(devices)}].")
    devices = devices[:num_devices]
  mesh = partitioning.make_mesh(model_parallel_size, devices)
  partitioning.check_batch_size(batch_size, mesh, num_hosts=num_hosts)
  per_host = batch_size // num_hosts
  if per_host % num_microbatches:
    raise TrainError(f"num_microbatches={num_microbatches} must divide the per-host batch "
                     f"({per_host}).")
  return mesh


def _resumable_step(model_dir: str, student_config: T5Config) -> tuple[int, dict]:
  """(the step of MODEL_DIR's newest checkpoint (0: none), its meta ({} if none or
  unreadable: the restore falls back past it)), refused when it holds another student's
  architecture; found without writing anything."""
  if not os.path.isdir(model_dir):
    return 0, {}
  existing = Checkpointer(model_dir, period=1, read_only=True)
  try:
    step = existing.latest_step()
    if not step:
      return 0, {}
    existing.check_config(step, student_config)
    try:
      return step, existing.read_meta(step)
    except Exception:  # pylint: disable=broad-except  (unreadable: restore falls back)
      return step, {}
  finally:
    existing.close()


def _reads_back_intact(model_dir: str, step: int, initializer: StateInitializer) -> bool:
  """Whether checkpoint `step` restores with every fingerprint intact: a finished run is
  only left alone when its last checkpoint is sound (else the run falls back and retrains
  the steps after the newest intact one)."""
  existing = Checkpointer(model_dir, period=1, read_only=True)
  try:
    with partitioning.activate(initializer.mesh, initializer.rules):
      abstract = initializer.abstract_state()
      existing.restore(step, partitioning.with_shardings(
          abstract, initializer.shardings(abstract)))
    return True
  except CorruptCheckpointError:
    return False
  finally:
    existing.close()


def _recorded_input_shards(step: int, meta: dict) -> int | None:
  """The INPUT_SHARDS a resumed run's checkpoints were read with (those from before
  INPUT_SHARDS was recorded: 1), None for a new run or an unreadable meta."""
  if not step or not meta:
    return None
  return meta.get("input_shards", 1)


def _input_shards(asked: int | None, recorded: int | None, batch_size: int) -> int:
  """INPUT_SHARDS of this start: a resumed run keeps the one it started with."""
  if recorded is not None and asked is not None and asked != recorded:
    raise TrainError(
        f"INPUT_SHARDS={asked}, but MODEL_DIR's checkpoints were read as {recorded} input "
        f"shards; resuming with another number would read other batches: set INPUT_SHARDS "
        f"= {recorded} (or None), or use a new MODEL_DIR.")
  shards = asked or recorded or jax.process_count()
  check_input_shards(shards, batch_size, jax.process_count())
  return shards


def _check_vocab_size(needed: int, configs: dict[str, T5Config]) -> None:
  """Token ids at or past a model's vocab_size would be read as garbage embeddings."""
  for role, config in configs.items():
    if config.vocab_size < needed:
      rounded = -(-needed // 128) * 128
      raise TrainError(
          f"The task's vocabulary has {needed} token ids but the {role}'s vocab_size is "
          f"{config.vocab_size}: set the {role} config's vocab_size to at least {needed} "
          f"(e.g. {rounded}), or use a smaller SentencePiece model.")


def _write_run_files(model_dir: str, start_step: int,
                     operative_config: Callable[[], str] | None,
                     frozen: dict[str, FrozenModel], student_config: T5Config,
                     student_params: Any, frozen_params: dict[str, Any],
                     mesh: jax.sharding.Mesh, rules: partitioning.LogicalRules,
                     vocabulary: seqio.Vocabulary, changes: list[str]) -> None:
  """spiece.model (once), this start's config file (run_record.py), model-info.txt."""
  if jax.process_index() != 0:
    return
  origins = {"Teacher": frozen["teacher"].origin if "teacher" in frozen else
             "none (the objective has no teacher term)"}
  if "assistant" in frozen:
    origins["Assistant"] = frozen["assistant"].origin
  write_model_vocabulary(model_dir, vocabulary)
  if operative_config is not None:
    header = [f"{role}: {origin}" for role, origin in origins.items()]
    header.append(f"Started at step {start_step}.")
    if changes:
      header.append("ALLOW_RESUME_CHANGES = True: resumed with changed defining settings: "
                    + "; ".join(changes))
    write_config_record(model_dir, start_step, operative_config(), header)
  for role, origin in origins.items():
    logging.info("%s: %s", role, origin)
  write_model_info(os.path.join(model_dir, "model-info.txt"), mesh=mesh, rules=rules,
                   student_config=student_config, student_params=student_params,
                   frozen={role: (model.config, frozen_params[role])
                           for role, model in frozen.items()})
