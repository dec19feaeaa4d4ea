"""Text-to-text examples (an input text and a target text) from local files: your own
data for finetuning and evaluation (gin_configs/data/downstream_files.gin).

Two formats, chosen by the file name's suffix:
- .jsonl / .json: one JSON object per line, the texts under `input_key` and `target_key`
  (strings; a number or boolean becomes its JSON text, so a label 1 is the target "1");
- .tsv: tab-separated values, the first non-blank line a header naming the columns. No
  quoting, so a field holds no tab or newline (write such text as JSON lines).

Texts are used as given (a .tsv row loses only its line ending); blank lines are skipped.
An example's id is "<file name>:<line number>", as for corpus documents (corpus_files.py,
whose pattern expansion, decoding and JSON parsing this module reuses), so a split by id
(document_split.py) is stable as long as the file is.

Pure Python, no TensorFlow. Everything a user can get wrong in the files (a pattern that
matches nothing, an unsupported suffix, undecodable bytes, a line that is no JSON object,
a missing field or column, a row with the wrong number of fields) is a `CorpusError` naming
the file, the line and the macro of downstream_files.gin to change; the Python arguments
of tasks.downstream_files.downstream_files_task carry the same names in lower case.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

from miniend_jax.data import corpus_files
from miniend_jax.data.errors import CorpusError

SUFFIXES = (".jsonl", ".json", ".tsv")
FEATURES = ("id", "inputs", "targets")
TRAIN_FILES_MACRO = "DOWNSTREAM_TRAIN_FILES"
VALIDATION_FILES_MACRO = "DOWNSTREAM_VALIDATION_FILES"
VALIDATION_PERCENT_MACRO = "DOWNSTREAM_VALIDATION_PERCENT"
INPUT_KEY_MACRO = "DOWNSTREAM_INPUT_KEY"
TARGET_KEY_MACRO = "DOWNSTREAM_TARGET_KEY"
ENCODING_MACRO = "DOWNSTREAM_ENCODING"
_BYTE_ORDER_MARK = "\ufeff"


def expand_files(patterns: str | Sequence[str], *, macro: str = TRAIN_FILES_MACRO
                 ) -> list[str]:
  """The sorted files matching `patterns` (the value of `macro`), each of them .jsonl,
  .json or .tsv."""
  files = corpus_files.expand_patterns(patterns, setting=macro)
  for path in files:
    if not path.endswith(SUFFIXES):
      raise CorpusError(f"{path} is neither a .jsonl, .json nor .tsv file; convert it to "
                        f"one of these formats or leave it out of {macro}.")
  return files


def _json_text(path: str, number: int, record: dict, key: str, macro: str,
               role: str) -> str:
  value = record.get(key)
  if isinstance(value, str):
    return value
  if isinstance(value, (int, float, bool)):
    return json.dumps(value)
  raise CorpusError(f"{path}:{number} has no field {key!r} holding text or a number (its "
                    f"fields: {sorted(record)}); set {macro} to the field that holds the "
                    f"{role}.")


def _json_examples(path: str, lines: Iterator[tuple[int, str]], input_key: str,
                   target_key: str, fix: str) -> Iterator[tuple[int, str, str]]:
  for number, line in lines:
    if not line.strip():
      continue
    record = corpus_files.json_object(path, number, line.lstrip(_BYTE_ORDER_MARK), fix=fix)
    yield (number, _json_text(path, number, record, input_key, INPUT_KEY_MACRO, "inputs"),
           _json_text(path, number, record, target_key, TARGET_KEY_MACRO, "targets"))


def _column(path: str, number: int, header: list[str], key: str, macro: str,
            role: str) -> int:
  if key not in header:
    raise CorpusError(f"{path}:{number} (the header) has no column {key!r} (its columns: "
                      f"{header}); set {macro} to the column that holds the {role}.")
  return header.index(key)


def _tsv_examples(path: str, lines: Iterator[tuple[int, str]], input_key: str,
                  target_key: str, fix: str) -> Iterator[tuple[int, str, str]]:
  header = None
  for number, line in lines:
    if not line.strip():
      continue
    fields = line.rstrip("\r\n").split("\t")
    if header is None:
      header_line = number
      header = [name.strip().lstrip(_BYTE_ORDER_MARK) for name in fields]
      inputs = _column(path, number, header, input_key, INPUT_KEY_MACRO, "inputs")
      targets = _column(path, number, header, target_key, TARGET_KEY_MACRO, "targets")
      continue
    if len(fields) != len(header):
      raise CorpusError(
          f"{path}:{number} has {len(fields)} tab-separated field(s) where the header (line "
          f"{header_line}) names {len(header)} columns (a field cannot hold a tab){fix}.")
    yield number, fields[inputs], fields[targets]


def read_file(path: str, *, input_key: str = "input", target_key: str = "target",
              encoding: str = "utf-8", files_macro: str = TRAIN_FILES_MACRO
              ) -> Iterator[dict[str, str]]:
  """{"id", "inputs", "targets"} for each example of one file, in file order.

  `files_macro` is the macro the file was given in; a malformed line's error tells the
  user to fix the line or leave the file out of it.
  """
  lines = corpus_files.decoded_lines(path, encoding=encoding,
                                     encoding_setting=ENCODING_MACRO)
  read = _tsv_examples if path.endswith(".tsv") else _json_examples
  fix = f": fix the line or leave the file out of {files_macro}"
  for number, inputs, targets in read(path, lines, input_key, target_key, fix):
    yield {"id": corpus_files.document_id(path, number), "inputs": inputs,
           "targets": targets}
