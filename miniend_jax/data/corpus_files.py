"""Documents from local corpus files: plain text (one document per line) or JSON lines.

Pure Python, no TensorFlow: both the SentencePiece trainer and the seqio file source read
corpora through here, so both stop on the same clear `CorpusError` (file, line and the
setting to change) for a missing file, a compressed file cut short or damaged, bytes that
are not valid text in the configured encoding, a JSON line without the text field, or a
corpus with no document.

A file is read as JSON lines when its name ends in .jsonl or .json (one object per line,
the text under `text_key`), otherwise as plain text with one document per non-blank line;
either may be gzip-compressed, named with .gz added (docs.jsonl.gz). Document ids are
"<file name>:<line number>", stable as long as the file is.

The pieces (`expand_patterns`, `decoded_lines`, `json_object`, `document_id`) are shared
with downstream_files.py, which reads input/target examples by the same conventions.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import zlib
from collections.abc import Iterator, Sequence

from miniend_jax.data.errors import CorpusError
from miniend_jax.unreadable_files import describe

JSON_SUFFIXES = (".jsonl", ".json")


def expand_patterns(patterns: str | Sequence[str], *,
                    setting: str = "the path or pattern") -> list[str]:
  """The sorted files matching glob `patterns`; a pattern matching nothing is an error that
  names `setting`, the option or gin macro that holds the patterns."""
  if isinstance(patterns, str):
    patterns = [patterns]
  files = []
  for pattern in patterns:
    matches = sorted(glob.glob(os.path.expanduser(pattern)))
    if not matches:
      raise CorpusError(f"No corpus file matches {pattern!r}: check {setting}.")
    files.extend(matches)
  return files


def document_id(path: str, number: int) -> str:
  """The id of what line `number` of `path` holds: "<file name>:<line number>"."""
  return f"{os.path.basename(path)}:{number}"


def decoded_lines(path: str, *, encoding: str = "utf-8",
                  encoding_setting: str = "encoding") -> Iterator[tuple[int, str]]:
  """(line number, text with its line ending) for every line of `path`, from 1; bytes
  that are not valid `encoding` are an error naming the line and `encoding_setting`. A
  .gz file is read decompressed."""
  for number, raw in enumerate(_raw_lines(path), start=1):
    try:
      yield number, raw.decode(encoding)
    except UnicodeDecodeError as error:
      raise CorpusError(
          f"{path}:{number} is not valid {encoding} text (byte {raw[error.start]:#04x} at "
          f"column {error.start + 1}); re-encode the file or set {encoding_setting} to the "
          "file's encoding.") from None


def _raw_lines(path: str) -> Iterator[bytes]:
  """The lines of `path` as bytes, decompressed when its name ends in .gz; a .gz file that
  is not a whole gzip stream is a CorpusError."""
  if not path.endswith(".gz"):
    with open(path, "rb") as stream:
      yield from stream
    return
  try:
    with gzip.open(path, "rb") as stream:
      yield from stream
  except (OSError, EOFError, zlib.error) as error:   # BadGzipFile is an OSError
    damage = ("the file is truncated (its gzip stream ends before its end marker)"
              if isinstance(error, EOFError) else None)
    reason = describe(path, error, file_format="gzip file", damage=damage)
    raise CorpusError(f"{path} cannot be read: {reason}.") from None


def json_object(path: str, number: int, line: str, *, fix: str = "") -> dict:
  """The JSON object on line `number` of a .jsonl/.json file; a line holding anything
  else is an error, its message ending in `fix` (e.g. ": fix the line or ...")."""
  try:
    record = json.loads(line)
  except json.JSONDecodeError as error:
    raise CorpusError(f"{path}:{number} is not valid JSON ({error.msg}); each line of a "
                      f".jsonl/.json file must be one JSON object{fix}.") from None
  if not isinstance(record, dict):
    raise CorpusError(f"{path}:{number} is valid JSON but not an object; each line of a "
                      f".jsonl/.json file must be one JSON object{fix}.")
  return record


def _line_text(path: str, number: int, line: str, text_key: str) -> str:
  if not path.removesuffix(".gz").endswith(JSON_SUFFIXES):
    return line
  record = json_object(path, number, line)
  if not isinstance(record.get(text_key), str):
    raise CorpusError(f"{path}:{number} has no string field {text_key!r}; set text_key to "
                      "the field that holds the text.")
  return record[text_key]


def read_file(path: str, *, text_key: str = "text",
              encoding: str = "utf-8") -> Iterator[tuple[str, str]]:
  """(id, text) for each non-blank document of one corpus file."""
  for number, line in decoded_lines(path, encoding=encoding):
    if not line.strip():
      continue
    text = _line_text(path, number, line, text_key).strip()
    if text:
      yield document_id(path, number), text


def read_documents(files: Sequence[str], *, text_key: str = "text",
                   encoding: str = "utf-8") -> Iterator[tuple[str, str]]:
  """(id, text) for each document of `files` in order; an empty corpus is an error."""
  count = 0
  for path in files:
    for document in read_file(path, text_key=text_key, encoding=encoding):
      count += 1
      yield document
  if not count:
    raise CorpusError(f"The corpus {list(files)} holds no document (no non-blank line).")
