"""Summarization tasks, T5 text-to-text: "summarize: <document>" -> the summary.

- cnn_dailymail_v002: TFDS cnn_dailymail:3.4.0 (article -> highlights), T5's task name.
- xsum_v110: TFDS xsum:1.1.0 (document -> summary).
- cnn_dailymail_hf / xsum_hf: the same from Hugging Face (abisee/cnn_dailymail 3.0.0,
  EdinburghNLP/xsum).

Metrics: ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum F-measures (rouge-score, stemmed);
CNN/DailyMail highlights are newline-separated sentences, which ROUGE-Lsum uses.
TFDS datasets are read from a prepared TFDS data directory; nothing is downloaded.
"""

from __future__ import annotations

import functools

import seqio
import tensorflow as tf

from miniend_jax.data import metrics
from miniend_jax.data.sources import HuggingFaceSource, PreparedTfdsSource
from tasks import registration, vocabulary

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@seqio.map_over_dataset
def summarize(example, *, document_key: str, summary_key: str):
  """{document_key, summary_key} -> {"inputs": "summarize: <document>", "targets": summary}."""
  return {"inputs": tf.strings.join(["summarize:", example[document_key]], separator=" "),
          "targets": example[summary_key]}


def summarization_task(name: str, source: seqio.DataSource, *, document_key: str,
                       summary_key: str) -> seqio.Task:
  """Registers a summarization task reading `document_key` and `summary_key` of `source`."""
  return registration.add_task(
      name, source=source, output_features=vocabulary.output_features(),
      preprocessors=[
          functools.partial(summarize, document_key=document_key, summary_key=summary_key),
          seqio.preprocessors.tokenize,
          seqio.CacheDatasetPlaceholder(),
          seqio.preprocessors.append_eos_after_trim,
      ],
      metric_fns=[functools.partial(metrics.rouge, score_keys=ROUGE_KEYS)])


def register(*, tfds_data_dir: str | None = None) -> None:
  """Registers the summarization tasks (again, replacing earlier registrations)."""
  splits = ("train", "validation", "test")
  summarization_task(
      "cnn_dailymail_v002",
      PreparedTfdsSource("cnn_dailymail:3.4.0", tfds_data_dir=tfds_data_dir, splits=splits),
      document_key="article", summary_key="highlights")
  summarization_task(
      "xsum_v110",
      PreparedTfdsSource("xsum:1.1.0", tfds_data_dir=tfds_data_dir, splits=splits),
      document_key="document", summary_key="summary")
  hf_splits = {split: split for split in splits}
  summarization_task(
      "cnn_dailymail_hf",
      HuggingFaceSource("abisee/cnn_dailymail", name="3.0.0", splits=hf_splits,
                        fields=("article", "highlights")),
      document_key="article", summary_key="highlights")
  summarization_task(
      "xsum_hf",
      HuggingFaceSource("EdinburghNLP/xsum", splits=hf_splits, fields=("document", "summary")),
      document_key="document", summary_key="summary")


register()
