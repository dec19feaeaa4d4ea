"""One live run per MODEL_DIR: the lock's rules, and a real second launch on a live run."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from miniend_jax.train.run_lock import LOCK_FILE, RunLock, RunLockedError, process_start
from tests.training_runs import cli, read_metrics

ONE_DEVICE = "--gin.trainer.train.num_devices=1"


def _write_lock(model_dir, **holder):
  os.makedirs(model_dir, exist_ok=True)
  with open(os.path.join(model_dir, LOCK_FILE), "w") as f:
    json.dump({"host": socket.gethostname(), "started_at": 1.8e9, **holder}, f)


def _holder(model_dir):
  with open(os.path.join(model_dir, LOCK_FILE)) as f:
    return json.load(f)


def _dead_pid():
  process = subprocess.Popen([sys.executable, "-c", "pass"])
  process.wait()
  return process.pid


def test_lock_is_taken_and_released(tmp_path):
  lock = RunLock(str(tmp_path / "run"))
  lock.acquire(create_dir=False)   # no MODEL_DIR yet: nothing to lock, nothing created
  assert not os.path.exists(tmp_path / "run") and not lock.held
  lock.acquire(create_dir=True)
  holder = _holder(tmp_path / "run")
  assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
  assert holder["process_started"] == process_start(os.getpid())
  with pytest.raises(RunLockedError, match=f"in use by process {os.getpid()}"):
    RunLock(str(tmp_path / "run")).acquire(create_dir=True)
  lock.release()
  assert os.listdir(tmp_path / "run") == []


@pytest.mark.parametrize("reason", ["pid_gone", "pid_reused"])
def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog, reason):
  """What kill -9 leaves: the pid no longer runs, or runs another process (same pid,
  another start time)."""
  model_dir = str(tmp_path / "run")
  if reason == "pid_gone":
    _write_lock(model_dir, pid=_dead_pid(), process_started=None)
  else:
    _write_lock(model_dir, pid=os.getppid(), process_started="1")
  lock = RunLock(model_dir)
  lock.acquire(create_dir=False)
  assert lock.held and _holder(model_dir)["pid"] == os.getpid()
  assert "no longer running (killed?): taking the lock over" in caplog.text
  lock.release()


def test_a_lock_of_another_host_needs_the_override(tmp_path, caplog):
  model_dir = str(tmp_path / "run")
  _write_lock(model_dir, host="another-host", pid=1, process_started="5")
  with pytest.raises(RunLockedError, match="TAKE_OVER_LOCK = True"):
    RunLock(model_dir).acquire(create_dir=True)
  assert _holder(model_dir)["host"] == "another-host"   # untouched
  lock = RunLock(model_dir, take_over=True)
  lock.acquire(create_dir=True)
  assert _holder(model_dir)["pid"] == os.getpid()
  assert "TAKE_OVER_LOCK = True: taking over" in caplog.text
  lock.release()


def test_release_leaves_a_lock_that_is_no_longer_ours(tmp_path):
  model_dir = str(tmp_path / "run")
  lock = RunLock(model_dir)
  lock.acquire(create_dir=True)
  _write_lock(model_dir, host="another-host", pid=7)   # taken over from elsewhere
  lock.release()
  assert _holder(model_dir)["host"] == "another-host"


def test_second_launch_on_a_live_run_is_refused_and_the_first_is_unharmed(
    tmp_path, single_device_run, sentencepiece_model):
  """The same command launched again while the first run trains (held stopped meanwhile,
  so the tiny run cannot finish first): the second prints one line naming the holder and
  exits 1; the first run's losses equal a lone run's."""
  model_dir = str(tmp_path / "run")
  env = {"JAX_PLATFORMS": "cpu"}
  first = cli(model_dir, ONE_DEVICE, vocabulary=sentencepiece_model, env=env)
  deadline = time.time() + 300
  while not os.path.exists(os.path.join(model_dir, LOCK_FILE)) and time.time() < deadline:
    assert first.poll() is None, first.communicate()[0]
    time.sleep(0.05)
  first.send_signal(signal.SIGSTOP)   # alive, holding the lock, mid-run, for as long as
  try:                                # the second launch takes to start
    second = cli(model_dir, ONE_DEVICE, vocabulary=sentencepiece_model, env=env,
                 stderr=subprocess.PIPE)
    out, err = second.communicate(timeout=300)
  finally:
    first.send_signal(signal.SIGCONT)
  first_output = first.communicate(timeout=300)[0]
  assert second.returncode == 1 and out == "", (out, err)
  assert err.splitlines() == [
      f"error: MODEL_DIR {model_dir} is in use by process {first.pid} on host "
      f"{socket.gethostname()!r} (since {err.split('(since ')[1].split(')')[0]}), which is "
      "still running: wait for it to finish (or stop it), or choose another MODEL_DIR."], err
  assert first.returncode == 0, first_output
  metrics, lone = read_metrics(model_dir), read_metrics(single_device_run)
  assert [m["step"] for m in metrics] == [1, 2, 3, 4]
  assert [m["loss"] for m in metrics] == pytest.approx([m["loss"] for m in lone], abs=1e-6)
  assert not os.path.exists(os.path.join(model_dir, LOCK_FILE))
