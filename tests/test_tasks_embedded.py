"""The embedded-corpus tasks: sizes, splits without leakage, text-to-text formats."""

import seqio

from miniend_jax.data import embedded_corpus
from miniend_jax.data.dataset import get_mixture_or_task


def _source_texts(task_name, split, key):
  source = seqio.TaskRegistry.get(task_name).source
  return [(e["id"].numpy().decode(), e[key].numpy().decode())
          for e in source.get_dataset(split, shuffle=False)]


def test_sizes_are_reported(task_vocabulary, capsys):
  sizes = embedded_corpus.statistics(task_vocabulary.encode)
  with capsys.disabled():
    print("\nembedded corpus sizes (test vocabulary, 1000 pieces):", sizes)
  train, validation = sizes["train"], sizes["validation"]
  assert train["documents"] + validation["documents"] == len(embedded_corpus.documents())
  assert train["documents"] > 4000 and validation["documents"] > 400
  assert train["characters"] > 1_300_000
  assert 2 < train["characters"] / train["tokens"] < 6  # Subword pieces, not characters.
  assert train["summarization_pairs"] > 1000 and validation["summarization_pairs"] > 100
  assert set(validation["topic_examples_per_label"]) == set(embedded_corpus.TOPIC_PACKAGES)
  assert min(validation["topic_examples_per_label"].values()) >= 5


def test_task_splits_do_not_leak():
  for task_name, key in (("embedded_span_corruption", "text"),
                         ("embedded_summarization", "document"),
                         ("embedded_topic_classification", "text")):
    train = _source_texts(task_name, "train", key)
    validation = _source_texts(task_name, "validation", key)
    assert validation and len(train) > 5 * len(validation)
    assert {i for i, _ in train}.isdisjoint(i for i, _ in validation), task_name
    assert {t for _, t in train}.isdisjoint(t for _, t in validation), task_name
  # No validation document of any task is a pretraining training document.
  pretraining_train = {i for i, _ in _source_texts("embedded_span_corruption", "train", "text")}
  for task_name, key in (("embedded_summarization", "document"),
                         ("embedded_topic_classification", "text")):
    assert pretraining_train.isdisjoint(
        i for i, _ in _source_texts(task_name, "validation", key)), task_name


def test_downstream_examples_are_text_to_text(task_vocabulary):
  lengths = {"inputs": 512, "targets": 64}
  summary = next(iter(get_mixture_or_task(
      "embedded_summarization", vocabulary=task_vocabulary).get_dataset(
          lengths, "validation", shuffle=False)))
  first = embedded_corpus.summarization_examples("validation")[0]
  assert summary["inputs_pretokenized"].numpy().decode() == "summarize: " + first["document"]
  assert summary["targets_pretokenized"].numpy().decode() == first["summary"]
  topic_task = get_mixture_or_task("embedded_topic_classification",
                                   vocabulary=task_vocabulary)
  topic = next(iter(topic_task.get_dataset(lengths, "validation", shuffle=False)))
  first = embedded_corpus.topic_examples("validation")[0]
  assert topic["inputs_pretokenized"].numpy().decode() == "topic: " + first["text"]
  assert topic["targets_pretokenized"].numpy().decode() == first["label"]
  assert topic_task.postprocess_fn(first["label"]) == embedded_corpus.TOPIC_PACKAGES.index(
      first["label"])
