"""Span-corruption pretraining tasks on C4, with the names T5 users know.

- c4_v220_span_corruption: TFDS c4/en:3.0.1 (the T5 / t5x task of that name), read from a
  prepared TFDS data directory; nothing is downloaded.
- c4_hf_span_corruption: the same corpus from Hugging Face (allenai/c4, "en"), streamed.

- corpus_span_corruption: your own text files (.txt, one document per line, or .jsonl),
  registered when a run asks for it (gin_configs/data/corpus_files.gin):
  MIXTURE_OR_TASK_NAME = @pretraining.corpus_span_corruption().

All: inputs 512 -> 568 raw tokens, targets 114, at T5's noise density 0.15 and mean span
length 3 (set the lengths in the run's TASK_FEATURE_LENGTHS); documents are concatenated
and cut into pieces of that length, so a document longer than a sequence fills several.
`span_corruption_task` builds the same pipeline on any source with a "text" feature; the
embedded-corpus task in tasks/embedded.py uses it too.
"""

from __future__ import annotations

import functools

import seqio

from miniend_jax.data import span_corruption as span_corruption_lib
from miniend_jax.data.sources import HuggingFaceSource, LocalFilesSource, PreparedTfdsSource
from tasks import registration, vocabulary

C4_TFDS_NAME = "c4/en:3.0.1"


def span_corruption_task(name: str, source: seqio.DataSource, *, text_feature: str = "text",
                         noise_density: float = span_corruption_lib.NOISE_DENSITY,
                         mean_noise_span_length: float = (
                             span_corruption_lib.MEAN_NOISE_SPAN_LENGTH)) -> seqio.Task:
  """Registers a span-corruption task over the documents in `source`'s `text_feature`."""
  return registration.add_task(
      name, source=source, output_features=vocabulary.output_features(),
      preprocessors=[
          functools.partial(seqio.preprocessors.rekey, key_map={"targets": text_feature}),
          seqio.preprocessors.tokenize,
          seqio.CacheDatasetPlaceholder(),
          functools.partial(span_corruption_lib.span_corruption, noise_density=noise_density,
                            mean_noise_span_length=mean_noise_span_length),
          seqio.preprocessors.append_eos_after_trim,
      ],
      metric_fns=[])


def corpus_span_corruption(files, *, text_key: str = "text", encoding: str = "utf-8",
                           validation_percent: float = 5.0,
                           name: str = "corpus_span_corruption") -> str:
  """Registers span corruption over local corpus files and returns the task's name.

  `files`: glob pattern(s), split into train/validation by a hash of each document's id,
  or {split: pattern(s)}. A missing file, undecodable bytes, a JSON line without
  `text_key` or an empty split is a CorpusError naming the file, line and setting.
  """
  span_corruption_task(name, LocalFilesSource(files, text_key=text_key, encoding=encoding,
                                              validation_percent=validation_percent))
  return name


def register(*, tfds_data_dir: str | None = None, c4_tfds_name: str = C4_TFDS_NAME) -> None:
  """Registers the C4 span-corruption tasks (again, replacing earlier registrations)."""
  span_corruption_task(
      "c4_v220_span_corruption",
      PreparedTfdsSource(c4_tfds_name, tfds_data_dir=tfds_data_dir,
                         splits=("train", "validation")))
  span_corruption_task(
      "c4_hf_span_corruption",
      HuggingFaceSource("allenai/c4", name="en", fields=("text",),
                        splits={"train": "train", "validation": "validation"}))


register()
