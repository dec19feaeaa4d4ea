"""eval and infer entry points: seqio metrics files, predictions, and bad input."""

import json
import os

import gin
import pytest

from miniend_jax import gin_cli
from miniend_jax.convert.validation import CheckpointError
from miniend_jax.evaluation import evaluator

TASK = "embedded_topic_classification"
LENGTHS = "{'inputs': 48, 'targets': 6}"


def run(entry_point, gin_file, vocabulary, *bindings):
  gin.clear_config()
  gin_cli.parse([gin_file], [
      f'SENTENCEPIECE_MODEL = "{vocabulary}"',
      f'MIXTURE_OR_TASK_NAME = "{TASK}"', f"TASK_FEATURE_LENGTHS = {LENGTHS}",
      "NUM_EXAMPLES = 12", "BATCH_SIZE = 8", *bindings])
  try:
    return gin.get_configurable(entry_point)()
  finally:
    gin.clear_config()


def test_eval_writes_seqio_metrics_for_every_checkpoint(tmp_path, trained_checkpoint,
                                                        sentencepiece_model):
  model_dir, _, _ = trained_checkpoint
  output = tmp_path / "eval"
  results = run(evaluator.evaluate, "runs/eval.gin", sentencepiece_model,
                f'CHECKPOINT_PATH = "{model_dir}"', f'EVAL_OUTPUT_DIR = "{output}"',
                'CHECKPOINT_STEPS = "all"')
  assert sorted(results) == [3, 7]
  for step in (3, 7):
    accuracy = results[step][TASK]["accuracy"]
    assert 0.0 <= accuracy <= 100.0
  with open(output / f"{TASK}-metrics.jsonl") as f:
    lines = [json.loads(line) for line in f]
  assert [line["step"] for line in lines] == [3, 7]
  assert lines[0]["accuracy"] == pytest.approx(results[3][TASK]["accuracy"])
  assert any(name.startswith("events.out") for _, _, files in os.walk(output)
             for name in files)


def test_infer_writes_predictions_and_scores(tmp_path, trained_checkpoint,
                                             sentencepiece_model):
  model_dir, _, _ = trained_checkpoint
  output_file = tmp_path / "predictions.jsonl"
  count = run(evaluator.infer, "runs/infer.gin", sentencepiece_model,
              f'CHECKPOINT_PATH = "{model_dir}/checkpoint_7"',
              f'OUTPUT_FILE = "{output_file}"', "WITH_SCORES = True", "NUM_BEAMS = 2")
  records = [json.loads(line) for line in output_file.read_text().splitlines()]
  assert count == len(records) == 12
  assert all(record["inputs"].startswith("topic") or record["inputs"] for record in records)
  assert all(isinstance(record["prediction"], str) for record in records)
  assert all(record["score"] < 0 for record in records)  # log-likelihoods
  with pytest.raises(FileExistsError, match="exists"):
    run(evaluator.infer, "runs/infer.gin", sentencepiece_model,
        f'CHECKPOINT_PATH = "{model_dir}"', f'OUTPUT_FILE = "{output_file}"')


def test_bad_eval_input_is_clear(tmp_path, trained_checkpoint, sentencepiece_model):
  model_dir, _, _ = trained_checkpoint
  with pytest.raises(CheckpointError, match="does not exist"):
    run(evaluator.evaluate, "runs/eval.gin", sentencepiece_model,
        f'CHECKPOINT_PATH = "{tmp_path}/missing"', f'EVAL_OUTPUT_DIR = "{tmp_path}/e"')
  with pytest.raises(evaluator.EvaluationError, match="has no metric functions"):
    run(evaluator.evaluate, "runs/eval.gin", sentencepiece_model,
        f'CHECKPOINT_PATH = "{model_dir}"', f'EVAL_OUTPUT_DIR = "{tmp_path}/e"',
        'MIXTURE_OR_TASK_NAME = "embedded_span_corruption"')
  with pytest.raises(gin_cli.GinConfigError, match="Required macro EVAL_OUTPUT_DIR"):
    run(evaluator.evaluate, "runs/eval.gin", sentencepiece_model,
        f'CHECKPOINT_PATH = "{model_dir}"')
