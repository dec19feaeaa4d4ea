"""Fault injection: killed runs, corrupt checkpoints and non-finite losses never lose work.

Every interrupted or damaged run is finished and compared with the session's uninterrupted
4-step tiny run (`single_device_run`: checkpoints 2 and 4, a metrics line per step): the
metrics and final weights must be the same. FAULT_IDS are the rows docs/faults.md's "Faults
and bad input" table shows for this module (tests/test_bad_input.py checks the table).
"""

import errno
import os
import re
import shutil
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from miniend_jax.convert.checkpoint_loading import load_model
from miniend_jax.console import error_message
from miniend_jax.distill import objectives
from miniend_jax.errors import WriteFailedError
from miniend_jax.train.checkpoints import CorruptCheckpointError
from tests.training_runs import cli, read_metrics, train_with

# Failed restores leave TensorStore reads unawaited; their warnings say nothing here.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

FAULT_IDS = ["killed_during_checkpoint_write", "killed_between_checkpoints",
             "checkpoint_truncated", "checkpoint_altered", "every_checkpoint_corrupt",
             "nonfinite_stop", "nonfinite_skip", "disk_full_during_checkpoint_write"]
ONE_DEVICE = "trainer.train.num_devices = 1"


def _assert_same_run(model_dir, reference):
  """metrics.jsonl holds steps 1-4 once each, equal to the reference's, and so do the
  final weights."""
  metrics, expected = read_metrics(model_dir), read_metrics(reference)
  assert [m["step"] for m in metrics] == [1, 2, 3, 4]
  for a, b in zip(metrics, expected):
    for key in ("loss", "logit_kl", "encoder_self_relations", "grad_norm/decoder"):
      assert a[key] == pytest.approx(b[key], abs=1e-6), (a["step"], key)
  for x, y in zip(jax.tree_util.tree_leaves(load_model(model_dir)[1]),
                  jax.tree_util.tree_leaves(load_model(reference)[1])):
    np.testing.assert_allclose(x, y, atol=1e-6)


def _run_until(model_dir, vocabulary, event, log):
  """Starts `python -m miniend_jax.train` and kill -9s it as soon as `event(names in
  MODEL_DIR)` holds; -> (the names it saw then, the return code)."""
  with open(log, "a") as output:
    process = cli(model_dir, f"--gin.{ONE_DEVICE.replace(' = ', '=')}", vocabulary=vocabulary,
                  stdout=output)
    seen = None
    deadline = time.time() + 300
    while process.poll() is None and time.time() < deadline:
      names = os.listdir(model_dir) if os.path.isdir(model_dir) else []
      if event(model_dir, names):
        process.send_signal(signal.SIGKILL)
        seen = names
        break
      time.sleep(0.002)   # a checkpoint write lasts tens of ms; no busier: 2 cores
    return seen, process.wait(timeout=60)


def _writing(step):
  return lambda _, names: any(n.startswith(f"checkpoint_{step}.") and "tmp" in n
                              for n in names)


def _logged(step):
  def event(model_dir, names):
    if "metrics.jsonl" not in names:
      return False
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
      return f'"step": {step},' in f.read()
  return event


def test_runs_killed_at_any_point_resume_to_the_uninterrupted_result(
    tmp_path, single_device_run, sentencepiece_model):
  """kill -9 while checkpoint_2 is being written, between checkpoints (after step 3), and
  while checkpoint_4 is being written; each restart goes on from the newest complete
  checkpoint, never from a partial one, and the fourth run ends where an uninterrupted
  run does."""
  model_dir, log = str(tmp_path / "run"), str(tmp_path / "log.txt")
  kills = [("during checkpoint_2", _writing(2)), ("after step 3", _logged(3)),
           ("during checkpoint_4", _writing(4))]
  for what, event in kills:
    seen, code = _run_until(model_dir, sentencepiece_model, event, log)
    assert seen is not None and code == -signal.SIGKILL, (what, code, open(log).read())
    if "during" in what:   # killed mid-write: the half-written checkpoint is not listed
      step = what.split("_")[-1]
      assert f"checkpoint_{step}" not in seen, seen
  seen, code = _run_until(model_dir, sentencepiece_model, lambda *_: False, log)
  output = open(log).read()
  assert code == 0, output
  assert "Fell back" not in output and not os.path.exists(os.path.join(model_dir, "corrupt"))
  assert not [n for n in os.listdir(model_dir) if "tmp" in n]   # leftovers cleaned up
  _assert_same_run(model_dir, single_device_run)


def _largest_file(directory):
  files = [os.path.join(d, n) for d, _, names in os.walk(directory) for n in names]
  return max(files, key=os.path.getsize)


def _truncate(checkpoint):
  path = _largest_file(os.path.join(checkpoint, "state"))
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _alter_one_element(checkpoint):
  """Rewrites the state with one weight changed but the old fingerprints: what a silent
  bit flip on disk or a bad copy leaves (readable files, wrong numbers)."""
  state_dir = os.path.join(checkpoint, "state")
  with ocp.PyTreeCheckpointer() as checkpointer:
    state = checkpointer.restore(state_dir)
  kernel = state["params"]["student"]["encoder"]["layers_0"]["attention"]["query"]["kernel"]
  state["params"]["student"]["encoder"]["layers_0"]["attention"]["query"]["kernel"] = (
      np.asarray(kernel).copy())
  state["params"]["student"]["encoder"]["layers_0"]["attention"]["query"]["kernel"][0, 0] += 1
  shutil.rmtree(state_dir)
  with ocp.PyTreeCheckpointer() as checkpointer:
    checkpointer.save(state_dir, state)


@pytest.mark.parametrize("damage", [_truncate, _alter_one_element],
                         ids=["truncated", "altered"])
def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(
    tmp_path, single_device_run, sentencepiece_model, damage, caplog):
  model_dir = str(tmp_path / "run")
  shutil.copytree(single_device_run, model_dir)
  damage(os.path.join(model_dir, "checkpoint_4"))
  train_with(model_dir, ONE_DEVICE, vocabulary=sentencepiece_model)
  assert "checkpoint_4" in caplog.text and "Fell back from checkpoint_4" in caplog.text
  assert os.listdir(os.path.join(model_dir, "corrupt")) == ["checkpoint_4"]   # kept
  _assert_same_run(model_dir, single_device_run)


def test_own_checkpoint_loaded_as_a_model_is_fingerprint_verified(tmp_path, single_device_run):
  """One of our checkpoints given as TEACHER_CHECKPOINT / INITIAL_CHECKPOINT_PATH (or to
  eval and export) is checked against its saved fingerprints: readable files with a wrong
  number are refused, naming the checkpoint, and an intact copy loads."""
  intact = str(tmp_path / "intact" / "checkpoint_4")
  altered = str(tmp_path / "altered" / "checkpoint_4")
  shutil.copytree(os.path.join(single_device_run, "checkpoint_4"), intact)
  shutil.copytree(intact, altered)
  _alter_one_element(altered)
  config, params = load_model(intact)
  assert params["encoder"]["layers_0"]["attention"]["query"]["kernel"].shape[0] == \
      config.emb_dim
  with pytest.raises(CorruptCheckpointError, match="altered.*differ from what was saved"):
    load_model(altered)


def test_every_checkpoint_corrupt_is_an_error_that_moves_nothing(
    tmp_path, single_device_run, sentencepiece_model):
  model_dir = str(tmp_path / "run")
  shutil.copytree(single_device_run, model_dir)
  for step in (2, 4):
    _truncate(os.path.join(model_dir, f"checkpoint_{step}"))
  before = sorted(os.listdir(model_dir))
  with pytest.raises(CorruptCheckpointError, match="Every checkpoint in MODEL_DIR.*unreadable"):
    train_with(model_dir, ONE_DEVICE, vocabulary=sentencepiece_model)
  assert sorted(os.listdir(model_dir)) == before


@pytest.fixture
def nan_at_step_3(monkeypatch):
  """The encoder relation term turns NaN (and so do the gradients) on the third step."""
  original = objectives.AttentionRelations.loss

  def loss(self, *args, step, **kwargs):
    value = original(self, *args, step=step, **kwargs)
    if self.stack == "encoder":
      value = value * jnp.where(step == 2, jnp.nan, 1.0)
    return value

  monkeypatch.setattr(objectives.AttentionRelations, "loss", loss)


def test_nonfinite_loss_stops_the_run_before_any_checkpoint_holds_it(
    tmp_path, sentencepiece_model, nan_at_step_3):
  model_dir = str(tmp_path / "run")
  with pytest.raises(FloatingPointError,
                     match=r"step 3 in .*encoder_self_relations.*newest is step 2.*"
                           r"ON_NONFINITE = \"skip\""):
    train_with(model_dir, ONE_DEVICE, vocabulary=sentencepiece_model)
  assert sorted(n for n in os.listdir(model_dir) if n.startswith("checkpoint_")) == \
      ["checkpoint_2"]
  assert [m["step"] for m in read_metrics(model_dir)] == [1, 2]
  params = load_model(model_dir)[1]
  assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(params))


def test_nonfinite_steps_are_skipped_when_asked(tmp_path, single_device_run,
                                                sentencepiece_model, nan_at_step_3):
  model_dir = str(tmp_path / "run")
  train_with(model_dir, ONE_DEVICE, "ON_NONFINITE = 'skip'", vocabulary=sentencepiece_model)
  metrics, reference = read_metrics(model_dir), read_metrics(single_device_run)
  assert [m["nonfinite"] for m in metrics] == [0, 0, 1, 0]
  assert metrics[1]["loss"] == pytest.approx(reference[1]["loss"], abs=1e-6)
  # Step 3's update was dropped: step 4 starts from step 2's weights, unlike the reference.
  assert np.isfinite(metrics[3]["loss"]) and metrics[3]["loss"] != reference[3]["loss"]
  params = load_model(model_dir)[1]
  assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(params))


def test_disk_full_during_a_checkpoint_write_is_one_sentence_and_resumes_exactly(
    tmp_path, single_device_run, sentencepiece_model, monkeypatch):
  """ENOSPC injected where Orbax writes checkpoint_4's meta (its arrays already written):
  one line naming the file, the newest intact checkpoint and what a rerun does; the
  partial checkpoint is never listed, and the rerun removes it and ends where an
  uninterrupted run does."""
  from orbax.checkpoint._src.handlers import json_checkpoint_handler  # pylint: disable=g-import-not-at-top
  handler = json_checkpoint_handler.JsonCheckpointHandler
  original = handler._save_fn  # pylint: disable=protected-access

  async def disk_full(self, x, directory):
    if "checkpoint_4" in str(directory):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory / "metadata"))
    return await original(self, x, directory)

  model_dir = str(tmp_path / "run")
  monkeypatch.setattr(handler, "_save_fn", disk_full)
  with pytest.raises(WriteFailedError) as raised:
    train_with(model_dir, ONE_DEVICE, vocabulary=sentencepiece_model)
  message = error_message(raised.value)   # what the command line prints
  assert "\n" not in message
  assert re.match(r"Could not write .*checkpoint_4.*metadata: No space left on device "
                  r"\[ENOSPC\]\. The newest intact checkpoint is checkpoint_2 in .*run; fix "
                  r"the cause .* rerun the same command to resume from it\.$", message), message
  names = os.listdir(model_dir)
  assert "checkpoint_2" in names and "checkpoint_4" not in names
  assert [n for n in names if "tmp" in n], names   # the partial write, not listed
  assert "run.lock" not in names                   # released on the way out
  monkeypatch.setattr(handler, "_save_fn", original)
  train_with(model_dir, ONE_DEVICE, vocabulary=sentencepiece_model)
  assert not [n for n in os.listdir(model_dir) if "tmp" in n]
  _assert_same_run(model_dir, single_device_run)
