"""The embedded corpus: English that ships with Python, so every pipeline runs offline.

Two kinds of document, about 1.7 MB of text in all (`python -m
miniend_jax.data.embedded_corpus` prints the exact sizes for the running Python):

- the docstrings of a fixed list of standard-library modules (module, class, function and
  method docstrings of objects the module itself defines), one document each, id
  "<module>.<qualified name>";
- the pydoc topics (`pydoc_data.topics`: the language reference sections behind
  `help("if")`), one document each, id "pydoc_topics.<topic>".

Harvesting imports only the modules in `MODULES`: a fixed list with nothing that opens a
window, a browser or changes the process (no tkinter, turtle, idlelib, antigravity, this,
webbrowser, rlcompleter). Iteration is over sorted names and duplicates are removed by
text (the first id in sorted order keeps it), so the corpus is identical on every run of
the same Python build; `corpus_digest()` names it. Modules missing from a Python build are
skipped, which changes the digest, not the behaviour.

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
import importlib
import inspect
import sys
import warnings
from collections.abc import Iterator, Sequence

import pydoc_data.topics

from miniend_jax.data import document_split

VALIDATION_PERCENT = 10.0

MODULES: tuple[str, ...] = tuple(sorted("""
  abc argparse ast asyncio asyncio.base_events asyncio.events asyncio.exceptions
  asyncio.futures asyncio.locks asyncio.protocols asyncio.queues asyncio.runners
  asyncio.selector_events asyncio.streams asyncio.subprocess asyncio.taskgroups
  asyncio.tasks asyncio.timeouts asyncio.transports asyncio.unix_events
  base64 bdb binascii bisect builtins bz2 calendar cmath cmd code codecs codeop
  collections collections.abc _collections_abc colorsys compileall concurrent.futures
  concurrent.futures._base concurrent.futures.process concurrent.futures.thread
  configparser contextlib contextvars copy copyreg csv ctypes dataclasses datetime decimal
  difflib dis doctest
  email email.charset email.contentmanager email.encoders email.errors email.feedparser
  email.generator email.header email.headerregistry email.iterators email.message
  email.mime.application email.mime.base email.mime.multipart email.mime.nonmultipart
  email.mime.text email.parser email.policy email._policybase email.utils
  enum errno filecmp fileinput fnmatch fractions ftplib functools gc getopt getpass gettext
  glob graphlib gzip hashlib heapq hmac html html.parser http http.client http.cookiejar
  http.cookies http.server
  imaplib importlib importlib.abc importlib.machinery importlib.metadata importlib.resources
  importlib.util inspect io ipaddress itertools json json.decoder json.encoder keyword
  linecache locale logging logging.config logging.handlers lzma mailbox marshal math
  mimetypes modulefinder
  multiprocessing multiprocessing.connection multiprocessing.context
  multiprocessing.managers multiprocessing.pool multiprocessing.process
  multiprocessing.queues multiprocessing.shared_memory multiprocessing.synchronize
  netrc numbers operator optparse os os.path pathlib pdb pickle pickletools pkgutil platform
  plistlib poplib pprint profile pstats pyclbr pydoc py_compile queue quopri random re
  reprlib runpy sched secrets selectors shelve shlex shutil signal smtplib socket
  socketserver sqlite3 ssl stat statistics string stringprep struct subprocess symtable
  sysconfig tabnanny tarfile tempfile textwrap threading time timeit token tokenize tomllib
  trace traceback tracemalloc types typing unicodedata
  unittest unittest.case unittest.loader unittest.main unittest.mock unittest.result
  unittest.runner unittest.suite unittest.util
  urllib urllib.error urllib.parse urllib.request urllib.response urllib.robotparser uuid
  warnings wave weakref
  xml.dom xml.dom.minidom xml.dom.pulldom xml.etree.ElementTree xml.sax xml.sax.handler
  xml.sax.saxutils xml.sax.xmlreader xmlrpc.client xmlrpc.server zipapp zipfile zipimport
  zlib zoneinfo
""".split()))

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


def _docstring(obj) -> str:
  doc = getattr(obj, "__doc__", None)
  return inspect.cleandoc(doc).strip() if isinstance(doc, str) else ""


def _documented_members(cls) -> Iterator[tuple[str, object]]:
  """(name, function) for the methods and properties a class defines itself."""
  for name in sorted(vars(cls)):
    member = vars(cls)[name]
    if isinstance(member, (staticmethod, classmethod)):
      member = member.__func__
    elif isinstance(member, property):
      member = member.fget
    if (inspect.isfunction(member) or inspect.isbuiltin(member)
        or inspect.ismethoddescriptor(member)):
      yield name, member


def _module_docstrings(module_name: str) -> Iterator[tuple[str, str]]:
  """(id, text) for a module's docstring and those of the objects it defines."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Deprecated modules and attributes warn on access.
    try:
      module = importlib.import_module(module_name)
    except ImportError:  # Optional in some Python builds (sqlite3, ssl, ...).
      return
    yield module_name, _docstring(module)
    for name in sorted(vars(module)):
      obj = vars(module)[name]
      if getattr(obj, "__module__", None) != module_name:
        continue  # Re-exported from elsewhere, or not a definition at all.
      if inspect.isclass(obj):
        yield f"{module_name}.{name}", _docstring(obj)
        for member_name, member in _documented_members(obj):
          yield f"{module_name}.{name}.{member_name}", _docstring(member)
      elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
        yield f"{module_name}.{name}", _docstring(obj)


def _raw_documents() -> Iterator[Document]:
  for module_name in MODULES:
    package = module_name.split(".")[0]
    for doc_id, text in _module_docstrings(module_name):
      yield Document(doc_id, text, package)
  for topic in sorted(pydoc_data.topics.topics):
    text = pydoc_data.topics.topics[topic].strip()
    yield Document(f"pydoc_topics.{topic}", text, "pydoc_topics")


@functools.lru_cache(maxsize=1)
def documents() -> tuple[Document, ...]:
  """Every document of the embedded corpus, deduplicated by text, in a fixed order."""
  seen_texts = set()
  unique = []
  for document in _raw_documents():
    if document.text and document.text not in seen_texts:
      seen_texts.add(document.text)
      unique.append(document)
  return tuple(unique)


def split_documents(split: str) -> tuple[Document, ...]:
  """The documents of one split ("train" or "validation")."""
  _check_split(split)
  return tuple(d for d in documents() if d.split == split)


def _check_split(split: str) -> None:
  if split not in (document_split.TRAIN, document_split.VALIDATION):
    raise ValueError(
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
  """{"id", "document", "summary"} for the docstrings of `split` with a summary line."""
  examples = []
  for document in split_documents(split):
    if document.package == "pydoc_topics":
      continue
    pair = summary_and_body(document.text)
    if pair is not None:
      examples.append({"id": document.id, "document": pair[1], "summary": pair[0]})
  return examples


def topic_examples(split: str) -> list[dict[str, str]]:
  """{"id", "text", "label"} for the docstrings of `split` from one of TOPIC_PACKAGES."""
  return [{"id": d.id, "text": d.text, "label": d.package}
          for d in split_documents(split)
          if d.package in TOPIC_PACKAGES and len(d.text) >= _MIN_TOPIC_TEXT_CHARS]


def statistics(tokenize=None) -> dict[str, dict[str, int]]:
  """Sizes per split: documents, characters, downstream examples and (given a tokenizer
  `tokenize(text) -> list of ids`) tokens."""
  sizes = {}
  for split in (document_split.TRAIN, document_split.VALIDATION):
    split_docs = split_documents(split)
    sizes[split] = {
        "documents": len(split_docs),
        "characters": sum(len(d.text) for d in split_docs),
        "summarization_pairs": len(summarization_examples(split)),
        "topic_examples": len(topic_examples(split)),
    }
    if tokenize is not None:
      sizes[split]["tokens"] = sum(len(tokenize(d.text)) for d in split_docs)
    labels = collections.Counter(e["label"] for e in topic_examples(split))
    sizes[split]["topic_examples_per_label"] = dict(sorted(labels.items()))
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
