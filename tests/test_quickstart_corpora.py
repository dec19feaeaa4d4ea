"""The quickstart's corpora: a directory of files becomes the same four tasks the embedded
corpus gives, registered by the stages' own gin lines."""

import json
import os

import gin
import pytest
import seqio

from miniend_jax.quickstart import corpora, sizes


def _write(path, records):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    for record in records:
      f.write(json.dumps(record) + "\n")


@pytest.fixture()
def corpus_dir(tmp_path):
  words = "the quick brown fox jumps over the lazy dog".split()
  for split, count in (("train", 12), ("validation", 4)):
    _write(tmp_path / "pretraining" / f"{split}.jsonl",
           [{"text": " ".join(words[i % 9:] + words[:i % 9]) * 3} for i in range(count)])
    _write(tmp_path / "classification" / f"{split}.jsonl",
           [{"input": f"section: {w}", "target": "commands" if i % 2 else "file_formats"}
            for i, w in enumerate(words[:count])])
    _write(tmp_path / "summarization" / f"{split}.jsonl",
           [{"input": f"summarize: {w} " * 5, "target": w} for w in words[:count]])
  return str(tmp_path)


def test_embedded_is_the_default():
  assert corpora.corpus(None) is corpora.EMBEDDED
  assert corpora.corpus("embedded") is corpora.EMBEDDED
  assert corpora.EMBEDDED.downstream_metrics == {
      "embedded_topic_classification": "accuracy", "embedded_summarization": "rougeL"}


def _forget_files_tasks():
  for name in ("files_span_corruption", "files_classification", "files_summarization"):
    seqio.TaskRegistry.remove(name)
  seqio.MixtureRegistry.remove("files_downstream")


def test_a_files_corpus_registers_through_its_gin_lines(corpus_dir):
  """The stages' gin lines register the tasks; `register` parses the same lines."""
  corpus = corpora.corpus(corpus_dir)
  header = ["from __gin__ import dynamic_registration", "import tasks"]
  for lines, expected in ((corpus.pretraining_bindings(), "files_span_corruption"),
                          (corpus.downstream_bindings(), "files_downstream")):
    gin.clear_config()
    _forget_files_tasks()
    gin.parse_config("\n".join(header + lines))
    assert gin.query_parameter("%MIXTURE_OR_TASK_NAME").scoped_configurable_fn() == expected
  gin.clear_config()
  _forget_files_tasks()
  with gin.unlock_config():
    gin.parse_config("\n".join(header))
  corpus.register()
  gin.clear_config()
  assert {"files_span_corruption", "files_classification",
          "files_summarization"} <= set(seqio.TaskRegistry.names())
  mixture = seqio.get_mixture_or_task("files_downstream")
  assert sorted(t.name for t in mixture.tasks) == ["files_classification",
                                                  "files_summarization"]
  classification = seqio.get_mixture_or_task("files_classification")
  assert classification.source.num_input_examples("validation") == 4
  assert [m.__name__ for m in classification.metric_fns] == ["accuracy", "example_count"]
  lines = list(corpus.sentencepiece_lines())
  assert len(lines) == 12  # the pretraining train split only


def test_a_corpus_directory_missing_files_names_the_flag(corpus_dir):
  os.remove(os.path.join(corpus_dir, "summarization", "validation.jsonl"))
  with pytest.raises(sizes.QuickstartError,
                     match=r"--corpus_dir=.* lacks summarization/validation.jsonl"):
    corpora.corpus(corpus_dir)
