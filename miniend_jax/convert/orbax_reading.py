"""Restoring an Orbax PyTree checkpoint (ours, or a t5x one in the newer layout), with a
damaged file reported as one sentence that names it.

Orbax raises a generic error whose cause is TensorStore's; for a data file cut short
(OCDBT keeps many arrays in one file) that cause says which byte range it asked for and
how large the file it found was, so the file is the one of that size.
"""

from __future__ import annotations

import os
import re
from typing import Any

from miniend_jax.convert.validation import UnreadableCheckpointError, unreadable_checkpoint
from miniend_jax.unreadable_files import innermost_message, truncated

# TensorStore's report of a read past the end of a file.
_READ_PAST_END = re.compile(r"byte range \[\d+, (\d+)\) is not valid for value of size (\d+)")


def restore(state_dir: str, **kwargs) -> Any:
  """`ocp.PyTreeCheckpointer().restore(state_dir, **kwargs)`; a checkpoint it cannot read
  is an UnreadableCheckpointError."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  try:
    return ocp.PyTreeCheckpointer().restore(state_dir, **kwargs)
  except Exception as error:  # orbax raises many types for unreadable directories.
    raise unreadable(state_dir, error) from None


def unreadable(state_dir: str, error: BaseException) -> UnreadableCheckpointError:
  """The error for `state_dir`, naming its truncated data file when TensorStore's error
  identifies it, else the directory."""
  match = _READ_PAST_END.search(innermost_message(error))
  if match:
    needed, size = int(match[1]), int(match[2])
    same_size = [os.path.join(directory, name)
                 for directory, _, names in os.walk(state_dir) for name in names
                 if os.path.getsize(os.path.join(directory, name)) == size]
    if len(same_size) == 1:
      damage = truncated(needed, size, "the checkpoint's index needs at least")
      return unreadable_checkpoint(same_size[0], error, file_format="Orbax data file",
                                   damage=damage)
  return unreadable_checkpoint(state_dir, error, file_format="Orbax checkpoint")
