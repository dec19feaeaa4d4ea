"""tools/man_pages_corpus.py on a handful of fake manual pages: troff stripping, the NAME
line summary, one deterministic split for every task, the refused non-empty output."""

import gzip
import json
import os

import pytest

from tests.tool_modules import tool_module

ESCAPES_PAGE = r""".\" A comment line that must vanish.
'\" t
.de XX
This macro body is no text.
..
.TH FROB 1 "2024" "frob 1.0" "User Commands"
.SH NAME
frob \- frobnicate the widgets
.SH SYNOPSIS
.B frob
[\fI\,OPTION\/\fR]... \fIFILE\fR
.SH DESCRIPTION
.PP
\fBfrob\fR reads \fIFILE\fP and \f(CWfrobnicates\fR it\(emquickly.
Use \fB\-\-force\fR (or \-f) to skip the \(aqsafety\(aq checks; a \s+1BIG\s0 word,
a backslash \e, \*(lqquoted\*(rq text and a zero\&-width join.
.if n .ds Zz nroff-string
.if t .ds Zz troff-string
The string is \*(Zz. \" an inline comment
.ie t \{\
Typeset only.
.\}
.el \{\
Terminal only.
.\}
.TP
.BR \-v ", " \-\-verbose
Print more.
.IP "\(bu" 4
A bulleted item
that continues \
on a joined line.
.SH "SEE ALSO"
.BR ls (1)
"""

STRIPPED_DESCRIPTION = (
    "frob reads FILE and frobnicates it--quickly. Use --force (or -f) to skip the 'safety' "
    'checks; a BIG word, a backslash \\, "quoted" text and a zero-width join. The string '
    "is nroff-string. Terminal only. -v, --verbose Print more. A bulleted item that "
    "continues on a joined line.")

FILLER = ("These sentences pad the description so that the page is long enough to be "
          "kept by the corpus builder, which skips pages with under two hundred characters "
          "of text. They are plain English, with no troff in them at all, and say nothing.")

PAGES = {
    "man1/frob.1.gz": ESCAPES_PAGE,
    "man2/gizmo.2.gz": (".TH GIZMO 2\n.SH NAME\ngizmo \\- make a gizmo system call\n"
                        ".SH DESCRIPTION\nThe \\fBgizmo\\fR() system call makes gizmos. "
                        + FILLER + "\n"),
    "man3/widget.3.gz": (".TH WIDGET 3\n.SH NAME\nwidget\n.SH DESCRIPTION\nThe widget() "
                         "function returns a widget. " + FILLER + "\n"),
    "man3/gizmo_alias.3.gz": ".so man2/gizmo.2\n",
    "man5/frob.conf.5.gz": (".TH FROB.CONF 5\n.SH NAME\nfrob.conf \\- frob configuration "
                            "file\n.SH FORMAT\nEach line of frob.conf holds a key. "
                            + FILLER + "\n"),
    "man7/tiny.7.gz": ".TH TINY 7\n.SH NAME\ntiny \\- too short\n.SH DESCRIPTION\nShort.\n",
}


@pytest.fixture(scope="module")
def corpus_tool():
  with tool_module("man_pages_corpus") as module:
    yield module


@pytest.fixture
def man_dir(tmp_path):
  root = tmp_path / "man"
  for name, source in PAGES.items():
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as file:
      file.write(source.encode("utf-8"))
  (root / "man8").mkdir()
  os.symlink("../man2/gizmo.2.gz", root / "man8" / "gizmo-link.8.gz")   # already read
  (root / "man8" / "broken.8.gz").write_bytes(b"not gzip at all")
  return str(root)


def _read_jsonl(path):
  with open(path, encoding="utf-8") as file:
    return [json.loads(line) for line in file]


def _build(tool, man_dir, output_dir, *extra):
  return tool.main([f"--output_dir={output_dir}", f"--man_dir={man_dir}",
                    "--min_validation_classification=0", *extra])


def test_troff_is_stripped_to_plain_text(corpus_tool):
  sections = dict(corpus_tool.strip_troff(ESCAPES_PAGE))
  assert list(sections) == ["NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"]
  assert sections["NAME"] == "frob - frobnicate the widgets"
  assert sections["SYNOPSIS"] == "frob [OPTION]... FILE"
  assert sections["DESCRIPTION"] == STRIPPED_DESCRIPTION
  assert sections["SEE ALSO"] == "ls(1)"
  assert corpus_tool.render_escapes(r"\fB\-x\fP \(em \e \(aq \& \*(lqa\*(rq \s-1b\s+1") == (
      "-x -- \\ '  \"a\" b")                       # \& leaves nothing, blanks stay
  assert corpus_tool.is_so_redirect(PAGES["man3/gizmo_alias.3.gz"])
  assert not corpus_tool.is_so_redirect(ESCAPES_PAGE)


def test_name_line_summary(corpus_tool):
  summary = corpus_tool.name_line_summary
  assert summary("ls - list directory contents") == "list directory contents"
  assert summary("printf, fprintf - formatted output conversion") == (
      "formatted output conversion")
  assert summary("git-add - Add file contents to the index") == (
      "Add file contents to the index")
  assert summary("widget") is None
  assert summary("x-y") is None


def test_builds_every_task_from_one_split(corpus_tool, man_dir, tmp_path, monkeypatch,
                                          capsys):
  monkeypatch.setattr(corpus_tool, "MIN_CLASS_PAGES", 1)
  output = tmp_path / "corpus"
  assert _build(corpus_tool, man_dir, output, "--validation_percent=50") == 0
  kept = {"man1/frob.1.gz", "man2/gizmo.2.gz", "man3/widget.3.gz", "man5/frob.conf.5.gz"}
  validation = {name for name in kept if corpus_tool.split_of(name, 50) == "validation"}
  texts = {split: _read_jsonl(output / "pretraining" / f"{split}.jsonl")
           for split in ("train", "validation")}
  assert len(texts["train"]) + len(texts["validation"]) == 4   # no .so, link, broken, tiny
  assert len(texts["validation"]) == len(validation)
  assert STRIPPED_DESCRIPTION in [r["text"] for split in texts.values() for r in split]
  assert not {r["text"] for r in texts["train"]} & {r["text"] for r in texts["validation"]}

  summaries = {split: _read_jsonl(output / "summarization" / f"{split}.jsonl")
               for split in ("train", "validation")}
  targets = {r["target"] for split in summaries.values() for r in split}
  assert targets == {"frobnicate the widgets", "make a gizmo system call",
                     "frob configuration file"}                   # widget has no "-" line
  assert all(r["input"].startswith("summarize: ") for s in summaries.values() for r in s)

  classes = {split: _read_jsonl(output / "classification" / f"{split}.jsonl")
             for split in ("train", "validation")}
  assert sorted(r["target"] for s in classes.values() for r in s) == [
      "commands", "file_formats", "library_functions", "system_calls"]
  for split in ("train", "validation"):     # every task's split holds the same pages
    pages = {r["text"] for r in texts[split]}                  # (all under 600 characters)
    assert {r["input"].removeprefix("section: ") for r in classes[split]} == pages
    assert {r["input"].removeprefix("summarize: ") for r in summaries[split]} <= pages
  readme = (output / "README.md").read_text()
  assert ".so redirect: 1" in readme and "symlink to a page already read: 1" in readme
  assert "failed to decompress or decode (UTF-8): 1" in readme
  assert "shorter than 200 characters: 1" in readme
  assert "pretraining" in capsys.readouterr().out


def test_split_and_files_are_deterministic(corpus_tool, man_dir, tmp_path):
  assert [corpus_tool.split_of(f"man1/page{i}.1.gz", 20) for i in range(200)] == [
      corpus_tool.split_of(f"man1/page{i}.1.gz", 20) for i in range(200)]
  share = sum(corpus_tool.split_of(f"man1/page{i}.1.gz", 20) == "validation"
              for i in range(2000)) / 2000
  assert 0.17 < share < 0.23
  assert corpus_tool.family_of("man1/gcloud_alpha_compute_ssh.1.gz") == (
      "man1/gcloud_compute_ssh.1.gz")                  # release tracks share their split
  runs = []
  for name, seed in (("a", 0), ("b", 0), ("c", 1)):
    assert _build(corpus_tool, man_dir, tmp_path / name, "--validation_percent=50",
                  f"--seed={seed}") == 0
    runs.append({split: (tmp_path / name / "pretraining" / f"{split}.jsonl").read_text()
                 for split in ("train", "validation")})
  assert runs[0] == runs[1]
  for split in ("train", "validation"):     # another seed: the same split
    assert sorted(runs[2][split].splitlines()) == sorted(runs[0][split].splitlines())


def test_refuses_a_non_empty_output_dir(corpus_tool, man_dir, tmp_path, capsys):
  output = tmp_path / "taken"
  output.mkdir()
  (output / "keep.txt").write_text("mine")
  assert _build(corpus_tool, man_dir, output) == 2
  error = capsys.readouterr().err.strip()
  assert error.startswith("error:") and "not empty" in error and len(error.splitlines()) == 1
  assert os.listdir(output) == ["keep.txt"]
  empty = tmp_path / "empty"
  empty.mkdir()
  assert _build(corpus_tool, man_dir, empty) == 0      # an empty directory is fine
  assert (empty / "README.md").is_file()
