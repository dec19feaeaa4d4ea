"""Running the trainer on the tiny experiment, in this process or as `python -m
miniend_jax.train`: shared by the training, fault and bad-input tests."""

import json
import os
import subprocess
import sys

import gin

from miniend_jax import gin_cli
from miniend_jax.train import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "experiments/tiny_distill.gin"
# Few steps, a log line and a checkpoint every step or two: what the tests compare.
FAST = ["TRAIN_STEPS = 4", "LOG_PERIOD = 1", "CHECKPOINT_PERIOD = 2"]


def train_with(model_dir, *bindings, gin_files=(TINY,), vocabulary=None):
  """Run the configured trainer in this process (as `python -m miniend_jax.train` does)."""
  extra = [f'SENTENCEPIECE_MODEL = "{vocabulary}"'] if vocabulary else []
  return gin_cli.call_configured(
      trainer.train, list(gin_files), [f'MODEL_DIR = "{model_dir}"', *FAST, *extra, *bindings],
      operative_config=gin.operative_config_str)


def read_metrics(model_dir):
  with open(os.path.join(model_dir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def cli(model_dir, *flags, env=None, vocabulary=None, **popen):
  """`python -m miniend_jax.train` on the tiny experiment with FAST, as a Popen (stdout
  and stderr together to a pipe unless `stdout` / `stderr` say otherwise)."""
  command = [sys.executable, "-m", "miniend_jax.train", f"--gin_file={TINY}",
             f'--gin.MODEL_DIR="{model_dir}"'] + [f"--gin.{b.replace(' = ', '=')}" for b in FAST]
  if vocabulary:
    command.append(f'--gin.SENTENCEPIECE_MODEL="{vocabulary}"')
  environment = {**os.environ, "PYTHONPATH": REPO, **(env or {})}
  popen.setdefault("stdout", subprocess.PIPE)
  popen.setdefault("stderr", subprocess.STDOUT)
  return subprocess.Popen(command + list(flags), cwd=REPO, env=environment, text=True,
                          **popen)
