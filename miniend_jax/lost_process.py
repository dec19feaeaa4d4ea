"""The one line a process of a multi-host run prints when it stops because another stopped.

When one process of a run stops (killed, out of memory, its host lost), JAX stops every
other one from C++: process 0's distributed service misses the lost process's heartbeats
for --heartbeat_timeout_seconds (or, when process 0 is the one lost, the others lose the
service at once) and each client aborts with "Terminating process because the JAX
distributed service detected fatal errors". No Python code can intercept that: jaxlib
0.10's `missed_heartbeat_callback` cannot take a Python function (calling it raises
std::bad_cast, which aborts too), and an abort runs no Python code. What does run is
Python's fault handler (absl enables it), which prints every thread's stack and the ~180
loaded extension modules.

`watch` sends the fault handler's output to a small watcher process instead. When this
process aborts, the watcher prints one line: `error: ... Relaunch every process with the
same command to resume from the newest checkpoint (checkpoint_N).` Any other fatal signal
(a segfault: a bug) is printed unchanged. A lost process that shows first in Python (a
collective failing with gloo's "Connection reset by peer") gets the same line through
`stop_if_lost`. Either way the process exits non-zero.
"""

from __future__ import annotations

import faulthandler
import os
import re
import signal
import subprocess
import sys

# Lines the trainer's process writes to the watcher before any fault-handler output.
_MODEL_DIR = "miniend-model-dir\t"
_LOST = "miniend-lost-peer\n"
_ABORTED = "Fatal Python error: Aborted"
# What gloo's TCP transport raises when the process at the other end is gone.
_GLOO_LOST = re.compile(r"Gloo \w+ failed: .*(Connection (closed|reset) by peer|Broken pipe)")

_watcher: subprocess.Popen | None = None


def watch(process_index: int, process_count: int) -> None:
  """Start the watcher and send Python's fault-handler output to it (multi-host runs)."""
  global _watcher
  _watcher = subprocess.Popen(
      [sys.executable, "-I", os.path.abspath(__file__), str(process_index),
       str(process_count)], stdin=subprocess.PIPE)
  faulthandler.enable(file=_watcher.stdin, all_threads=True)


def note_model_dir(model_dir: str) -> None:
  """Tell the watcher the run's MODEL_DIR, where it finds the checkpoint to resume from."""
  _send(f"{_MODEL_DIR}{model_dir}\n")


def stop_if_lost(error: BaseException) -> None:
  """If `error` says another process is gone, have the watcher print the line and exit 1
  at once (JAX's own shutdown at exit would wait for the heartbeat timeout, then abort)."""
  if _watcher is None or not _GLOO_LOST.search(str(error)):
    return
  _send(_LOST)
  os._exit(1)  # pylint: disable=protected-access


def _send(line: str) -> None:
  if _watcher is not None:
    _watcher.stdin.write(line.encode())
    _watcher.stdin.flush()


def newest_checkpoint(model_dir: str | None) -> str | None:
  """The name of MODEL_DIR's newest complete checkpoint_<step>, if any."""
  if not model_dir or not os.path.isdir(model_dir):
    return None
  steps = [int(match.group(1)) for match in
           (re.fullmatch(r"checkpoint_(\d+)", name) for name in os.listdir(model_dir))
           if match]
  return f"checkpoint_{max(steps)}" if steps else None


def message(process_index: int, process_count: int, model_dir: str | None,
            aborted: bool) -> str:
  """The line that replaces the crash dump."""
  who = f"process {process_index} of {process_count}"
  if aborted:
    cause = (f"JAX stopped {who} (the 'Terminating process' line above): another process "
             "of the run stopped.")
  else:
    cause = f"{who} lost its connection to another process of the run, which stopped."
  if model_dir is None:
    return f"error: {cause} Relaunch every process with the same command."
  checkpoint = newest_checkpoint(model_dir)
  if checkpoint is None:
    return (f"error: {cause} Relaunch every process with the same command; MODEL_DIR holds "
            "no checkpoint yet, so the run starts from the beginning.")
  return (f"error: {cause} Relaunch every process with the same command to resume from the "
          f"newest checkpoint ({checkpoint}).")


def _report(process_index: int, process_count: int) -> None:
  """The watcher: wait for the watched process to end, then say why it stopped (nothing if
  it ended normally)."""
  # Ctrl-C and a preemption's SIGTERM go to the whole process group: the watched process
  # decides what they mean, and the watcher outlives it to report.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  received = sys.stdin.buffer.read().decode(errors="replace")
  model_dir, lost, dump = None, False, []
  for line in received.splitlines(keepends=True):
    if line.startswith(_MODEL_DIR):
      model_dir = line[len(_MODEL_DIR):].rstrip("\n")
    elif line == _LOST:
      lost = True
    else:
      dump.append(line)
  dump = "".join(dump)
  if lost or dump.lstrip().startswith(_ABORTED):
    print(message(process_index, process_count, model_dir, aborted=not lost),
          file=sys.stderr, flush=True)
  elif dump:
    sys.stderr.write(dump)


if __name__ == "__main__":
  _report(int(sys.argv[1]), int(sys.argv[2]))
