"""What the command-line tools print: one line per error, a quiet console, a log file.

The tools keep the console for what a user acts on: the progress line, warnings and, when
they stop on something the user can fix (a `MiniendError`, a failed write), one line
`error: ...` on stderr (`run_cli`); anything else is a bug and keeps its traceback. INFO lines (orbax's per-checkpoint chatter, absl, seqio,
TensorFlow) go to `MODEL_DIR/<tool>.log` while a run holds its MODEL_DIR (`log_file`);
`--verbosity=0` (absl's flag) brings them back to the console. The lines made before the
file may be opened (a run checks everything before it writes to MODEL_DIR) are kept in
memory and written at its top.

TensorFlow (seqio's data layer) writes its start-up lines (oneDNN, CUDA probes) from C++
straight to the process's stderr; TF_CPP_MIN_LOG_LEVEL no longer stops them. The entry
points import it through `import_tensorflow_quietly`, which keeps those lines for the log
file (and for the console under --verbosity), and keeps TensorFlow off the GPUs: it only
feeds data on the host, and JAX owns the accelerators (as in t5x).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import re
from collections.abc import Callable, Iterator

from absl import app, flags
from absl import logging as absl_logging

from miniend_jax.errors import MiniendError, write_failure

# What TensorFlow printed while `import_tensorflow_quietly` ran.
_STARTUP_LINES: list[str] = []


class _EarlyRecords(logging.Handler):
  """Keeps the INFO-and-above records made before a log file opens (a run checks its
  inputs before it may write MODEL_DIR), for `log_file` to write first; the newest
  `capacity` of them."""

  def __init__(self, capacity: int = 10_000):
    super().__init__(logging.INFO)
    self.capacity = capacity
    self.records: list[logging.LogRecord] = []

  def emit(self, record: logging.LogRecord) -> None:
    self.records.append(record)
    del self.records[:-self.capacity]


_EARLY = _EarlyRecords()


@contextlib.contextmanager
def _stderr_to(target) -> Iterator[None]:
  """File descriptor 2 (what C++ code writes to) goes to `target` while the block runs."""
  sys.stderr.flush()
  saved = os.dup(2)
  os.dup2(target.fileno(), 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


def import_tensorflow_quietly() -> None:
  """Import TensorFlow and hide the GPUs from it, with its C++ start-up lines captured
  (printed if the import fails)."""
  with tempfile.TemporaryFile("w+") as captured:
    try:
      with _stderr_to(captured):
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        tf.config.set_visible_devices([], "GPU")
    except BaseException:
      captured.seek(0)
      print(captured.read(), file=sys.stderr, end="")
      raise
    captured.seek(0)
    _STARTUP_LINES.extend(captured.read().splitlines())


def quiet_console() -> None:
  """Console gets WARNING and above, unless the user passed --verbosity (absl's flag).
  Records of every level are still made, for `log_file`."""
  handler = absl_logging.get_absl_handler()
  verbosity = flags.FLAGS["verbosity"]
  if not verbosity.present:
    handler.setLevel(logging.WARNING)
    absl_logging.set_verbosity(absl_logging.INFO)
  elif _STARTUP_LINES:
    print("\n".join(_STARTUP_LINES), file=sys.stderr)
  logging.getLogger().addHandler(_EARLY)


@contextlib.contextmanager
def log_file(path: str) -> Iterator[None]:
  """Append every INFO-and-above line to `path` while the block runs; an exception that
  leaves the block is written there too, with its traceback (the console shows only its
  one-line message)."""
  handler = logging.FileHandler(path)
  handler.setLevel(logging.INFO)
  handler.setFormatter(logging.Formatter(
      "%(levelname).1s%(asctime)s %(process)d %(name)s] %(message)s"))
  if _STARTUP_LINES:
    handler.stream.write("".join(f"{line}\n" for line in _STARTUP_LINES))
  root = logging.getLogger()
  early = _EARLY in root.handlers
  if early:   # the lines made before the file could be opened come first
    root.removeHandler(_EARLY)
    for record in _EARLY.records:
      handler.handle(record)
    _EARLY.records.clear()
  root.addHandler(handler)
  try:
    yield
  except BaseException:
    handler.emit(logging.LogRecord("miniend_jax", logging.ERROR, __file__, 0,
                                   "Stopped by:", None, sys.exc_info()))
    raise
  finally:
    root.removeHandler(handler)
    handler.close()
    if early:
      root.addHandler(_EARLY)


def run_cli(body: Callable[[], object], *,
            argv_rewrite: Callable[[list[str]], list[str]] = list) -> None:
  """Run `body` as an absl program (flags parsed after `argv_rewrite`, a quiet console):
  a MiniendError (the user's to fix) or a failed write (disk full,
  quota, permissions) is printed as one line on stderr and exits 1; anything else is a bug
  or the machine failing, and keeps its traceback."""

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    quiet_console()
    try:
      body()
    except MiniendError as error:
      print(f"error: {error_message(error)}", file=sys.stderr)
      sys.exit(1)
    except Exception as error:  # pylint: disable=broad-except
      failure = write_failure(error, "Fix the cause (e.g. free disk space) and rerun.")
      if failure is None:
        raise
      print(f"error: {failure}", file=sys.stderr)
      sys.exit(1)

  app.run(main, argv=argv_rewrite(sys.argv))


def error_message(error: BaseException) -> str:
  """The error's message without what gin appends on its way out of a configurable
  ("In call to configurable 'train' (<function train at 0x...>)")."""
  return re.sub(r"\s*In call to configurable '[^']*' \(<[^>]*>\)", "", str(error)).strip()
