"""The base class of every error a user can cause and fix (a setting, a path, the data).

Each subclass's message names the setting or file to change. The command-line entry points
print a `MiniendError` as one line, without a traceback; any other exception is a bug (or
the machine failing) and keeps its traceback. Subclasses also derive from the built-in type
they used to be (ValueError, FloatingPointError, ...), so existing `except` clauses hold.
"""

import errno


class MiniendError(Exception):
  """A user-fixable problem; the message says what to change."""


class OutputExistsError(MiniendError, FileExistsError):
  """An output path already holds something the command would overwrite."""


class InputMissingError(MiniendError, FileNotFoundError):
  """A file the command reads is missing or empty; the message says what makes it."""


# errno values of a write that the user fixes on the machine (space, quota, permissions).
_WRITE_ERRNOS = frozenset(getattr(errno, name) for name in (
    "ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM", "EIO") if hasattr(errno, name))


class WriteFailedError(MiniendError, OSError):
  """A file could not be written (disk full, quota, permissions); the message says which
  and what a rerun does."""


def write_failure(error: BaseException, consequence: str) -> WriteFailedError | None:
  """A WriteFailedError for `error` when it is (or was caused by) an OSError of a failed
  write, else None; `consequence` ends the sentence (what is safe, how to go on)."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in _WRITE_ERRNOS:
      where = f" {error.filename}" if error.filename else ""
      return WriteFailedError(f"Could not write{where}: {error.strerror or error} "
                              f"[{errno.errorcode.get(error.errno, error.errno)}]. "
                              f"{consequence}")
    error = error.__cause__ or error.__context__
  return None
