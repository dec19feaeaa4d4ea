"""Interpolated distillation with an assistant, end to end: a tiny teacher -> assistant ->
student chain (experiments/tiny_assistant.gin, then experiments/tiny_interpolated.gin),
the three models in one jitted step, resumed exactly. The refused cases (no assistant, an
assistant of another vocabulary, an assistant the objective does not read) are rows of
tests/test_bad_input.py."""

import os
import shutil

import pytest

from tests.training_runs import read_metrics, train_with

ONE_DEVICE = "trainer.train.num_devices = 1"
ASSISTANT = "experiments/tiny_assistant.gin"
INTERPOLATED = "experiments/tiny_interpolated.gin"


@pytest.fixture(scope="module")
def chain(tmp_path_factory, sentencepiece_model):
  """{"assistant": stage 1's MODEL_DIR, "student": stage 2's} (4 steps each, checkpoints 2
  and 4)."""
  root = tmp_path_factory.mktemp("chain")
  assistant, student = str(root / "assistant"), str(root / "student")
  train_with(assistant, ONE_DEVICE, gin_files=(ASSISTANT,), vocabulary=sentencepiece_model)
  train_with(student, ONE_DEVICE, f"ASSISTANT_CHECKPOINT = '{assistant}'",
             gin_files=(INTERPOLATED,), vocabulary=sentencepiece_model)
  return {"assistant": assistant, "student": student}


def test_chain_trains_the_student_next_to_teacher_and_assistant(chain):
  metrics = read_metrics(chain["student"])
  assert [m["step"] for m in metrics] == [1, 2, 3, 4]
  assert {"logit_kl", "decoder_self_relations", "cross_relations"} <= set(metrics[0])
  assert all(0 < m["loss"] < 1e3 for m in metrics)
  with open(os.path.join(chain["student"], "config.gin")) as f:
    record = f.read()
  assert f"# Assistant: loaded from {chain['assistant']}" in record
  assert "BLEND_PARTNER = 'assistant'" in record or 'BLEND_PARTNER = "assistant"' in record
  with open(os.path.join(chain["student"], "model-info.txt")) as f:
    info = f.read()
  assert "# assistant (frozen) total parameters: 277,360" in info   # stage 1's 48-wide model


def test_the_assistant_sets_the_first_logit_target(chain, tmp_path, sentencepiece_model):
  """At step 0 the blended target is the assistant's distribution alone: another assistant
  (stage 1's checkpoint 2 instead of 4) changes logit_kl and leaves the relation terms."""
  earlier = str(tmp_path / "assistant_at_2")
  shutil.copytree(chain["assistant"], earlier)
  shutil.rmtree(os.path.join(earlier, "checkpoint_4"))
  other = str(tmp_path / "student")
  # The chain's settings otherwise, so the compiled step is reused; step 1's losses are
  # computed before the first update.
  train_with(other, ONE_DEVICE, f"ASSISTANT_CHECKPOINT = '{earlier}'",
             gin_files=(INTERPOLATED,), vocabulary=sentencepiece_model)
  first, reference = read_metrics(other)[0], read_metrics(chain["student"])[0]
  assert first["decoder_self_relations"] == pytest.approx(reference["decoder_self_relations"],
                                                          abs=1e-6)
  assert abs(first["logit_kl"] - reference["logit_kl"]) > 1e-4


def test_chain_resumes_exactly(chain, tmp_path, sentencepiece_model):
  """A stage-2 run stopped after checkpoint 2 (checkpoint 4 and the later metrics gone)
  resumes to the uninterrupted run's losses and weights."""
  model_dir = str(tmp_path / "student")
  shutil.copytree(chain["student"], model_dir)
  shutil.rmtree(os.path.join(model_dir, "checkpoint_4"))
  with open(os.path.join(model_dir, "metrics.jsonl")) as f:
    lines = f.readlines()[:2]
  with open(os.path.join(model_dir, "metrics.jsonl"), "w") as f:
    f.writelines(lines)
  train_with(model_dir, ONE_DEVICE, f"ASSISTANT_CHECKPOINT = '{chain['assistant']}'",
             gin_files=(INTERPOLATED,), vocabulary=sentencepiece_model)
  resumed, reference = read_metrics(model_dir), read_metrics(chain["student"])
  assert [m["step"] for m in resumed] == [1, 2, 3, 4]
  for a, b in zip(resumed, reference):
    for key in ("loss", "logit_kl", "cross_relations", "grad_norm"):
      assert a[key] == pytest.approx(b[key], abs=1e-6), (a["step"], key)
