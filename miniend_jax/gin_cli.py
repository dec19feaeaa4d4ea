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
from collections.abc import Callable, Sequence

import gin
from absl import flags

from miniend_jax import console, lost_process
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
HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    "heartbeat_timeout_seconds", 100,
    "Seconds without a heartbeat after which a process of a multi-host run counts as "
    "stopped and the others stop too (JAX's default: 100).", lower_bound=1)
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
  _check_macros_are_read(_user_macros(gin_files, gin_bindings, paths), gin.config_str())


# A macro definition: `NAME = value` at the start of a binding (no configurable, no scope).
_MACRO_DEFINITION = re.compile(r"^([A-Za-z_]\w*)\s*=", flags=re.M)


def _user_macros(gin_files: Sequence[str], gin_bindings: Sequence[str],
                 paths: Sequence[str]) -> dict[str, str]:
  """{macro: where the user set it} for the macros of the bindings and of the gin files
  that are not the package's own (the package's files set macros for every run they
  serve; some runs read only part of them)."""
  where = {}
  for gin_file in gin_files:
    found = next((c for c in [gin_file] + [os.path.join(p, gin_file) for p in paths]
                  if os.path.isfile(c)), None)
    if found is None or os.path.abspath(found).startswith(PACKAGE_GIN_DIR + os.sep):
      continue
    with open(found) as f:
      for name in _MACRO_DEFINITION.findall(f.read()):
        where[name] = f"set in {gin_file}"
  for binding in gin_bindings:
    for name in _MACRO_DEFINITION.findall(binding):
      where[name] = f"set by --gin.{name}"
  return where


def _check_macros_are_read(user_macros: dict[str, str], config_str: str) -> None:
  """A macro that no binding references (`%NAME`) is a typo: gin itself accepts it, and
  the run would silently use the default it meant to change."""
  referenced = set(re.findall(r"%([A-Za-z_]\w*)", config_str))
  for name, where in sorted(user_macros.items()):
    if name not in referenced:
      close = difflib.get_close_matches(name, sorted(referenced), n=1)
      hint = f"did you mean {close[0]}?" if close else \
          "check its spelling against the macros the run files bind."
      raise GinConfigError(f"{name} ({where}) is not read by any configuration; {hint}")


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
  `entry_point` with its gin bindings (plus `kwargs`). In a multi-host run, a process
  that stops because another one stopped says so in one line (`lost_process`)."""
  from miniend_jax.train import partitioning  # pylint: disable=g-import-not-at-top
  multi_host = bool(COORDINATOR.value) and (PROCESS_COUNT.value or 0) > 1 and \
      PROCESS_INDEX.value is not None
  if multi_host:
    lost_process.watch(PROCESS_INDEX.value, PROCESS_COUNT.value)
  partitioning.initialize_distributed(COORDINATOR.value, PROCESS_COUNT.value,
                                      PROCESS_INDEX.value,
                                      heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT.value)
  try:
    call_configured(entry_point, GIN_FILES.value, GIN_BINDINGS.value,
                    gin_search_paths=GIN_SEARCH_PATHS.value,
                    after_parse=_note_model_dir if multi_host else None, **kwargs)
  except Exception as error:
    lost_process.stop_if_lost(error)
    raise


def _note_model_dir() -> None:
  """Training runs bind MODEL_DIR; evaluation and inference runs do not."""
  try:
    model_dir = gin.query_parameter("%MODEL_DIR")
  except ValueError:
    return
  if isinstance(model_dir, str):
    lost_process.note_model_dir(model_dir)


def call_configured(entry_point: Callable, gin_files: Sequence[str],
                    gin_bindings: Sequence[str] = (), *,
                    gin_search_paths: Sequence[str] = (),
                    after_parse: Callable[[], None] | None = None, **kwargs):
  """In-process equivalent of the command line `--gin_file=... --gin_bindings=...`:
  parse into a clean gin config, call `after_parse` (if given) and then `entry_point` with
  its bindings (plus `kwargs`), and clear the config again. Returns what `entry_point`
  returns."""
  gin.clear_config()
  try:
    parse(gin_files, gin_bindings, gin_search_paths)
    if after_parse is not None:
      after_parse()
    return gin.get_configurable(entry_point)(**kwargs)
  finally:
    gin.clear_config()


def console_main(entry_point: Callable, **kwargs) -> None:
  """`python -m ...` for a gin-configured entry point, with --gin.NAME=VALUE sugar."""
  console.run_cli(lambda: run_configured(entry_point, **kwargs), argv_rewrite=rewrite_gin_flags)
