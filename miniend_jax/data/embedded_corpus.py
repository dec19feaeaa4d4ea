"""The embedded corpus: English that ships with Python, so every pipeline runs offline.

Two kinds of document, about 1.7 MB of text in all (`python -m
miniend_jax.data.embedded_corpus` prints the exact sizes for the running Python):

- the docstrings of a fixed list of standard-library modules (module, class, function and
  method docstrings of objects the module itself defines), one document each, id
  "<module>.<qualified name>";
- the pydoc topics (`pydoc_data.topics`: the language reference sections behind
  `help("if")`), one document each, id "pydoc_topics.<topic>".

stdlib_docstrings.py harvests them from a fixed list of modules (none with side effects),
in a fresh isolated interpreter, in sorted order, deduplicated by text: the corpus is
identical on every run of the same Python build, whatever the calling process imported;
`corpus_digest()` names it.

Two downstream datasets are derived from the docstrings, so fine-tuning can be tried
offline too:
- summarization: the docstring body -> its one-line summary (PEP 257's summary line);
- topic classification: the docstring -> the standard-library package that defines it,
  among `TOPIC_PACKAGES`.
All three share one split (`document_split.split_of` with `VALIDATION_PERCENT`), so no
validation document of any task is a training document of another.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence

from miniend_jax.data import document_split, stdlib_docstrings
from miniend_jax.data.errors import CorpusError, DataError

VALIDATION_PERCENT = 10.0

# The classification labels: standard-library packages with many docstrings each (at least
# 90 on CPython 3.11), so every class has validation examples.
TOPIC_PACKAGES: tuple[str, ...] = (
    "asyncio", "email", "http", "importlib", "logging", "multiprocessing", "unittest",
    "urllib", "xml")

# Summary lines outside these bounds are not summaries (a bare "Return x." repeats
# everywhere; a 300-character first line is a paragraph).
_SUMMARY_CHARS = (10, 200)
_MIN_BODY_CHARS = 100
_MIN_TOPIC_TEXT_CHARS = 40


@dataclasses.dataclass(frozen=True)
class Document:
  """One document of the embedded corpus.

  Attributes:
    id: stable id, "<module>.<qualified name>" or "pydoc_topics.<topic>".
    text: the cleaned docstring or topic text.
    package: top-level package of the defining module ("pydoc_topics" for topics).
  """

  id: str
  text: str
  package: str

  @property
  def split(self) -> str:
    return document_split.split_of(self.id, VALIDATION_PERCENT)


@functools.lru_cache(maxsize=1)
def documents() -> tuple[Document, ...]:
  """Every document of the embedded corpus, deduplicated by text, in a fixed order.

  Harvested once per process by stdlib_docstrings.py in a fresh `python -I` interpreter
  (about a second), so the result does not depend on what this process has imported.
  """
  result = subprocess.run([sys.executable, "-I", stdlib_docstrings.__file__],
                          capture_output=True, text=True, check=False)
  if result.returncode:
    raise CorpusError(f"Harvesting the embedded corpus failed:\n{result.stderr[-2000:]}")
  return tuple(Document(*row) for row in json.loads(result.stdout))


def split_documents(split: str) -> tuple[Document, ...]:
  """The documents of one split ("train" or "validation")."""
  _check_split(split)
  return tuple(d for d in documents() if d.split == split)


def _check_split(split: str) -> None:
  if split not in (document_split.TRAIN, document_split.VALIDATION):
    raise DataError(
        f"The embedded corpus has the splits 'train' and 'validation', not {split!r}.")


@functools.lru_cache(maxsize=1)
def corpus_digest() -> str:
  """SHA-256 of every document id and text: the corpus' identity, e.g. for cache keys."""
  sha = hashlib.sha256()
  for document in documents():
    sha.update(document.id.encode("utf-8") + b"\0" + document.text.encode("utf-8") + b"\0")
  return sha.hexdigest()


def sentencepiece_lines() -> Iterator[str]:
  """The corpus as SentencePiece training input: every non-blank line of every document.

  SentencePiece skips input "sentences" longer than 4192 bytes, so whole documents would
  silently drop the long pydoc topics; lines keep all the text.
  """
  for document in documents():
    for line in document.text.splitlines():
      if line.strip():
        yield line.strip()


def summary_and_body(text: str) -> tuple[str, str] | None:
  """(summary line, body) of a PEP 257 docstring, or None when it has no such shape."""
  summary, separator, body = text.partition("\n\n")
  summary, body = summary.strip(), body.strip()
  if (not separator or "\n" in summary or len(body) < _MIN_BODY_CHARS
      or not _SUMMARY_CHARS[0] <= len(summary) <= _SUMMARY_CHARS[1]):
    return None
  return summary, body


def summarization_examples(split: str) -> list[dict[str, str]]:
  """{"id", "document", "summary"} for the docstrings of `split` with a summary line.

  Docstrings that differ only in their summary share a body; the body stays with the first
  of them in corpus order, so no input appears in two splits.
  """
  _check_split(split)
  examples, seen_bodies = [], set()
  for document in documents():
    pair = summary_and_body(document.text) if document.package != "pydoc_topics" else None
    if pair is None or pair[1] in seen_bodies:
      continue
    seen_bodies.add(pair[1])
    if document.split == split:
      examples.append({"id": document.id, "document": pair[1], "summary": pair[0]})
  return examples


def topic_examples(split: str) -> list[dict[str, str]]:
  """{"id", "text", "label"} for the docstrings of `split` from one of TOPIC_PACKAGES."""
  return [{"id": d.id, "text": d.text, "label": d.package}
          for d in split_documents(split)
          if d.package in TOPIC_PACKAGES and len(d.text) >= _MIN_TOPIC_TEXT_CHARS]


def statistics(tokenize: Callable[[str], Sequence[int]] | None = None) -> dict[str, dict]:
  """Sizes per split: documents, characters, downstream examples (topic examples also per
  label) and, given a tokenizer `tokenize(text) -> ids`, tokens."""
  sizes = {}
  for split in (document_split.TRAIN, document_split.VALIDATION):
    split_docs = split_documents(split)
    topics = topic_examples(split)
    sizes[split] = {
        "documents": len(split_docs),
        "characters": sum(len(d.text) for d in split_docs),
        "summarization_pairs": len(summarization_examples(split)),
        "topic_examples": len(topics),
        "topic_examples_per_label": dict(sorted(
            collections.Counter(e["label"] for e in topics).items())),
    }
    if tokenize is not None:
      sizes[split]["tokens"] = sum(len(tokenize(d.text)) for d in split_docs)
  return sizes


def main(argv: Sequence[str] | None = None) -> None:
  """Prints the corpus digest and sizes (`python -m miniend_jax.data.embedded_corpus
  [SPIECE_MODEL]`); with a SentencePiece model path, token counts too."""
  argv = sys.argv[1:] if argv is None else argv
  tokenize = None
  if argv:
    import sentencepiece  # Only needed for token counts.
    processor = sentencepiece.SentencePieceProcessor(model_file=argv[0])
    tokenize = processor.encode
  print(f"python {sys.version.split()[0]}, corpus digest {corpus_digest()[:16]}")
  for split, sizes in statistics(tokenize).items():
    print(split, sizes)


if __name__ == "__main__":
  main()
