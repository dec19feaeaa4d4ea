"""Corpora: the embedded corpus, local files and Hugging Face datasets as seqio sources."""

import gzip
import json
import os
import subprocess
import sys

import pytest
import seqio

from miniend_jax.data import document_split, embedded_corpus, stdlib_docstrings
from miniend_jax.data.errors import CorpusError
from miniend_jax.data.sources import HuggingFaceSource, InMemorySource, LocalFilesSource

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _texts(dataset, key="text"):
  return [example[key].numpy().decode() for example in dataset]


def _python(script, **env):
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env={**os.environ, **env})
  assert result.returncode == 0, result.stderr
  return result.stdout.split()


def test_embedded_corpus_is_identical_across_runs():
  # This process has imported TensorFlow, seqio, ... (which patch standard-library
  # objects); a bare process with another hash seed must still see the same corpus.
  digest, count = _python(
      "from miniend_jax.data import embedded_corpus as e; "
      "print(e.corpus_digest(), len(e.documents()))", PYTHONHASHSEED="12345")
  assert digest == embedded_corpus.corpus_digest()
  assert int(count) == len(embedded_corpus.documents())


def test_harvesting_imports_no_side_effect_module():
  count, side_effect_modules = _python(
      f"import runpy, sys; harvest = runpy.run_path({stdlib_docstrings.__file__!r})"
      "['harvest']; print(len(harvest()), any(m in sys.modules for m in ('tkinter', "
      "'idlelib', 'antigravity', 'this', 'turtle', 'webbrowser', 'rlcompleter')))")
  assert int(count) == len(embedded_corpus.documents())
  assert side_effect_modules == "False"


def test_embedded_corpus_content_and_split():
  documents = embedded_corpus.documents()
  ids = [d.id for d in documents]
  assert len(set(ids)) == len(ids) and len({d.text for d in documents}) == len(documents)
  assert sum(len(d.text) for d in documents) > 1_500_000
  assert "pydoc_topics.assert" in ids and "json.dumps" in ids
  assert not {"tkinter", "idlelib", "antigravity", "this", "turtle"} & set(
      stdlib_docstrings.MODULES)
  validation = embedded_corpus.split_documents("validation")
  assert 0.08 < len(validation) / len(documents) < 0.12
  assert {d.id for d in validation}.isdisjoint(
      d.id for d in embedded_corpus.split_documents("train"))
  assert all(document_split.split_of(d.id, 10.0) == "validation" for d in validation)
  with pytest.raises(ValueError, match="splits 'train' and 'validation'"):
    embedded_corpus.split_documents("test")


def test_summary_and_body_follow_pep257_shape():
  body = "A longer explanation of what happens, " * 4
  assert embedded_corpus.summary_and_body(f"Return the value.\n\n{body}") == (
      "Return the value.", body.strip())
  assert embedded_corpus.summary_and_body("Only a summary line.") is None
  assert embedded_corpus.summary_and_body(f"Two line\nsummary.\n\n{body}") is None
  assert embedded_corpus.summary_and_body("Short.\n\nBody too short.") is None


def test_downstream_examples_do_not_leak_between_splits():
  for make, key in ((embedded_corpus.summarization_examples, "document"),
                    (embedded_corpus.topic_examples, "text")):
    train, validation = make("train"), make("validation")
    assert validation and len(train) > 5 * len(validation)
    assert {e["id"] for e in train}.isdisjoint(e["id"] for e in validation)
    assert {e[key] for e in train}.isdisjoint(e[key] for e in validation)
  labels = {e["label"] for e in embedded_corpus.topic_examples("validation")}
  assert labels == set(embedded_corpus.TOPIC_PACKAGES)


def test_in_memory_source_shards_and_shuffles_deterministically():
  source = InMemorySource(lambda split: [{"text": f"{split} {i}"} for i in range(10)],
                          ["train"])
  assert source.num_input_examples("train") == 10
  shards = [_texts(source.get_dataset("train", shuffle=False,
                                      shard_info=seqio.ShardInfo(i, 2))) for i in range(2)]
  assert sorted(shards[0] + shards[1]) == sorted(f"train {i}" for i in range(10))
  assert not set(shards[0]) & set(shards[1])
  first = _texts(source.get_dataset("train", shuffle=True, seed=3))
  assert first == _texts(source.get_dataset("train", shuffle=True, seed=3))
  assert first != _texts(source.get_dataset("train", shuffle=False))
  with pytest.raises(CorpusError, match="holds no example"):
    InMemorySource(lambda split: [], ["train"]).get_dataset("train")


def _write(path, lines):
  path.write_bytes(b"".join(line + b"\n" for line in lines))
  return str(path)


def test_local_files_text_and_jsonl(tmp_path):
  _write(tmp_path / "a.txt", [b"first document", b"", b"second document"])
  _write(tmp_path / "b.jsonl", [json.dumps({"body": f"json document {i}"}).encode()
                                for i in range(40)])
  source = LocalFilesSource({"train": [str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl")],
                             "validation": str(tmp_path / "a.txt")}, text_key="body")
  train = list(source.get_dataset("train", shuffle=False))
  assert [e["text"].numpy().decode() for e in train[:3]] == [
      "first document", "second document", "json document 0"]
  assert [e["id"].numpy().decode() for e in train[:3]] == ["a.txt:1", "a.txt:3", "b.jsonl:1"]
  assert source.num_input_examples("train") == 42
  assert source.num_input_examples("validation") == 2
  # One corpus split by document id: disjoint, complete.
  split = LocalFilesSource(str(tmp_path / "b.jsonl"), text_key="body",
                           validation_percent=25)
  parts = [set(_texts(split.get_dataset(s, shuffle=False))) for s in ("train", "validation")]
  assert not parts[0] & parts[1] and len(parts[0] | parts[1]) == 40 and parts[1]


def test_local_files_shard_by_file(tmp_path):
  files = [_write(tmp_path / f"{i}.txt", [f"doc {i}".encode()]) for i in range(3)]
  source = LocalFilesSource({"train": files})
  task = seqio.Task("local_files_shard_test", source=source, output_features={},
                    preprocessors=[])
  shards = [_texts(task.get_dataset(None, "train", shuffle=False,
                                    shard_info=seqio.ShardInfo(i, 2))) for i in range(2)]
  assert shards == [["doc 0", "doc 2"], ["doc 1"]]


def test_local_file_errors_are_raised_before_tensorflow_runs(tmp_path):
  with pytest.raises(CorpusError, match="No corpus file matches"):
    LocalFilesSource(str(tmp_path / "missing-*.txt"))
  bad = _write(tmp_path / "bad.txt", [b"good", b"caf\xe9 latin-1"])
  with pytest.raises(CorpusError, match=r"bad.txt:2 is not valid utf-8 .*set encoding"):
    LocalFilesSource({"train": bad}).get_dataset("train")
  assert _texts(LocalFilesSource({"train": bad}, encoding="latin-1").get_dataset(
      "train", shuffle=False))[1] == "café latin-1"
  blank = _write(tmp_path / "blank.txt", [b"", b"   "])
  with pytest.raises(CorpusError, match="holds no document"):
    LocalFilesSource({"train": blank}).get_dataset("train")
  not_json = _write(tmp_path / "x.jsonl", [b'{"text": "ok"}', b"{oops"])
  with pytest.raises(CorpusError, match="x.jsonl:2 is not valid JSON"):
    LocalFilesSource({"train": not_json}).get_dataset("train")
  no_field = _write(tmp_path / "y.jsonl", [b'{"content": "text"}'])
  with pytest.raises(CorpusError, match="y.jsonl:1 has no string field 'text'.*text_key"):
    LocalFilesSource({"train": no_field}).get_dataset("train")


def test_gzip_files_are_read_decompressed_and_damaged_ones_refused(tmp_path):
  lines = [json.dumps({"text": f"document {i} of a compressed corpus"}).encode()
           for i in range(3000)]
  compressed = gzip.compress(b"".join(line + b"\n" for line in lines))
  (tmp_path / "docs.jsonl.gz").write_bytes(compressed)
  source = LocalFilesSource({"train": str(tmp_path / "docs.jsonl.gz")})
  texts = _texts(source.get_dataset("train", shuffle=False))
  assert texts == [f"document {i} of a compressed corpus" for i in range(3000)]
  (tmp_path / "cut.txt.gz").write_bytes(compressed[:len(compressed) // 2])
  with pytest.raises(CorpusError, match=r"^/.*/cut.txt.gz cannot be read: the file is "
                     r"truncated \(its gzip stream ends before its end marker\); copy it "
                     r"again\.$"):
    LocalFilesSource({"train": str(tmp_path / "cut.txt.gz")}).get_dataset("train")
  _write(tmp_path / "plain.txt.gz", [b"not compressed"])
  with pytest.raises(CorpusError, match=r"plain.txt.gz cannot be read: it is a text file, not "
                     r"a gzip file \(it starts with 'not compressed'\); copy it again\.$"):
    LocalFilesSource({"train": str(tmp_path / "plain.txt.gz")}).get_dataset("train")


@pytest.fixture(scope="module")
def json_corpus(tmp_path_factory):
  path = tmp_path_factory.mktemp("hf") / "corpus.jsonl"
  _write(path, [json.dumps({"text": f"web page {i}", "url": f"u{i}"}).encode()
                for i in range(12)])
  return str(path)


def test_hugging_face_source_reads_local_json_streaming(json_corpus):
  source = HuggingFaceSource("json", data_files=json_corpus, fields=("text", "url"),
                             splits={"validation": "train"})
  examples = list(source.get_dataset("validation", shuffle=False))
  assert [e["text"].numpy().decode() for e in examples] == [f"web page {i}" for i in range(12)]
  assert examples[3]["url"].numpy() == b"u3"
  shards = [_texts(source.get_dataset("validation", shuffle=False,
                                      shard_info=seqio.ShardInfo(i, 3))) for i in range(3)]
  assert sorted(sum(shards, [])) == sorted(f"web page {i}" for i in range(12))
  assert all(len(shard) == 4 for shard in shards)
  shuffled = _texts(source.get_dataset("validation", shuffle=True, seed=1))
  assert shuffled == _texts(source.get_dataset("validation", shuffle=True, seed=1))
  assert sorted(shuffled) == sorted(f"web page {i}" for i in range(12))
  assert shuffled != [f"web page {i}" for i in range(12)]


def test_hugging_face_source_errors(json_corpus, tmp_path):
  with pytest.raises(CorpusError, match="no string field 'body'; its fields are"):
    HuggingFaceSource("json", data_files=json_corpus, fields=("body",),
                      splits={"train": "train"}).get_dataset("train")
  with pytest.raises(CorpusError, match="Cannot load the Hugging Face dataset 'parquet'"):
    HuggingFaceSource("parquet", data_files=json_corpus, fields=("text",),
                      splits={"train": "train"}).get_dataset("train")
  empty = _write(tmp_path / "empty.jsonl", [])
  for data_files in (empty, str(tmp_path / "none-*.jsonl")):
    with pytest.raises(CorpusError, match="is empty .or its data_files match no file"):
      HuggingFaceSource("json", data_files=data_files, fields=("text",),
                        splits={"train": "train"}).get_dataset("train")
