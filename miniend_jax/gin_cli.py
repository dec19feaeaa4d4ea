"""t5x-style gin command lines shared by the train, eval and infer entry points.

    --gin_file=a.gin --gin_file=b.gin       later files override earlier ones
    --gin.MODEL_DIR=\\"/tmp/run\\"            sugar for --gin_bindings='MODEL_DIR = "/tmp/run"'
    --gin_bindings='TRAIN_STEPS = 10'
    --gin_search_paths=dir1,dir2             the package's gin_configs/ is always searched
"""

from __future__ import annotations

import difflib
import importlib.util  # noqa: F401  (gin's dynamic registration needs it loaded)
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence

import gin
from absl import app, flags

from miniend_jax.errors import MiniendError

GIN_FILES = flags.DEFINE_multi_string("gin_file", [],
                                      "Gin files; later ones override earlier.")
GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. 'X = 1'.")
GIN_SEARCH_PATHS = flags.DEFINE_list("gin_search_paths", [],
                                     "Directories searched for gin files and includes.")
COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                  "host:port of process 0, for multi-host runs.")
PROCESS_COUNT = flags.DEFINE_integer("process_count", None, "Processes in a multi-host run.")
PROCESS_INDEX = flags.DEFINE_integer("process_index", None, "This process's index.")
GIN_PREFIX = "--gin."
# The gin files ship inside the package (package data), so an installed wheel finds them.
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
PACKAGE_GIN_DIR = os.path.join(PACKAGE_DIR, "gin_configs")


class _QuietSearchMisses(logging.Filter):
  """gin logs an ERROR for every search path an include is not found under, before it
  finds it under the next one; those misses are not errors."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not record.pathname.endswith(os.path.join("gin", "resource_reader.py"))


class GinConfigError(MiniendError, ValueError):
  """A gin file or binding cannot be used; the message names it."""


def rewrite_gin_flags(argv: Sequence[str]) -> list[str]:
  """Turn `--gin.NAME=VALUE` into `--gin_bindings=NAME = VALUE` (before absl parses)."""
  result = []
  for arg in argv:
    if arg.startswith(GIN_PREFIX):
      name, separator, value = arg[len(GIN_PREFIX):].partition("=")
      if not separator or not name:
        raise GinConfigError(f"{arg!r}: write --gin.NAME=VALUE (e.g. --gin.TRAIN_STEPS=100).")
      result.append(f"--gin_bindings={name} = {value}")
    else:
      result.append(arg)
  return result


def parse(gin_files: Sequence[str], gin_bindings: Sequence[str],
          search_paths: Sequence[str] = ()) -> None:
  """Parse files then bindings, finalize, and turn gin's errors into one clear message."""
  logging.getLogger().addFilter(_QuietSearchMisses())
  # PACKAGE_DIR lets `gin_configs/experiments/x.gin` resolve from any directory too.
  paths = [p for p in search_paths if p] + [os.getcwd(), PACKAGE_GIN_DIR, PACKAGE_DIR]
  for path in paths:
    gin.add_config_file_search_path(path)
  for gin_file in gin_files:
    if not any(os.path.isfile(os.path.join(p, gin_file)) for p in paths) and \
        not os.path.isfile(gin_file):
      raise GinConfigError(
          f"gin file {gin_file!r} was not found in {paths}{_close_file_hint(gin_file)}.")
  try:
    gin.parse_config_files_and_bindings(gin_files, gin_bindings, finalize_config=True)
  except (ValueError, KeyError, SyntaxError, ImportError, NameError, TypeError,
          AttributeError) as error:
    message = _first_line(error)
    required = re.match(r"(\w+)/macro\.value set to `%gin\.REQUIRED`", message)
    if required:
      name = required.group(1)
      raise GinConfigError(
          f"Required macro {name} is not set: pass --gin.{name}=... or bind it in a gin "
          "file (the run file's header lists what each run needs).") from None
    raise GinConfigError(f"gin configuration error: {message}") from None


def _close_file_hint(gin_file: str) -> str:
  known = []
  for root, _, files in os.walk(PACKAGE_GIN_DIR):
    known += [os.path.relpath(os.path.join(root, f), PACKAGE_GIN_DIR) for f in files
              if f.endswith(".gin")]
  close = difflib.get_close_matches(gin_file, known, n=1)
  return f"; did you mean {close[0]!r}?" if close else ""


def _first_line(error: Exception) -> str:
  text = str(error).strip()
  return re.sub(r"\s+", " ", text.splitlines()[0]) if text else type(error).__name__


def run_configured(entry_point: Callable, **kwargs) -> None:
  """Absl entry point body: join a multi-host run if asked, parse the gin flags, and call
  `entry_point` with its gin bindings (plus `kwargs`)."""
  from miniend_jax.train import partitioning  # pylint: disable=g-import-not-at-top
  partitioning.initialize_distributed(COORDINATOR.value, PROCESS_COUNT.value,
                                      PROCESS_INDEX.value)
  call_configured(entry_point, GIN_FILES.value, GIN_BINDINGS.value,
                  gin_search_paths=GIN_SEARCH_PATHS.value, **kwargs)


def call_configured(entry_point: Callable, gin_files: Sequence[str],
                    gin_bindings: Sequence[str] = (), *,
                    gin_search_paths: Sequence[str] = (), **kwargs):
  """In-process equivalent of the command line `--gin_file=... --gin_bindings=...`:
  parse into a clean gin config, call `entry_point` with its bindings (plus `kwargs`),
  and clear the config again. Returns what `entry_point` returns."""
  gin.clear_config()
  try:
    parse(gin_files, gin_bindings, gin_search_paths)
    return gin.get_configurable(entry_point)(**kwargs)
  finally:
    gin.clear_config()


def console_main(entry_point: Callable, **kwargs) -> None:
  """`python -m ...` for a gin-configured entry point, with --gin.NAME=VALUE sugar."""
  run_cli(lambda: run_configured(entry_point, **kwargs))


def run_cli(body: Callable[[], object]) -> None:
  """Run `body` as an absl program (flags parsed, --gin.NAME=VALUE sugar): a MiniendError
  (the user's to fix) is printed as one line and exits 1; anything else is a bug or the
  machine failing, and keeps its traceback."""

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
      body()
    except MiniendError as error:
      logging.getLogger(__name__).error("%s: %s", type(error).__name__, error)
      print(f"error: {error}", file=sys.stderr)
      sys.exit(1)

  app.run(main, argv=rewrite_gin_flags(sys.argv))
