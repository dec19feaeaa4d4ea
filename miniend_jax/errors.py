"""The base class of every error a user can cause and fix (a setting, a path, the data).

Each subclass's message names the setting or file to change. The command-line entry points
print a `MiniendError` as one line, without a traceback; any other exception is a bug (or
the machine failing) and keeps its traceback. Subclasses also derive from the built-in type
they used to be (ValueError, FloatingPointError, ...), so existing `except` clauses hold.
"""


class MiniendError(Exception):
  """A user-fixable problem; the message says what to change."""


class OutputExistsError(MiniendError, FileExistsError):
  """An output path already holds something the command would overwrite."""


class InputMissingError(MiniendError, FileNotFoundError):
  """A file the command reads is missing or empty; the message says what makes it."""
