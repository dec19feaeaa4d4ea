"""A lost host: --heartbeat_timeout_seconds reaches jax.distributed, and a process that JAX
stops because another one stopped prints one line instead of Python's crash dump.
(tools/lost_host.py measures the whole thing on a two-process run: docs/faults.md.)"""

import inspect
import os
import subprocess
import sys

import jax
from absl.testing import flagsaver

from miniend_jax import gin_cli, lost_process
from tests.training_runs import REPO

# A watched "process 0 of 2" whose MODEL_DIR holds checkpoints 3 and 7 and the temporary
# directory of an unfinished checkpoint 9; it then does what argv[2] says.
WATCHED = """
import faulthandler, os, sys
from miniend_jax import lost_process
lost_process.watch(0, 2)
lost_process.note_model_dir(sys.argv[1])
if sys.argv[2] == "abort":
  os.abort()
if sys.argv[2] == "segfault":
  faulthandler._sigsegv()
if sys.argv[2] == "gloo":
  lost_process.stop_if_lost(RuntimeError(
      "UNKNOWN: Gloo AllGather failed: [external/gloo/gloo/transport/tcp/pair.cc:538] Read "
      "error [127.0.0.1]:9874: Connection reset by peer"))
  print("not stopped")
"""


def watched(tmp_path, ending):
  for name in ("checkpoint_3", "checkpoint_7", "checkpoint_9.orbax-checkpoint-tmp-1"):
    os.makedirs(tmp_path / name)
  return subprocess.run([sys.executable, "-c", WATCHED, str(tmp_path), ending], cwd=REPO,
                        env={**os.environ, "PYTHONPATH": REPO}, capture_output=True,
                        text=True, timeout=60)


def test_heartbeat_timeout_flag_reaches_jax_distributed(monkeypatch):
  jax_default = inspect.signature(jax.distributed.initialize).parameters[
      "heartbeat_timeout_seconds"].default
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
  monkeypatch.setattr(lost_process, "watch", lambda index, count: None)
  monkeypatch.setattr(gin_cli, "call_configured", lambda *a, **kw: None)
  collectives = jax.config.jax_cpu_collectives_implementation
  try:
    with flagsaver.as_parsed(gin_file=["a.gin"], gin_bindings=["X = 1"],
                             gin_search_paths=".", coordinator_address="127.0.0.1:1234",
                             process_count="2", process_index="1",
                             heartbeat_timeout_seconds="7"):
      gin_cli.run_configured(lambda: None)
  finally:
    jax.config.update("jax_cpu_collectives_implementation", collectives)
  assert len(calls) == 1 and calls[0]["heartbeat_timeout_seconds"] == 7
  assert calls[0]["num_processes"] == 2 and calls[0]["process_id"] == 1
  assert gin_cli.HEARTBEAT_TIMEOUT.default == jax_default == 100


def test_an_abort_prints_one_line_naming_the_newest_checkpoint(tmp_path):
  result = watched(tmp_path, "abort")
  assert result.returncode == -6   # still a failure: SIGABRT
  assert result.stderr.strip() == (
      "error: JAX stopped process 0 of 2 (the 'Terminating process' line above): another "
      "process of the run stopped. Relaunch every process with the same command to resume "
      "from the newest checkpoint (checkpoint_7).")


def test_a_lost_peer_seen_in_python_exits_1_with_the_line(tmp_path):
  result = watched(tmp_path, "gloo")
  assert result.returncode == 1 and "not stopped" not in result.stdout
  assert result.stderr.strip() == (
      "error: process 0 of 2 lost its connection to another process of the run, which "
      "stopped. Relaunch every process with the same command to resume from the newest "
      "checkpoint (checkpoint_7).")


def test_other_faults_keep_their_dump_and_a_normal_exit_prints_nothing(tmp_path):
  result = watched(tmp_path, "segfault")
  assert result.returncode == -11
  assert result.stderr.startswith("Fatal Python error: Segmentation fault")
  assert "Relaunch" not in result.stderr
  result = watched(tmp_path / "normal", "exit")
  assert result.returncode == 0 and result.stderr == ""


def test_the_line_without_a_checkpoint_or_a_model_dir():
  assert lost_process.message(1, 4, None, aborted=True).endswith(
      "Relaunch every process with the same command.")
  assert lost_process.message(1, 4, "/nonexistent", aborted=False).endswith(
      "MODEL_DIR holds no checkpoint yet, so the run starts from the beginning.")
