"""What is wrong with a file that is there but cannot be read, said in one clause.

Every reader of a file the user gives (a checkpoint's weights, a SentencePiece model, a
corpus file) turns the error its library raises on a bad file into one sentence, "<the
file> cannot be read: <describe(...)>.", instead of the library's traceback. `describe`
says, in this order: the file is missing; empty; a Git LFS pointer (the repository was
cloned without `git lfs pull`); a text file where a binary format was expected; what the
reader found from the format's own structure (`damage`, e.g. `truncated(...)` when a
header records more bytes than the file holds); else the first line of the library's
innermost error.
"""

from __future__ import annotations

import os

_HEAD_BYTES = 512
_LFS_POINTER = b"version https://git-lfs.github.com/spec/"
_REASON_CHARACTERS = 240


def describe(path: str, cause: BaseException | None = None, *, file_format: str,
             damage: str | None = None, fix: str = "copy it again", binary: bool = True,
             contents: bytes | None = None) -> str:
  """What is wrong with `path`, which a reader failed on (raising `cause`), and what to
  do: the clause that follows "... cannot be read: ".

  `file_format`: what the file should be, e.g. "safetensors file". `damage`: the reader's
  own finding, e.g. `truncated(...)`. `binary`: whether a text file is foreign to the
  format. `contents`: the file's bytes when the reader already holds them (a remote file
  that os.path cannot see).
  """
  if contents is None and not os.path.exists(path):
    return f"it does not exist; {fix}"
  if contents is None and os.path.isdir(path):
    return f"{damage or _not_readable(file_format, cause)}; {fix}"
  size = len(contents) if contents is not None else os.path.getsize(path)
  if not size:
    return f"the file is empty; {fix}"
  head = contents[:_HEAD_BYTES] if contents is not None else _head(path)
  if head.startswith(_LFS_POINTER):
    return ("it is a Git LFS pointer, not the file itself; fetch the file with `git lfs "
            "pull` in the repository it comes from")
  text = _text_start(head) if binary else None
  if text is not None:
    return f"it is a text file, not a {file_format} (it starts with {text!r}); {fix}"
  return f"{damage or _not_readable(file_format, cause)}; {fix}"


def truncated(needed: int, size: int, source: str) -> str:
  """"the file is truncated (<source> <needed>, the file has <size>)", e.g. `source` "the
  safetensors header says": `needed` bytes are recorded, `size` are there."""
  if _size(needed) == _size(size):
    return f"the file is truncated ({source} {needed:,} bytes, the file has {size:,})"
  return f"the file is truncated ({source} {_size(needed)}, the file has {_size(size)})"


def innermost_message(error: BaseException) -> str:
  """The message of the error at the bottom of `error`'s chain (what the library found;
  the errors above it often only say which call failed), or its type's name."""
  while (error.__cause__ or error.__context__) is not None:
    error = error.__cause__ or error.__context__
  return str(error).strip() or type(error).__name__


def _not_readable(file_format: str, cause: BaseException | None) -> str:
  if cause is None:
    return f"it is not a readable {file_format}"
  reason = innermost_message(cause).splitlines()[0].strip()
  if len(reason) > _REASON_CHARACTERS:
    reason = reason[:_REASON_CHARACTERS - 3] + "..."
  return f"it is not a readable {file_format} ({reason})"


def _head(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read(_HEAD_BYTES)


def _text_start(head: bytes) -> str | None:
  """The first line of `head` (up to 40 characters) if `head` is printable UTF-8 text, else
  None. A multi-byte character cut at the end of `head` is allowed."""
  for cut in range(4):
    try:
      text = head[:len(head) - cut].decode("utf-8")
      break
    except UnicodeDecodeError:
      continue
  else:
    return None
  if not text or not all(c.isprintable() or c in "\t\n\r" for c in text):
    return None
  line = text.lstrip().splitlines()[0] if text.strip() else text
  return line[:40] + ("..." if len(line) > 40 else "")


def _size(n: int) -> str:
  for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
    if n >= scale:
      return f"{n / scale:.1f} {unit}"
  return f"{n} bytes"
