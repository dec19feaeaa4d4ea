"""Tasks on the embedded corpus (Python's own docstrings and pydoc topics): the whole
pipeline, pretraining to fine-tuning, runs offline.

- embedded_span_corruption: T5 span corruption over every document.
- embedded_summarization: "summarize: <docstring body>" -> its one-line summary; ROUGE.
- embedded_topic_classification: "topic: <docstring>" -> the standard-library package
  that defines it, one of embedded_corpus.TOPIC_PACKAGES; accuracy.

All three split the corpus the same way, by a hash of each document's id, so no validation
document of any of them is a training document of another. Sizes: `python -m
miniend_jax.data.embedded_corpus`.
"""

from __future__ import annotations

import functools

import seqio
import tensorflow as tf

from miniend_jax.data import embedded_corpus, metrics
from miniend_jax.data.sources import InMemorySource
from tasks import glue, pretraining, registration, summarization, vocabulary

SPLITS = ("train", "validation")


def corpus_examples(split: str) -> list[dict[str, str]]:
  """{"id", "text"} for every document of `split`."""
  return [{"id": d.id, "text": d.text} for d in embedded_corpus.split_documents(split)]


@seqio.map_over_dataset
def topic_text_to_text(example):
  """{"text", "label"} -> {"inputs": "topic: <text>", "targets": package}."""
  return {"inputs": tf.strings.join(["topic:", example["text"]], separator=" "),
          "targets": example["label"]}


def register() -> None:
  """Registers the embedded-corpus tasks (again, replacing earlier registrations)."""
  pretraining.span_corruption_task(
      "embedded_span_corruption", InMemorySource(corpus_examples, SPLITS))
  summarization.summarization_task(
      "embedded_summarization",
      InMemorySource(embedded_corpus.summarization_examples, SPLITS),
      document_key="document", summary_key="summary")
  registration.add_task(
      "embedded_topic_classification",
      source=InMemorySource(embedded_corpus.topic_examples, SPLITS),
      output_features=vocabulary.output_features(),
      preprocessors=[
          topic_text_to_text,
          seqio.preprocessors.tokenize,
          seqio.CacheDatasetPlaceholder(),
          seqio.preprocessors.append_eos_after_trim,
      ],
      postprocess_fn=functools.partial(glue.label_to_class_id,
                                        label_names=embedded_corpus.TOPIC_PACKAGES),
      metric_fns=[metrics.accuracy])
  # Both offline downstream tasks, mixed by size: one finetuning run, both metrics.
  registration.add_mixture(
      "embedded_downstream", ["embedded_summarization", "embedded_topic_classification"],
      default_rate=seqio.mixing_rate_num_examples)


register()
