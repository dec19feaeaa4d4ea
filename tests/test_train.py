"""The trainer end to end on tiny configs: CLI, outputs, meshes, hosts, resume.

Bad input: tests/test_bad_input.py; kills, corrupt checkpoints, NaNs: tests/test_faults.py.
"""

import json
import os
import signal
import socket
import time

import jax
import numpy as np
import pytest

from miniend_jax.convert.checkpoint_loading import load_model
from tests.training_runs import cli, read_metrics, train_with


def test_pretrain_without_a_teacher_from_an_initial_checkpoint(tmp_path, single_device_run,
                                                               sentencepiece_model):
  """runs/pretrain.gin: cross-entropy only (no teacher), Adafactor + rsqrt decay, student
  weights from INITIAL_CHECKPOINT_PATH."""
  model_dir = str(tmp_path / "pretrain")
  train_with(model_dir, "MIXTURE_OR_TASK_NAME = 'embedded_topic_classification'",
             "TASK_FEATURE_LENGTHS = {'inputs': 32, 'targets': 4}", "BATCH_SIZE = 8",
             "STUDENT_CONFIG = %TINY", "tiny/config.preset.vocab_size = 1152",
             f'INITIAL_CHECKPOINT_PATH = "{single_device_run}"', "TRAIN_STEPS = 1",
             "BASE_LEARNING_RATE = 1e-9",
             gin_files=("runs/pretrain.gin", "models/tiny.gin"),
             vocabulary=sentencepiece_model)
  metrics = read_metrics(model_dir)
  assert set(metrics[0]) >= {"loss", "cross_entropy", "accuracy", "cross_ent_loss"}
  assert "logit_kl" not in metrics[0]
  assert "Teacher: none" in open(os.path.join(model_dir, "config.gin")).read()
  # One step at a negligible learning rate: the weights are still the initial checkpoint's.
  for a, b in zip(jax.tree_util.tree_leaves(load_model(model_dir)[1]),
                  jax.tree_util.tree_leaves(load_model(single_device_run)[1])):
    np.testing.assert_allclose(a, b, atol=1e-6)


def _fixed_batch_setup(num_microbatches=1, sgd=False):
  """A tiny teacher/student MiniEnD-E step on one fixed batch."""
  import optax  # pylint: disable=g-import-not-at-top
  from miniend_jax.distill import objectives  # pylint: disable=g-import-not-at-top
  from miniend_jax.distill.student_init import init_student  # pylint: disable=g-import-not-at-top
  from miniend_jax.model import preset  # pylint: disable=g-import-not-at-top
  from miniend_jax.train import optimizers, step as step_lib  # pylint: disable=g-import-not-at-top
  from miniend_jax.train.state import TrainState  # pylint: disable=g-import-not-at-top
  student = preset("tiny")
  teacher = preset("tiny", emb_dim=48, num_heads=4, head_dim=12, num_encoder_layers=3)
  objective = objectives.Objective([
      objectives.LogitKL(),
      objectives.AttentionRelations(stack="decoder", attention="self", num_relation_heads=4),
      objectives.AttentionRelations(stack="encoder", attention="self", num_relation_heads=4)])
  schedule = optimizers.constant(3e-3)
  tx = optax.sgd(schedule) if sgd else optimizers.adamw(schedule)
  setup = step_lib.StepConfig(objective=objective, student_config=student,
                              teacher_config=teacher, optimizer=tx, learning_rate=schedule,
                              num_microbatches=num_microbatches)
  rng = np.random.default_rng(0)
  targets = rng.integers(2, student.vocab_size, (4, 8))
  batch = {"encoder_input_tokens": rng.integers(2, student.vocab_size, (4, 12)),
           "decoder_input_tokens": np.concatenate([np.zeros((4, 1), int), targets[:, :-1]], 1),
           "decoder_target_tokens": targets}
  teacher_params = init_student(teacher, jax.random.key(1))
  state = TrainState.create({"student": init_student(student, jax.random.key(2))}, tx)
  step_fn = jax.jit(lambda s, b: step_lib.train_step(setup, s, {"teacher": teacher_params}, b,
                                                     jax.random.key(3)))
  return step_fn, state, batch


def test_loss_goes_down_on_a_fixed_batch():
  """20 steps of MiniEnD-E on one batch drive the distillation loss well down."""
  step_fn, state, batch = _fixed_batch_setup()
  losses = []
  for _ in range(20):
    state, metrics = step_fn(state, batch)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < 0.6 * losses[0], losses
  assert int(state.step) == 20


def test_gradient_accumulation_matches_one_big_batch():
  # SGD: the update is linear in the gradient, so parameters compare the gradients
  # themselves (Adam's first step is lr * sign(g), which flips on rounding near g = 0).
  whole_fn, state, batch = _fixed_batch_setup(num_microbatches=1, sgd=True)
  micro_fn, _, _ = _fixed_batch_setup(num_microbatches=2, sgd=True)
  whole_state, whole = whole_fn(state, batch)
  micro_state, micro = micro_fn(state, batch)
  # Every row has the same number of target tokens, so means of halves equal the mean.
  for key in ("loss", "logit_kl", "accuracy", "grad_norm/encoder", "grad_norm/decoder"):
    assert float(micro[key]) == pytest.approx(float(whole[key]), rel=1e-5, abs=1e-7), key
  for a, b in zip(jax.tree_util.tree_leaves(micro_state.params),
                  jax.tree_util.tree_leaves(whole_state.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-7)


def test_same_losses_on_one_device_and_a_2x4_mesh(tmp_path, single_device_run,
                                                  sentencepiece_model):
  model_dir = str(tmp_path / "mesh")
  train_with(model_dir, "MODEL_PARALLEL_SIZE = 4", vocabulary=sentencepiece_model)
  assert "{'data': 2, 'model': 4}" in open(os.path.join(model_dir, "model-info.txt")).read()
  one = [m["loss"] for m in read_metrics(single_device_run)]
  mesh = [m["loss"] for m in read_metrics(model_dir)]
  np.testing.assert_allclose(mesh, one, atol=1e-5, rtol=0)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_same_losses_as_two_processes_of_four_devices(tmp_path, sentencepiece_model):
  """Two processes (INPUT_SHARDS defaults to 2, one per host), each reading only its own
  input shard, give the losses of one process reading both shards."""
  one_process = str(tmp_path / "one_process")
  train_with(one_process, "trainer.train.num_devices = 1", "INPUT_SHARDS = 2",
             vocabulary=sentencepiece_model)
  model_dir = str(tmp_path / "two_hosts")
  address = f"127.0.0.1:{_free_port()}"
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4 "
                      "--xla_backend_optimization_level=0", "JAX_PLATFORMS": "cpu"}
  processes = [cli(model_dir, f"--coordinator_address={address}", "--process_count=2",
                   f"--process_index={index}", "--gin.MODEL_PARALLEL_SIZE=2",
                   env=env, vocabulary=sentencepiece_model) for index in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in processes]
  for process, output in zip(processes, outputs):
    assert process.returncode == 0, output[-3000:]
  for index, log in enumerate(["train.log", "train.process_1.log"]):   # INFO: not on console
    text = open(os.path.join(model_dir, log)).read()
    assert f"reads input shards [{index}] of 2, 4 of the 8 rows" in text, text[-3000:]
    assert "reads input shards" not in outputs[index]
  info = open(os.path.join(model_dir, "model-info.txt")).read()
  assert "over 8 devices, 2 process(es)" in info
  one = [m["loss"] for m in read_metrics(one_process)]
  hosts = [m["loss"] for m in read_metrics(model_dir)]
  np.testing.assert_allclose(hosts, one, atol=1e-5, rtol=0)


def test_cli_run_writes_every_output_and_stops_cleanly_on_sigterm(tmp_path,
                                                                   sentencepiece_model):
  """`python -m miniend_jax.train` distils, writes what t5x users expect, and on SIGTERM
  (preemption) writes a loadable checkpoint and exits 0."""
  model_dir = str(tmp_path / "run")
  process = cli(model_dir, "--gin.TRAIN_STEPS=100000", "--gin.trainer.train.num_devices=1",
                vocabulary=sentencepiece_model)
  lines = []
  deadline = time.time() + 600
  for line in process.stdout:
    lines.append(line)
    if "step 3/100000" in line or time.time() > deadline:
      break
  process.send_signal(signal.SIGTERM)
  rest, _ = process.communicate(timeout=300)
  output = "".join(lines) + rest
  assert process.returncode == 0, output
  assert "step 3/100000" in output and "loss" in output  # the console progress line
  # A quiet console: library INFO lines (orbax's, TensorFlow's start-up) go to train.log.
  log = open(os.path.join(model_dir, "train.log")).read()
  assert "orbax" in log and "Saved" in log or "Finished" in log, log[-2000:]
  assert "orbax" not in output and " I0" not in output and "In call to" not in output, output
  files = set(os.listdir(model_dir))
  assert {"config.gin", "model-info.txt", "metrics.jsonl", "train", "checkpoint_2"} <= files
  steps = sorted(int(name.split("_")[1]) for name in files if name.startswith("checkpoint_"))
  assert steps[0] == 2 and steps[-1] >= 3  # periodic ones, and one at SIGTERM
  config_gin = open(os.path.join(model_dir, "config.gin")).read()
  assert "RANDOMLY INITIALISED" in config_gin
  assert "trainer.train" in config_gin and "TRAIN_STEPS = 100000" in config_gin
  info = open(os.path.join(model_dir, "model-info.txt")).read()
  assert "# student total parameters:" in info and "# teacher (frozen) total" in info
  assert "encoder/layers_0/attention/query/kernel\t(32, 32)\tfloat32\t('embed', 'joined_kv')" \
      in info
  metrics = read_metrics(model_dir)
  assert [m["step"] for m in metrics] == list(range(1, steps[-1] + 1))
  for record in metrics:
    for key in ("loss", "logit_kl", "decoder_self_relations", "encoder_self_relations",
                "learning_rate", "grad_norm/encoder", "grad_norm/decoder", "accuracy",
                "timing/seqs_per_second", "timing/target_tokens_per_second"):
      assert np.isfinite(record[key]), key
    terms = record["logit_kl"] + (record["decoder_self_relations"]
                                  + record["encoder_self_relations"])
    assert record["loss"] == pytest.approx(terms, rel=1e-5)
  events = os.listdir(os.path.join(model_dir, "train"))
  assert any(name.startswith("events.out.tfevents") for name in events)
  config, params = load_model(model_dir)
  assert config.emb_dim == 32 and config.num_encoder_layers == 2
  assert jax.tree_util.tree_leaves(params)


def test_finetuning_with_inference_evaluation_improves_downstream_metrics(
    tmp_path, trained_checkpoint, sentencepiece_model):
  """runs/finetune.gin on both embedded downstream tasks: seqio evaluation during
  training (EVAL_PERIOD) shows accuracy and ROUGE above the untrained model's."""
  import tasks  # pylint: disable=g-import-not-at-top
  from miniend_jax.evaluation.evaluator import InferenceEvaluator  # pylint: disable=g-import-not-at-top
  tasks.embedded.register()  # other tests may have reset seqio's registries
  start_dir, config, _ = trained_checkpoint
  lengths = {"inputs": 64, "targets": 16}
  evaluation = InferenceEvaluator("embedded_downstream", lengths, batch_size=64)
  before = evaluation(config, load_model(start_dir)[1], 0, str(tmp_path / "before"))
  model_dir = str(tmp_path / "finetune")
  train_with(model_dir, "MIXTURE_OR_TASK_NAME = 'embedded_downstream'",
             f"TASK_FEATURE_LENGTHS = {lengths}", "BATCH_SIZE = 16",
             "STUDENT_CONFIG = %TINY", f"tiny/config.preset.vocab_size = {config.vocab_size}",
             "tiny/config.preset.num_decoder_layers = 3",
             f'INITIAL_CHECKPOINT_PATH = "{start_dir}"', "TRAIN_STEPS = 80",
             "EVAL_PERIOD = 40", "EVAL_BATCH_SIZE = 64", "CHECKPOINT_PERIOD = 80",
             "LOG_PERIOD = 40", "LEARNING_RATE = 2e-2",
             gin_files=("runs/finetune.gin", "models/tiny.gin"),
             vocabulary=sentencepiece_model)
  eval_dir = os.path.join(model_dir, "eval")
  topic = [json.loads(line) for line in
           open(os.path.join(eval_dir, "embedded_topic_classification-metrics.jsonl"))]
  summary = [json.loads(line) for line in
             open(os.path.join(eval_dir, "embedded_summarization-metrics.jsonl"))]
  assert [r["step"] for r in topic] == [40, 80] == [r["step"] for r in summary]
  assert topic[-1]["accuracy"] > before["embedded_topic_classification"]["accuracy"]
  for key in ("rouge1", "rougeL"):
    assert summary[-1][key] > before["embedded_summarization"][key], key
