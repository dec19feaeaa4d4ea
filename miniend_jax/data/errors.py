"""The data layer's user-facing errors.

Each one is raised before TensorFlow runs anything, with a message that names the setting
or the file to change, so that a misconfigured run stops with one readable line instead of
a TensorFlow stack trace.
"""

from __future__ import annotations

from miniend_jax.errors import MiniendError


class DataError(MiniendError, ValueError):
  """A data setting, file or corpus that no dataset can be built from."""


class CorpusError(DataError):
  """A corpus that is empty, unreadable or missing the text field."""


class VocabularyError(DataError):
  """A SentencePiece model that cannot be trained or loaded as a T5 vocabulary."""


class SequenceLengthError(DataError):
  """A feature length too short for what the task must fit into it."""


class UnknownTaskError(DataError):
  """A task or mixture name that no registry holds."""
