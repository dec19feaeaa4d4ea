"""The run record never lies: config.gin is written once, each later start writes its own
config file and logs what changed, the settings that define the checkpoints are fixed on
resume (unless overridden, which is recorded), and a start with nothing to do writes
nothing."""

import os
import shutil

import pytest

from miniend_jax.train.checkpoints import Checkpointer
from miniend_jax.train.run_record import (RunDefinitionError, changed_bindings, record_name,
                                          run_definition)
from tests.training_runs import train_with

ONE_DEVICE = "trainer.train.num_devices = 1"


def _files(root):
  """{path: (bytes, mtime)} of every file under root."""
  found = {}
  for directory, _, names in os.walk(root):
    for name in names:
      path = os.path.join(directory, name)
      with open(path, "rb") as f:
        found[path] = (f.read(), os.stat(path).st_mtime_ns)
  return found


@pytest.fixture
def finished(tmp_path, single_device_run):
  model_dir = str(tmp_path / "run")
  shutil.copytree(single_device_run, model_dir)
  return model_dir


def test_a_start_with_nothing_to_do_changes_no_file(finished, sentencepiece_model, caplog):
  before = _files(finished)
  assert train_with(finished, ONE_DEVICE, vocabulary=sentencepiece_model) == {}
  assert _files(finished) == before
  assert "already at step 4 (TRAIN_STEPS = 4): nothing to do, nothing written" in caplog.text


def test_resumes_write_their_own_record_and_log_what_changed(finished, sentencepiece_model,
                                                             caplog):
  with open(os.path.join(finished, "config.gin")) as f:
    first_record = f.read()
  train_with(finished, ONE_DEVICE, "TRAIN_STEPS = 6", "LEARNING_RATE = 1e-3",
             vocabulary=sentencepiece_model)
  with open(os.path.join(finished, "config.gin")) as f:
    assert f.read() == first_record   # never rewritten
  with open(os.path.join(finished, "config_from_step_4.gin")) as f:
    record = f.read()
  assert "# Started at step 4." in record and "TRAIN_STEPS = 6" in record
  # (MODEL_DIR changed too: the run was copied here.)
  assert "settings changed since the previous start (config.gin): " in caplog.text
  assert "LEARNING_RATE: 0.003 -> 0.001;" in caplog.text
  assert "; TRAIN_STEPS: 4 -> 6" in caplog.text


def test_a_changed_objective_is_refused_then_allowed_and_recorded(finished,
                                                                  sentencepiece_model):
  before = _files(finished)
  changed = ("RELATION_HEADS = 2", "TRAIN_STEPS = 6")
  with pytest.raises(RunDefinitionError, match=(
      "objective.decoder_self_relations.num_relation_heads: 4 -> 2; "
      "objective.encoder_self_relations.num_relation_heads: 4 -> 2")):
    train_with(finished, ONE_DEVICE, *changed, vocabulary=sentencepiece_model)
  assert _files(finished) == before   # refused before any file changed
  train_with(finished, ONE_DEVICE, *changed, "ALLOW_RESUME_CHANGES = True",
             vocabulary=sentencepiece_model)
  with open(os.path.join(finished, "config_from_step_4.gin")) as f:
    assert ("# ALLOW_RESUME_CHANGES = True: resumed with changed defining settings: "
            "objective.decoder_self_relations.num_relation_heads: 4 -> 2") in f.read()
  checkpoints = Checkpointer(finished, period=1, read_only=True)
  meta = checkpoints.read_meta(6)
  checkpoints.close()
  assert meta["definition"]["objective.encoder_self_relations.num_relation_heads"] == "2"
  assert meta["definition_changes"][0]["step"] == 4
  # The new definition is now the run's: going on with it needs no override.
  train_with(finished, ONE_DEVICE, "RELATION_HEADS = 2", "TRAIN_STEPS = 8",
             vocabulary=sentencepiece_model)
  assert os.path.exists(os.path.join(finished, "config_from_step_6.gin"))


def test_record_names_never_repeat(tmp_path):
  model_dir = str(tmp_path)
  assert record_name(model_dir, 0) == "config.gin"
  for name in ("config.gin", "config_from_step_4.gin"):
    open(os.path.join(model_dir, name), "w").close()
  assert record_name(model_dir, 8) == "config_from_step_8.gin"
  assert record_name(model_dir, 4) == "config_from_step_4_2.gin"


def test_changed_bindings_reads_multi_line_values():
  before = "# c\nA = 1\nf.x = {\n    'a': 1}\nimport m\n"
  after = "A = 1\nf.x = {\n    'a': 2}\nB = 3\n"
  assert changed_bindings(before, after) == ["B: (none) -> 3", "f.x: { 'a': 1} -> { 'a': 2}"]


def test_definition_leaves_out_how_a_loss_is_computed(task_vocabulary):
  """chunk_length changes memory, not the loss: not part of the definition."""
  from miniend_jax.distill.objectives import LogitKL, Objective  # pylint: disable=g-import-not-at-top
  definitions = [run_definition(objective=Objective(terms=(LogitKL(chunk_length=c),)),
                                frozen={}, vocabulary=task_vocabulary, task="t")
                 for c in (64, 128)]
  assert definitions[0] == definitions[1]
  assert "objective.logit_kl.temperature" in definitions[0]
