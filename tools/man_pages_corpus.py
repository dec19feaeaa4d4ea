r"""A real English corpus for the quickstart, offline: the machine's manual pages.

    python tools/man_pages_corpus.py --output_dir=/tmp/man_corpus \
      [--man_dir=/usr/share/man] [--validation_percent=20] [--seed=0] \
      [--max_class_share=0.4] [--min_validation_classification=1000] [--exclude=REGEX]

Reads MAN_DIR/man{1..8}/*.gz (troff source, gzip-compressed), strips the troff in Python
(no groff or man needed; man(7) and, loosely, mdoc(7) macros, tbl tables, conditionals,
macro definitions, inline escapes) and writes the directory layout the quickstart's
`--corpus_dir` reads (miniend_jax/quickstart/corpora.py):

    OUTPUT/pretraining/train.jsonl, validation.jsonl       {"text": ...}, one page each
    OUTPUT/classification/train.jsonl, validation.jsonl    {"input": ..., "target": ...}
    OUTPUT/summarization/train.jsonl, validation.jsonl     {"input": ..., "target": ...}
    OUTPUT/README.md                                       what was built, with its counts

Pages read: every regular file, then every symlink whose resolved target was not read
already; skipped are `.so` redirects, broken symlinks, duplicates (the same file by inode,
the same bytes, or the same first 200 characters of extracted text as a page read before,
in name order), the Google Cloud SDK's beta and alpha copies of a command whose GA (or
beta) page was kept (man1/gcloud_alpha_x.1.gz beside man1/gcloud_x.1.gz: nearly the same
text), pages that fail to decompress or to decode as UTF-8, and pages with under 200
characters of text.

One split for all three tasks: a page goes to validation when the SHA-1 of its name
("man1/ls.1.gz"; a gcloud page's name without its release track) falls in the first
--validation_percent of the hash range, so no validation page's text is in a train file,
and the split does not depend on --seed.

- pretraining: the DESCRIPTION section (the whole body but NAME and SYNOPSIS when there is
  no DESCRIPTION or it has under 200 characters), cut at a word near 4,000 characters;
- classification: "section: <the same text cut near 600 characters>" -> the manual
  section as a word (commands, system_calls, library_functions, special_files,
  file_formats, games, miscellany, administration); sections with under 100 pages are
  dropped, and in each split every class is capped at the largest count that keeps the
  majority class at most --max_class_share of the split; in validation the cap is raised
  (and the share with it, with a warning) where that would leave fewer than
  --min_validation_classification examples; the pages kept are chosen by a --seed-ed hash;
- summarization: "summarize: <the same 600 characters>" -> the NAME line's description
  ("ls \- list directory contents" -> "list directory contents"); pages without one are
  left out.

Examples are written in a --seed-ed hash order (the classes mixed). A non-empty
--output_dir is refused (exit status 2); the files are written to a temporary directory
beside it, renamed into place when complete. About 10 s for 22,000 pages, sequentially.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gzip
import hashlib
import json
import os
import re
import shlex
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Sequence

SECTION_CLASSES = {"1": "commands", "2": "system_calls", "3": "library_functions",
                   "4": "special_files", "5": "file_formats", "6": "games",
                   "7": "miscellany", "8": "administration"}
MIN_PAGE_CHARS = 200          # shorter pages (stripped body) are skipped
PRETRAINING_CHARS = 4000      # pretraining documents are cut near this length
EXCERPT_CHARS = 600           # classification / summarization inputs are cut near this
MIN_CLASS_PAGES = 100         # classes with fewer pages overall are dropped
MIN_VALIDATION_CLASSIFICATION = 1000
MAX_SUMMARY_CHARS = 300       # longer NAME descriptions are not one-line summaries
SPLITS = ("train", "validation")
TASKS = ("pretraining", "classification", "summarization")


# ----------------------------------------------------------------------------- troff

# Special characters (\(xx, \[name], \C'name') with a plain-text meaning; others vanish.
_SPECIAL_CHARS = {
    "em": "--", "en": "-", "hy": "-", "mi": "-", "-": "-", "aq": "'", "dq": '"',
    "lq": '"', "rq": '"', "oq": "'", "cq": "'", "Fo": "<<", "Fc": ">>", "fo": "<",
    "fc": ">", "bu": "*", "co": "(C)", "rg": "(R)", "tm": "(TM)", "pl": "+", "mu": "x",
    "di": "/", "eq": "=", "ti": "~", "ha": "^", "rs": "\\", "sl": "/", "ga": "`",
    "aa": "'", "ul": "_", "ru": "_", "ba": "|", "br": "|", "or": "|", "sq": "*",
    "<=": "<=", ">=": ">=", "!=": "!=", "==": "==", "->": "->", "<-": "<-", "<>": "<->",
    "+-": "+-", "**": "*", "de": " degrees", "ct": "c", "Po": "GBP", "Eu": "EUR",
    "eu": "EUR", "Ye": "JPY", "ss": "ss", "ae": "ae", "AE": "AE", "oe": "oe", "OE": "OE",
    "lB": "[", "rB": "]", "lC": "{", "rC": "}", "la": "<", "ra": ">", "at": "@",
    "sh": "#", "Do": "$", "dd": "++", "dg": "+", "ps": "P", "sc": "S", "12": "1/2",
    "14": "1/4", "34": "3/4", "if": "infinity", "fm": "'", "sd": "''",
    "'a": "a", "`a": "a", "'e": "e", "`e": "e", ":u": "u", ":o": "o", ":a": "a",
    "'E": "E", ",c": "c", "~n": "n", "ho": "", "a-": "", "ad": "", "ac": "",
}
# Predefined strings (\*(xx, \*x, \*[name]); .ds definitions of the page add to these.
_PREDEFINED_STRINGS = {"lq": '"', "rq": '"', "R": "(R)", "Tm": "(TM)", "aq": "'",
                       "Aq": "'", "C`": '"', "C'": '"', 'L"': '"', 'R"': '"', "--": "--"}

_ESCAPE = re.compile(r"""
    \\(?:
      (?P<comment>["\#].*)                                   # \" \# comment to the end
    | f(?:\[[^\]]*\]|\(..|.)                                 # font: \fB \f(CW \f[B]
    | s(?:[-+]?\(\d\d|[-+]?\[[^\]]*\]|[-+]?'[^']*'|[-+]?\d)  # size: \s+1 \s(12 \s[+2]
    | \((?P<special2>..)                                     # \(em
    | \[(?P<special>[^\]]*)\]                                # \[em] \[u00E9]
    | C'(?P<special_c>[^']*)'                                # \C'em'
    | \*(?:\((?P<string2>..)|\[(?P<string>[^\]\ ]*)[^\]]*\]|(?P<string1>.))  # \*(lq
    | [nmMFgY](?:[-+]?\(..|[-+]?\[[^\]]*\]|[-+]?.)           # registers, colours, fonts
    | k(?:\(..|\[[^\]]*\]|.)                                 # mark a position
    | [hvwlLDoXZbxSHNRAB](?P<delim>.).*?(?P=delim)           # delimited arguments
    | \$(?:\(..|\[[^\]]*\]|.)                                # macro arguments
    | (?P<single>.)                                          # any other: \- \e \& ...
    )""", re.VERBOSE)

_SINGLE = {"-": "-", "e": "\\", "E": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ",
           "_": "_", "'": "'", "`": "`", ".": ".", "t": " ", "c": "\x01", "%": "",
           "&": "", "|": "", "^": "", ":": "", "/": "", ",": "", "{": "", "}": "",
           ")": "", "!": "", "=": "="}      # other letters (\d \u \p \z ...) vanish
_NO_SPACE = "\x01"            # \c: the next line continues this one without a space
_GLUE_LEFT = "\x02"           # this text continues the previous one without a space


def _special(name: str) -> str:
  if name in _SPECIAL_CHARS:
    return _SPECIAL_CHARS[name]
  match = re.fullmatch(r"u([0-9A-Fa-f]{4,6})(?:_.*)?", name)
  if match:
    code = int(match.group(1), 16)
    return chr(code) if 32 <= code < 0xD800 or 0xE000 <= code < 0x110000 else ""
  if name.startswith("char") and name[4:].isdigit():
    code = int(name[4:])
    return chr(code) if 32 <= code < 127 else ""
  return ""


def render_escapes(text: str, strings: dict[str, str] | None = None) -> str:
  """`text` with troff's inline escapes replaced by plain text (\\- -> -, \\(em -> --,
  \\e -> backslash, \\(aq -> ', strings from `strings`) or removed (fonts, sizes, ...)."""
  strings = _PREDEFINED_STRINGS if strings is None else strings

  def replace(match: re.Match) -> str:
    groups = match.groupdict()
    if groups["comment"] is not None:
      return ""
    for key in ("special2", "special", "special_c"):
      if groups[key] is not None:
        return _special(groups[key])
    for key in ("string2", "string", "string1"):
      if groups[key] is not None:
        return strings.get(groups[key], "")
    if groups["single"] is not None:
      return _SINGLE.get(groups["single"], groups["single"]
                         if not groups["single"].isalnum() else "")
    return ""

  if "\\" not in text:
    return text
  return _ESCAPE.sub(replace, text)


def _strip_comment(line: str) -> str:
  r"""`line` without a \" or \# comment (an escaped backslash is no comment start)."""
  index = 0
  while True:
    index = line.find("\\", index)
    if index < 0 or index == len(line) - 1:
      return line
    if line[index + 1] in "\"#":
      return line[:index]
    index += 2


def split_arguments(text: str) -> list[str]:
  """A request's arguments: separated by blanks, "double quoted" ones may hold blanks
  ("" is a quote inside them); escapes are kept for render_escapes."""
  arguments, index, length = [], 0, len(text)
  while index < length:
    while index < length and text[index] in " \t":
      index += 1
    if index >= length:
      break
    quoted = text[index] == '"'
    index += quoted
    piece = []
    while index < length:
      char = text[index]
      if quoted and char == '"':
        if text[index + 1:index + 2] == '"':
          piece.append('"')
          index += 2
          continue
        index += 1
        break
      if not quoted and char in " \t":
        break
      if char == "\\" and index + 1 < length:
        piece.append(text[index:index + 2])
        index += 2
        continue
      piece.append(char)
      index += 1
    arguments.append("".join(piece))
  return arguments


_REQUEST = re.compile(r"^[.'][ \t]*([^ \t\\]*)[ \t]*(.*)$")
# Macros whose arguments are text: joined with blanks, or alternating fonts (no blanks).
_JOINED = {"B", "I", "SM", "SB", "R", "CW", "SY", "Nm", "Tn", "Ar", "Pa", "Em", "Cm",
           "Dv", "Ev", "Ic", "Li", "Sx", "Va", "Vt", "Ft", "An", "Lb", "St", "At", "Bx",
           "Ux", "D1", "Dl", "Er", "Ms", "Sy", "Ad", "Mt", "Lk", "Rv", "Ex", "It"}
_ALTERNATING = {"BR", "BI", "IB", "IR", "RB", "RI"}
_HEADINGS = {"SH": "SH", "Sh": "SH", "SS": "SS", "Ss": "SS"}
# mdoc macros whose arguments name other callable mdoc macros to drop.
_MDOC_CALLABLE = {"Ad", "Ao", "Ac", "An", "Ap", "Aq", "Ar", "At", "Bc", "Bo", "Bq", "Brc",
                  "Bro", "Brq", "Bsx", "Bx", "Cm", "Dc", "Do", "Dq", "Dv", "Dx", "Ec",
                  "Em", "Eo", "Er", "Es", "Ev", "Fa", "Fc", "Fl", "Fn", "Fo", "Fr", "Ft",
                  "Fx", "Ic", "In", "Li", "Lk", "Ms", "Mt", "Nm", "No", "Ns", "Nx", "Oc",
                  "Oo", "Op", "Ot", "Ox", "Pa", "Pc", "Pf", "Po", "Pq", "Qc", "Ql", "Qo",
                  "Qq", "Sc", "So", "Sq", "St", "Sx", "Sy", "Ta", "Tn", "Ux", "Va", "Vt",
                  "Xc", "Xo", "Xr"}
_MDOC_ENCLOSE = {"Aq": ("<", ">"), "Bq": ("[", "]"), "Brq": ("{", "}"), "Dq": ('"', '"'),
                 "Op": ("[", "]"), "Pq": ("(", ")"), "Qq": ('"', '"'), "Ql": ("'", "'"),
                 "Sq": ("'", "'")}
_PUNCTUATION = set(".,:;)]?!")
# mdoc macros rendered by _render_mdoc (with those of _JOINED spelt Xx).
_MDOC_LINE = {"Nd", "Fl", "Xr", "Fn", "Fa", "Op", "Dq", "Qq", "Sq", "Ql", "Pq", "Bq", "Aq",
              "Brq", "In", "Nm", "It"}
# Blocks skipped whole: .TS is handled apart; these hold no running text.
_SKIPPED_BLOCKS = {"EQ": "EN", "PS": "PE", "G1": "G2", "[": "]"}


def _render_mdoc(name: str, arguments: Sequence[str], strings: dict[str, str],
                 state: dict) -> str:
  """The text of one mdoc line: callable macros among the arguments are interpreted
  loosely (Fl -> "-", Xr name n -> "name(n)", Op/Dq/... enclose the rest of the line)."""
  tokens = [name] + list(arguments)
  pieces: list[str] = []
  closers: list[str] = []
  glue = False                     # the next text joins the previous one without a blank

  def add(text: str) -> None:
    nonlocal glue
    if pieces and (glue or text in _PUNCTUATION):
      pieces[-1] += text
    else:
      pieces.append(text)
    glue = False

  macro, index = None, 0
  while index < len(tokens):
    token = tokens[index]
    index += 1
    following = tokens[index] if index < len(tokens) else None
    if index == 1 or token in _MDOC_CALLABLE:
      macro = token
      if token in _MDOC_ENCLOSE:
        add(_MDOC_ENCLOSE[token][0])
        closers.append(_MDOC_ENCLOSE[token][1])
        glue = True
      elif token == "Ns":
        glue = True
      elif token == "Xr" and index + 1 < len(tokens):
        add(f"{render_escapes(tokens[index], strings)}"
            f"({render_escapes(tokens[index + 1], strings)})")
        index += 2
      elif token == "Fl" and (following is None or following in _MDOC_CALLABLE):
        add("-")
        glue = True
      elif token == "Nm" and (following is None or following in _MDOC_CALLABLE
                              or following in _PUNCTUATION):
        add(state.get("mdoc_name", ""))
      continue
    text = render_escapes(token, strings)
    if token in _PUNCTUATION:
      add(text)
      continue
    if macro == "Fl":
      text = "-" + text
    elif macro == "Nm":
      state.setdefault("mdoc_name", text)
    elif macro == "Nd" and not pieces:
      text = "- " + text
    add(text)
  text = " ".join(piece for piece in pieces if piece)
  for closer in reversed(closers):
    text = text.rstrip() + closer
  return text


@dataclasses.dataclass
class _Section:
  heading: str
  pieces: list[str] = dataclasses.field(default_factory=list)


def _condition(text: str) -> tuple[bool, str]:
  """(the value of a .if/.ie condition as nroff would see it, the rest of the line)."""
  text = text.lstrip()
  negate = text.startswith("!")
  if negate:
    text = text[1:]
  match = re.match(r"([ntevo])(?:\s+|(?=[.'\\])|$)(.*)$", text, re.S)
  if match:
    value = match.group(1) in "no"
    return value != negate, match.group(2)
  match = re.match(r"[drcmFS]\s+\S+\s*(.*)$", text, re.S)
  if match:
    return negate, match.group(1)
  if text and text[0] in "'\"/|":    # string comparison 'a'b'
    delimiter = text[0]
    parts = text.split(delimiter, 3)
    if len(parts) == 4:
      return ((parts[1] == parts[2]) != negate), parts[3].lstrip()
  match = re.match(r"(\S+)\s*(.*)$", text, re.S)
  if not match:
    return False, ""
  expression = match.group(1)
  value = expression in ("\\n(.g", "\\n[.g]", "1")       # groff: yes; anything else: no
  return value != negate, match.group(2)


class _TroffReader:
  """Turns one page's troff source into sections of plain text."""

  def __init__(self, source: str):
    self.lines = self._physical_lines(source)
    self.index = 0
    self.strings = dict(_PREDEFINED_STRINGS)
    self.sections: list[_Section] = []
    self.pending_heading: str | None = None   # "SH"/"SS" waiting for the next text line
    self.ie_results: list[bool] = []
    self.state: dict = {}

  @staticmethod
  def _physical_lines(source: str) -> list[str]:
    """Lines, a line ending in an unescaped backslash joined with the next one."""
    lines, pending = [], ""
    for line in source.replace("\r\n", "\n").split("\n"):
      line = _strip_comment(line)     # a comment's trailing backslash continues nothing
      trailing = len(line) - len(line.rstrip("\\"))
      if trailing % 2:
        pending += line[:-1]
        continue
      lines.append(pending + line)
      pending = ""
    if pending:
      lines.append(pending)
    return lines

  def read(self) -> list[tuple[str, str]]:
    while self.index < len(self.lines):
      line = self.lines[self.index]
      self.index += 1
      self.line(line)
    return [(section.heading, _join(section.pieces)) for section in self.sections]

  # -- output
  def emit(self, text: str) -> None:
    if not text.strip() and _NO_SPACE not in text and _GLUE_LEFT not in text:
      return
    if self.pending_heading is not None:
      kind, self.pending_heading = self.pending_heading, None
      self.heading(kind, text)
      return
    if self.sections:
      self.sections[-1].pieces.append(text)

  def heading(self, kind: str, text: str) -> None:
    text = _join([text])
    if kind == "SH":
      self.sections.append(_Section(text.upper()))
    elif self.sections:
      self.sections[-1].pieces.append(text + ":" if text and text[-1].isalnum() else text)

  # -- input
  def skip_until(self, end: str) -> None:
    """Skip lines up to and including the request line `.end` (e.g. ".." for .de)."""
    while self.index < len(self.lines):
      line = self.lines[self.index].strip()
      self.index += 1
      if re.fullmatch(r"[.'][ \t]*" + re.escape(end) + r"(?:\s.*)?", line):
        return

  def skip_block(self, rest: str) -> None:
    r"""Skip a false branch: `rest` and, when it opens a \{ block, lines to its \}."""
    depth = rest.count("\\{") - rest.count("\\}")
    while depth > 0 and self.index < len(self.lines):
      line = self.lines[self.index]
      self.index += 1
      depth += line.count("\\{") - line.count("\\}")

  def branch(self, value: bool, rest: str) -> None:
    if not value:
      self.skip_block(rest)
      return
    rest = rest.lstrip()
    if rest.startswith("\\{"):
      rest = rest[2:].lstrip()
    if rest:
      self.line(rest)

  def table(self) -> None:
    """A tbl table (.TS ... .TE): rows as text, cells separated by blanks."""
    separator = "\t"
    # Options (a line ending in ';') and format lines (up to one ending in '.').
    in_format = True
    options = True
    while self.index < len(self.lines):
      line = self.lines[self.index]
      self.index += 1
      stripped = line.strip()
      if re.fullmatch(r"[.'][ \t]*TE\b.*", stripped):
        break
      if in_format:
        if options and stripped.endswith(";"):
          options = False
          match = re.search(r"tab\s*\((.)\)", stripped)
          if match:
            separator = match.group(1)
          continue
        options = False
        if stripped.endswith("."):
          in_format = False
        continue
      if re.fullmatch(r"[.'][ \t]*T&.*", stripped):
        in_format = True
        continue
      if stripped in ("_", "=", "") or re.fullmatch(r"[_=\s" + re.escape(separator) + "]+",
                                                    stripped):
        continue
      if stripped.startswith((".", "'")) and not stripped.startswith(("T{", "T}")):
        self.line(line)
        continue
      cells = line.split(separator)
      cells = [cell[2:] if cell.startswith("T{") else cell for cell in cells]
      cells = [cell[:-2] if cell.endswith("T}") else cell for cell in cells]
      cells = [cell.replace("T}", "").replace("T{", "") for cell in cells]
      row = " ".join(cell for cell in cells if cell.strip() not in ("_", "=", "\\^"))
      self.emit(render_escapes(row, self.strings))

  def line(self, line: str) -> None:
    if not line.startswith((".", "'")):
      self.emit(render_escapes(line, self.strings))
      return
    match = _REQUEST.match(line)
    name, rest = (match.group(1), match.group(2)) if match else ("", "")
    if not name:
      return
    if name in ("if", "ie", "el"):
      if name == "el":
        value = not self.ie_results.pop() if self.ie_results else False
      else:
        value, rest = _condition(rest)
        if name == "ie":
          self.ie_results.append(value)
      self.branch(value, rest)
      return
    if name in ("de", "de1", "am", "am1", "dei", "ami"):
      arguments = rest.split()
      self.skip_until(arguments[1] if len(arguments) > 1 else ".")
      return
    if name == "ig":
      self.skip_until(rest.split()[0] if rest.split() else ".")
      return
    if name in ("ds", "ds1", "as"):
      parts = rest.split(None, 1)
      if parts:
        value = parts[1] if len(parts) > 1 else ""
        value = value[1:] if value.startswith('"') else value
        rendered = render_escapes(value, self.strings)
        self.strings[parts[0]] = (self.strings.get(parts[0], "") + rendered
                                  if name == "as" else rendered)
      return
    if name == "TS":
      self.table()
      return
    if name in _SKIPPED_BLOCKS:
      self.skip_until(_SKIPPED_BLOCKS[name])
      return
    if name in _HEADINGS:
      arguments = split_arguments(rest)
      kind = _HEADINGS[name]
      if arguments:
        self.pending_heading = None
        self.heading(kind, " ".join(render_escapes(a, self.strings) for a in arguments))
      else:
        self.pending_heading = kind
      return
    arguments = split_arguments(rest)
    if name in _MDOC_LINE or (name in _JOINED and name[1:2].islower()):
      if name == "Fn" and arguments:
        arguments = [arguments[0] + "(" + ", ".join(arguments[1:]) + ")"]
      if name == "In" and arguments:
        arguments = ["#include <" + arguments[0] + ">"] + arguments[1:]
      self.emit(_render_mdoc(name, arguments, self.strings, self.state))
      return
    if name in _JOINED:
      self.emit(" ".join(render_escapes(a, self.strings) for a in arguments))
    elif name in _ALTERNATING:
      self.emit("".join(render_escapes(a, self.strings) for a in arguments))
    elif name == "IP" and arguments:
      tag = render_escapes(arguments[0], self.strings).strip()
      if len(tag) > 1 or tag.isalnum():
        self.emit(tag)
    elif name == "OP" and arguments:
      self.emit("[" + " ".join(render_escapes(a, self.strings) for a in arguments) + "]")
    elif name in ("URL", "MTO") and arguments:
      shown = arguments[1] if len(arguments) > 1 and arguments[1] else arguments[0]
      self.emit(render_escapes(shown, self.strings)
                + "".join(render_escapes(a, self.strings) for a in arguments[2:3]))
    elif name in ("UE", "ME") and arguments:
      self.emit(_GLUE_LEFT + render_escapes(arguments[0], self.strings))
    # Any other request (.PP .TP .br .sp .nf .TH .UR .ft .in .RS ...) holds no text here.


def _join(pieces: Iterable[str]) -> str:
  """Pieces of text joined by blanks, whitespace collapsed, \\c honoured."""
  text = " ".join(pieces)
  text = re.sub(r"\x01\s*", "", text)       # \c ends a line without the blank
  text = re.sub(r"\s*\x02", "", text)
  return re.sub(r"\s+", " ", text).strip()


def is_so_redirect(source: str) -> bool:
  """A page that only includes another (`.so man3/other.3`), comments aside."""
  requests = [line.strip() for line in source.splitlines()
              if line.strip() and not re.match(r"""^[.'][ \t]*\\["#]""", line.strip())
              and line.strip() not in (".", "'")]
  return bool(requests) and len(requests) <= 3 and any(
      re.match(r"^[.'][ \t]*so\s", line) for line in requests)


def strip_troff(source: str) -> list[tuple[str, str]]:
  """[(HEADING, plain text)] of a page's sections (.SH/.Sh), in order."""
  return _TroffReader(source).read()


# ----------------------------------------------------------------------------- pages

_NAME_SEPARATOR = re.compile(r"\s(?:-{1,2}|\u2014|\u2013)\s")
# The Google Cloud SDK installs each command up to three times, one per release track
# (man1/gcloud_compute_ssh.1.gz, gcloud_beta_compute_ssh.1.gz, gcloud_alpha_...), with
# nearly the same text: one page per family is kept (GA, else beta, else alpha), and the
# family, not the file name, decides the split.
_RELEASE_TRACK = re.compile(r"^(man1/gcloud)_(alpha|beta)(?=[_.])")
_TRACK_RANK = {None: 0, "beta": 1, "alpha": 2}


def family_of(name: str) -> str:
  """The name of a page's family: `name` without a gcloud release track."""
  return _RELEASE_TRACK.sub(r"\1", name)


def _track_rank(name: str) -> int:
  match = _RELEASE_TRACK.match(name)
  return _TRACK_RANK[match.group(2) if match else None]


# Sections left out of a page's body: the NAME line (the summarization target), the
# synopsis, and those that are mostly the same text from page to page (gcloud's list of
# global flags is in each of its 7,000 pages); so is any section whose text is word for
# word that of BOILERPLATE_PAGES pages or more (gcloud's list flags, "Standard C library").
BOILERPLATE_PAGES = 20
_NOT_BODY = {"NAME", "SYNOPSIS", "GCLOUD WIDE FLAGS", "SEE ALSO", "AUTHOR", "AUTHORS",
             "COPYRIGHT", "REPORTING BUGS", "AVAILABILITY", "COLOPHON", "LICENSE"}


@dataclasses.dataclass
class Page:
  name: str                         # "man1/ls.1.gz", relative to the man directory
  section: str                      # "1" .. "8", from the directory
  sections: list[tuple[str, str]]
  # (HEADING, text) of sections found word for word in many pages: not in the body.
  boilerplate: frozenset = dataclasses.field(default=frozenset(), repr=False)

  @property
  def split_key(self) -> str:
    return family_of(self.name)

  def text_of(self, heading: str) -> str | None:
    for title, text in self.sections:
      if title == heading:
        return text
    for title, text in self.sections:
      if title.startswith(heading):
        return text
    return None

  @property
  def body(self) -> str:
    """Every section but NAME, SYNOPSIS and the boilerplate ones (_NOT_BODY, and those in
    `boilerplate`), or but NAME when that leaves under MIN_PAGE_CHARS."""
    texts = [text for title, text in self.sections
             if title not in _NOT_BODY and (title, text) not in self.boilerplate]
    body = " ".join(text for text in texts if text)
    if len(body) < MIN_PAGE_CHARS:
      body = " ".join(text for title, text in self.sections if title != "NAME" and text)
    return body

  @property
  def description(self) -> str:
    """DESCRIPTION, or the body when there is none or it is under MIN_PAGE_CHARS."""
    description = self.text_of("DESCRIPTION")
    if description and len(description) >= MIN_PAGE_CHARS:
      return description
    return self.body

  @property
  def all_text(self) -> str:
    return " ".join(text for _, text in self.sections if text)

  @property
  def summary(self) -> str | None:
    """The NAME line's description: "ls - list directory contents" -> "list directory
    contents"; None when there is no such line."""
    return name_line_summary(self.text_of("NAME") or "")


def name_line_summary(name_text: str) -> str | None:
  parts = _NAME_SEPARATOR.split(" " + name_text + " ", maxsplit=1)
  if len(parts) != 2 or not parts[0].strip():
    return None
  summary = re.sub(r"\s+", " ", parts[1]).strip()
  if len(summary) < 3 or len(summary) > MAX_SUMMARY_CHARS or not re.search(r"[A-Za-z]",
                                                                            summary):
    return None
  return summary


def truncate(text: str, limit: int) -> str:
  """`text` cut at the last blank at or before `limit` characters (at `limit` when that
  blank is far back)."""
  if len(text) <= limit:
    return text
  cut = text.rfind(" ", 0, limit + 1)
  if cut < limit * 0.8:
    cut = limit
  return text[:cut].rstrip()


def _hash(*parts: object) -> int:
  return int.from_bytes(hashlib.sha1(":".join(map(str, parts)).encode()).digest()[:8], "big")


def split_of(name: str, validation_percent: float) -> str:
  """The split of the page `name` (its path relative to the man directory): stable, and
  independent of the seed."""
  return ("validation" if _hash("split", name) % 1_000_000 < validation_percent * 10_000
          else "train")


@dataclasses.dataclass
class ReadResult:
  pages: list[Page]
  found: collections.Counter        # section -> files + symlinks found
  skipped: collections.Counter      # reason -> pages


def _candidate_files(man_dir: str) -> tuple[list[str], list[str], collections.Counter]:
  regular, links, found = [], [], collections.Counter()
  for section in sorted(SECTION_CLASSES):
    directory = os.path.join(man_dir, f"man{section}")
    if not os.path.isdir(directory):
      continue
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
      if not entry.name.endswith(".gz"):
        continue
      found[section] += 1
      (links if entry.is_symlink() else regular).append(
          os.path.join(f"man{section}", entry.name))
  return regular, links, found


def read_pages(man_dir: str, exclude: str | None = None) -> ReadResult:
  """The pages under man_dir/man{1..8}/*.gz worth keeping (see the module docstring);
  pages whose name ("man1/ls.1.gz") `exclude` matches (re.search) are left out."""
  regular, links, found = _candidate_files(man_dir)
  skipped: collections.Counter = collections.Counter()
  seen_paths, seen_inodes, seen_bytes = set(), set(), set()
  families_read = set()
  parsed = []
  order = lambda name: (family_of(name), _track_rank(name), name)
  for name in sorted(regular, key=order) + sorted(links, key=order):
    if exclude and re.search(exclude, name):
      skipped["excluded by --exclude"] += 1
      continue
    if family_of(name) in families_read:
      skipped["gcloud alpha/beta copy of a page read"] += 1
      continue
    path = os.path.join(man_dir, name)
    real = os.path.realpath(path)
    if real in seen_paths:
      skipped["symlink to a page already read"] += 1
      continue
    seen_paths.add(real)
    try:
      stat = os.stat(path)
    except OSError:
      skipped["broken symlink"] += 1
      continue
    if (stat.st_dev, stat.st_ino) in seen_inodes:
      skipped["duplicate (same file)"] += 1
      continue
    seen_inodes.add((stat.st_dev, stat.st_ino))
    try:
      with gzip.open(path, "rb") as file:
        data = file.read()
      source = data.decode("utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError):
      skipped["failed to decompress or decode (UTF-8)"] += 1
      continue
    digest = hashlib.sha1(data).digest()
    if digest in seen_bytes:
      skipped["duplicate (same bytes)"] += 1
      continue
    seen_bytes.add(digest)
    if is_so_redirect(source):
      skipped[".so redirect"] += 1
      continue
    try:
      sections = strip_troff(source)
    except (RecursionError, IndexError, ValueError):   # a page beyond this little parser
      skipped["failed to parse"] += 1
      continue
    families_read.add(family_of(name))
    parsed.append((name, sections))

  counts = collections.Counter(section for _, sections in parsed
                               for section in set(sections) if section[1])
  boilerplate = frozenset(section for section, count in counts.items()
                          if count >= BOILERPLATE_PAGES)
  seen_texts, pages = set(), []
  for name, sections in parsed:
    page = Page(name, name[3], sections, boilerplate)
    if len(page.all_text) < MIN_PAGE_CHARS or len(page.description) < MIN_PAGE_CHARS // 2:
      skipped[f"shorter than {MIN_PAGE_CHARS} characters"] += 1
      continue
    # Pages that open alike (aliases like gcloud's ml-engine and ai-platform, pages
    # sharing a first paragraph) would give the same excerpt to classify or summarize.
    text_key = page.description[:MIN_PAGE_CHARS]
    if text_key in seen_texts:
      skipped[f"duplicate (same first {MIN_PAGE_CHARS} characters of text)"] += 1
      continue
    seen_texts.add(text_key)
    pages.append(page)
  return ReadResult(pages, found, skipped)


# ----------------------------------------------------------------------------- tasks

def classification_cap(counts: dict[str, int], max_share: float) -> int:
  """The largest per-class cap with which the majority class is at most `max_share` of
  all capped examples (the share only grows with the cap); the smallest class's count
  when even a perfect balance exceeds it."""
  if not counts:
    return 0

  def share(cap: int) -> float:
    capped = [min(count, cap) for count in counts.values()]
    return max(capped) / sum(capped)

  low, high = 1, max(counts.values())
  if share(low) > max_share:
    return min(counts.values())
  while low < high:                  # largest cap with share(cap) <= max_share
    middle = (low + high + 1) // 2
    if share(middle) <= max_share:
      low = middle
    else:
      high = middle - 1
  return low


@dataclasses.dataclass
class Built:
  examples: dict[str, dict[str, list[dict]]]      # task -> split -> records
  class_pages: dict[str, dict[str, int]]          # split -> class -> pages before caps
  class_examples: dict[str, dict[str, int]]       # split -> class -> examples kept
  caps: dict[str, int]
  dropped_classes: dict[str, int]
  warnings: list[str]
  gcloud: dict[str, dict[str, int]]               # task -> split -> gcloud examples


def _capped_total(counts: dict[str, int], cap: int) -> int:
  return sum(min(count, cap) for count in counts.values())


def _majority_share(counts: dict[str, int], cap: int) -> float:
  total = _capped_total(counts, cap)
  if not total:
    return 0.0
  return max(min(count, cap) for count in counts.values()) / total


def _smallest_cap_reaching(counts: dict[str, int], minimum: int) -> int:
  """The smallest per-class cap that keeps at least `minimum` examples in all."""
  low, high = 0, max(counts.values(), default=0)
  while low < high:
    middle = (low + high) // 2
    if _capped_total(counts, middle) >= minimum:
      high = middle
    else:
      low = middle + 1
  return low


def build_examples(pages: Sequence[Page], *, validation_percent: float, seed: int,
                   max_class_share: float,
                   min_validation: int = MIN_VALIDATION_CLASSIFICATION) -> Built:
  examples = {task: {split: [] for split in SPLITS} for task in TASKS}
  by_class = {split: collections.defaultdict(list) for split in SPLITS}
  warnings = []
  for page in sorted(pages, key=lambda p: p.name):
    split = split_of(page.split_key, validation_percent)
    description = page.description
    examples["pretraining"][split].append(
        (page.name, {"text": truncate(description, PRETRAINING_CHARS)}))
    excerpt = truncate(description, EXCERPT_CHARS)
    by_class[split][SECTION_CLASSES[page.section]].append(
        (page.name, {"input": "section: " + excerpt,
                     "target": SECTION_CLASSES[page.section]}))
    summary = page.summary
    if summary:
      examples["summarization"][split].append(
          (page.name, {"input": "summarize: " + excerpt, "target": summary}))

  overall = collections.Counter()
  for split in SPLITS:
    for label, members in by_class[split].items():
      overall[label] += len(members)
  dropped = {label: count for label, count in overall.items() if count < MIN_CLASS_PAGES}
  class_pages = {split: {label: len(members) for label, members in
                         sorted(by_class[split].items()) if label not in dropped}
                 for split in SPLITS}
  # In each split the largest cap within max_class_share; in validation raised (the
  # majority share with it) where that leaves fewer than min_validation examples.
  caps = {split: classification_cap(class_pages[split], max_class_share)
          for split in SPLITS}
  minimum = min(min_validation, sum(class_pages["validation"].values()))
  within = _capped_total(class_pages["validation"], caps["validation"])
  raised = within < minimum
  if raised:
    caps["validation"] = _smallest_cap_reaching(class_pages["validation"], minimum)
  class_examples = {}
  for split in SPLITS:
    class_examples[split] = {}
    for label, count in class_pages[split].items():
      members = sorted(by_class[split][label], key=lambda item: _hash(seed, "keep", item[0]))
      kept = members[:caps[split]]
      class_examples[split][label] = len(kept)
      examples["classification"][split].extend(kept)
  validation_count = sum(class_examples["validation"].values())
  if validation_count < min_validation:
    warnings.append(
        f"warning: classification validation has only {validation_count} examples (< "
        f"{min_validation}): every validation page is used; raise --validation_percent "
        "for more.")
  for split in SPLITS:
    share = _majority_share(class_pages[split], caps[split])
    if share <= max_class_share + 1e-9:
      continue
    if split == "validation" and raised:
      warnings.append(
          f"warning: to keep {minimum} classification validation examples the majority "
          f"class is {share:.1%} of that split, above --max_class_share="
          f"{max_class_share:g} (at this --validation_percent the validation pages allow "
          f"{within} examples within it; a larger --validation_percent gives both).")
    else:
      warnings.append(
          f"warning: with {len(class_pages[split])} classes the majority class is "
          f"{share:.1%} of classification {split}, above --max_class_share="
          f"{max_class_share:g}.")
  ordered = {task: {} for task in TASKS}
  gcloud = {task: {} for task in TASKS}
  for task in TASKS:
    for split in SPLITS:
      items = sorted(examples[task][split], key=lambda item: _hash(seed, task, item[0]))
      ordered[task][split] = [record for _, record in items]
      gcloud[task][split] = sum(1 for name, _ in items if name.startswith("man1/gcloud"))
  return Built(ordered, class_pages, class_examples, caps, dropped, warnings, gcloud)


def check_no_leak(built: Built) -> None:
  """No validation pretraining text is also a train text (pages are split once and texts
  are unique, so this holds by construction; checked anyway)."""
  train = {record["text"] for record in built.examples["pretraining"]["train"]}
  leaked = [r for r in built.examples["pretraining"]["validation"] if r["text"] in train]
  if leaked:
    raise RuntimeError(f"{len(leaked)} validation pretraining texts are also train texts")


# ----------------------------------------------------------------------------- output

def _write_jsonl(path: str, records: Iterable[dict]) -> None:
  with open(path, "w", encoding="utf-8") as file:
    for record in records:
      file.write(json.dumps(record, ensure_ascii=False) + "\n")


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
  return lines


def readme(built: Built, result: ReadResult, *, command: str, man_dir: str,
           validation_percent: float, seed: int, max_class_share: float,
           seconds: float) -> str:
  found_total = sum(result.found.values())
  lines = [
      "# Manual-pages corpus", "",
      f"Built by `tools/man_pages_corpus.py` in {seconds:.1f} s from the manual pages in "
      f"`{man_dir}` (man1..man8: {found_total} .gz files and symlinks on this machine):",
      "", f"    {command}", "",
      "A corpus directory for the quickstart (`--corpus_dir`): each page's troff source "
      "stripped to plain text in Python. One train/validation split for all three tasks "
      f"(SHA-1 of the page's name, {validation_percent:g}% to validation; gcloud's "
      "alpha/beta/GA copies of a command count as one page), so no validation page's "
      "text is in a train file.", "",
      "- `pretraining/{train,validation}.jsonl`: `{\"text\"}`, one page each: its "
      f"DESCRIPTION (the body but NAME and SYNOPSIS where there is none), cut near "
      f"{PRETRAINING_CHARS} characters.",
      "- `classification/{train,validation}.jsonl`: `{\"input\", \"target\"}`: "
      f"`section: <the same text cut near {EXCERPT_CHARS} characters>` -> the manual "
      f"section as a word. Sections with under {MIN_CLASS_PAGES} pages dropped; in each "
      "split every class capped at one count, the largest that keeps the majority class "
      f"at most {max_class_share:.0%} of the split, raised where the validation split "
      "would otherwise keep too few examples (pages kept chosen by a hash seeded with "
      f"{seed}).",
      "- `summarization/{train,validation}.jsonl`: `{\"input\", \"target\"}`: "
      "`summarize: <the same excerpt>` -> the NAME line's description.", "",
      "## Pages", ""]
  lines += _table(["section", "class", ".gz files + symlinks", "pages kept"],
                  [(section, SECTION_CLASSES[section], result.found.get(section, 0),
                    sum(1 for p in result.pages if p.section == section))
                   for section in sorted(SECTION_CLASSES)])
  gcloud_pages = sum(1 for page in result.pages if page.name.startswith("man1/gcloud"))
  lines += ["", f"{len(result.pages)} pages kept of {found_total}, {gcloud_pages} of them "
            "the Google Cloud SDK's (man1/gcloud*). Skipped:", ""]
  skipped = collections.Counter(result.skipped)
  skipped.setdefault("failed to decompress or decode (UTF-8)", 0)
  lines += [f"- {reason}: {count}" for reason, count in sorted(skipped.items())]
  lines += ["", "## Examples", ""]
  lines += _table(["task", "train", "validation", "of them gcloud (train, validation)"],
                  [(task, len(built.examples[task]["train"]),
                    len(built.examples[task]["validation"]),
                    f"{built.gcloud[task]['train']}, {built.gcloud[task]['validation']}")
                   for task in TASKS])
  lines += ["", "## Classification classes", ""]
  labels = sorted(set(built.class_pages["train"]) | set(built.class_pages["validation"]))
  lines += _table(["class", "train pages", "train kept", "validation pages",
                   "validation kept"],
                  [(label, built.class_pages["train"].get(label, 0),
                    built.class_examples["train"].get(label, 0),
                    built.class_pages["validation"].get(label, 0),
                    built.class_examples["validation"].get(label, 0)) for label in labels])
  lines.append("")
  for split in SPLITS:
    kept = built.class_examples[split]
    total = sum(kept.values())
    share = max(kept.values()) / total if total else 0.0
    lines.append(f"- {split}: cap {built.caps[split]} per class, {total} examples, "
                 f"majority class {share:.1%}")
  if built.dropped_classes:
    lines.append("- dropped (under %d pages): %s" % (MIN_CLASS_PAGES, ", ".join(
        f"{label} ({count})" for label, count in sorted(built.dropped_classes.items()))))
  for warning in built.warnings:
    lines += ["", warning]
  return "\n".join(lines) + "\n"


def write_corpus(output_dir: str, built: Built, readme_text: str) -> None:
  """Writes everything into a temporary directory beside `output_dir`, then renames it
  into place (an existing empty `output_dir` is replaced)."""
  output_dir = os.path.abspath(output_dir)
  parent = os.path.dirname(output_dir)
  os.makedirs(parent, exist_ok=True)
  temporary = tempfile.mkdtemp(prefix=os.path.basename(output_dir) + ".partial-", dir=parent)
  try:
    for task in TASKS:
      os.makedirs(os.path.join(temporary, task))
      for split in SPLITS:
        _write_jsonl(os.path.join(temporary, task, f"{split}.jsonl"),
                     built.examples[task][split])
    with open(os.path.join(temporary, "README.md"), "w", encoding="utf-8") as file:
      file.write(readme_text)
    os.chmod(temporary, 0o755)
    os.rename(temporary, output_dir)
  except BaseException:
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(temporary, ignore_errors=True)
    raise


def refuse_non_empty(output_dir: str) -> str | None:
  """An error message when `output_dir` exists and is not an empty directory."""
  if os.path.lexists(output_dir):
    if not os.path.isdir(output_dir):
      return f"error: --output_dir={output_dir} exists and is not a directory"
    if os.listdir(output_dir):
      return (f"error: --output_dir={output_dir} exists and is not empty; choose a new "
              "directory or remove it")
  return None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--output_dir", required=True, help="New (or empty) directory.")
  parser.add_argument("--man_dir", default="/usr/share/man",
                      help="Holds man1/ .. man8/ (default: /usr/share/man).")
  parser.add_argument("--validation_percent", type=float, default=20.0,
                      help="Percent of pages in the validation split (default: 20).")
  parser.add_argument("--seed", type=int, default=0,
                      help="Seeds which capped classification pages are kept, and the "
                      "order of the examples; not the split (default: 0).")
  parser.add_argument("--max_class_share", type=float, default=0.4,
                      help="Largest share of the majority classification class in each "
                      "split (default: 0.4).")
  parser.add_argument("--min_validation_classification", type=int,
                      default=MIN_VALIDATION_CLASSIFICATION,
                      help="Fewest classification validation examples; the class cap is "
                      "raised above --max_class_share to keep them where needed (0: "
                      "never; default: %(default)s).")
  parser.add_argument("--exclude", default=None,
                      help="Regular expression: pages whose name (e.g. man1/ls.1.gz) it "
                      "matches are left out, e.g. '^man1/gcloud' (default: none).")
  args = parser.parse_args(argv)
  if args.exclude:
    try:
      re.compile(args.exclude)
    except re.error as error:
      parser.error(f"--exclude is no regular expression: {error}")
  if not 0 < args.validation_percent < 100:
    parser.error("--validation_percent must be between 0 and 100 (exclusive)")
  if not 0 < args.max_class_share <= 1:
    parser.error("--max_class_share must be in (0, 1]")
  return args


def main(argv: Sequence[str] | None = None) -> int:
  start = time.time()
  args = parse_args(argv)
  error = refuse_non_empty(args.output_dir)
  if error:
    print(error, file=sys.stderr)
    return 2
  if not any(os.path.isdir(os.path.join(args.man_dir, f"man{s}")) for s in SECTION_CLASSES):
    print(f"error: --man_dir={args.man_dir} holds no man1/ .. man8/ directory",
          file=sys.stderr)
    return 2
  result = read_pages(args.man_dir, args.exclude)
  if not result.pages:
    print(f"error: no usable manual page under {args.man_dir}", file=sys.stderr)
    return 1
  built = build_examples(result.pages, validation_percent=args.validation_percent,
                         seed=args.seed, max_class_share=args.max_class_share,
                         min_validation=args.min_validation_classification)
  check_no_leak(built)
  command = " ".join(shlex.quote(part) for part in
                     ["python", "tools/man_pages_corpus.py"] +
                     (list(argv) if argv is not None else sys.argv[1:]))
  seconds = time.time() - start
  text = readme(built, result, command=command, man_dir=args.man_dir,
                validation_percent=args.validation_percent, seed=args.seed,
                max_class_share=args.max_class_share, seconds=seconds)
  write_corpus(args.output_dir, built, text)
  for warning in built.warnings:
    print(warning, file=sys.stderr)
  found = sum(result.found.values())
  reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(result.skipped.items()))
  print(f"pages: {found} found, {len(result.pages)} kept, "
        f"{sum(result.skipped.values())} skipped ({reasons})")
  for task in TASKS:
    print(f"{task}: train {len(built.examples[task]['train'])}, "
          f"validation {len(built.examples[task]['validation'])}")
  for split in SPLITS:
    kept = built.class_examples[split]
    total = sum(kept.values())
    share = max(kept.values()) / total if total else 0.0
    print(f"classification {split} (cap {built.caps[split]} per class, {total} examples, "
          f"majority {share:.1%}): "
          + ", ".join(f"{label} {count}" for label, count in kept.items()))
  if built.dropped_classes:
    print("dropped classes: " + ", ".join(f"{label} ({count} pages)" for label, count
                                          in sorted(built.dropped_classes.items())))
  print(f"wrote {os.path.abspath(args.output_dir)} in {time.time() - start:.1f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
