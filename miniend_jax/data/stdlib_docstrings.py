"""Harvests standard-library docstrings and pydoc topics; prints them as JSON.

Self-contained (standard library only) because it runs as a script in a fresh, isolated
interpreter (`python -I`, see embedded_corpus.py): other libraries patch standard-library
objects when imported (typing_extensions replaces typing internals, some replace
collections.abc methods), so harvesting inside a process that has imported them would make
the corpus depend on what else was imported. The fresh interpreter also keeps the ~200
imports below out of the caller's process.

Only the modules in `MODULES` are imported: a fixed list with nothing that opens a window, a
browser or changes the process (no tkinter, turtle, idlelib, antigravity, this, webbrowser,
rlcompleter). Names are visited in sorted order and documents deduplicated by text (the
first id in that order keeps it), so the output is identical on every run of a Python build.
Modules missing from a build (sqlite3, ssl, ...) are skipped.

Output: a JSON list of [id, text, package], ids "<module>.<qualified name>" for docstrings
of the objects a module defines itself (module, classes, their methods and properties,
functions) and "pydoc_topics.<topic>" for the pydoc topics (the language reference
sections behind help("if")).
"""

import importlib
import inspect
import json
import sys
import warnings
from collections.abc import Iterator

import pydoc_data.topics

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


def harvest() -> list[tuple[str, str, str]]:
  """(id, text, package) of every non-empty, distinct document, in a fixed order."""
  raw = []
  for module_name in MODULES:
    package = module_name.split(".")[0]
    raw += [(doc_id, text, package) for doc_id, text in _module_docstrings(module_name)]
  for topic in sorted(pydoc_data.topics.topics):
    raw.append((f"pydoc_topics.{topic}", pydoc_data.topics.topics[topic].strip(),
                "pydoc_topics"))
  seen_texts = set()
  documents = []
  for doc_id, text, package in raw:
    if text and text not in seen_texts:
      seen_texts.add(text)
      documents.append((doc_id, text, package))
  return documents


if __name__ == "__main__":
  json.dump(harvest(), sys.stdout)
