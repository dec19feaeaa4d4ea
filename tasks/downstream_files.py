"""A text-to-text task on your own files: finetune and evaluate without writing Python.

- downstream_files (or the name you give): inputs -> targets read from local .jsonl/.json
  or .tsv files (miniend_jax/data/downstream_files.py), registered when a run asks for it
  (gin_configs/data/downstream_files.gin):
  MIXTURE_OR_TASK_NAME = @downstream_files.downstream_files_task().

The input text is the model's input as given, no prefix added. Metrics, chosen by name:
"accuracy" (exact match of prediction and target, each stripped of surrounding
whitespace) and "rouge" (ROUGE-1, -2, -L and -Lsum F-measures, as the summarization
tasks); every evaluation also logs "num_examples", how many examples it scored.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Sequence

import seqio

from miniend_jax.data import metrics as metrics_lib
from miniend_jax.data.errors import DataError
from miniend_jax.data.sources import DownstreamFilesSource
from tasks import registration, summarization, vocabulary

METRICS: dict[str, Callable] = {
    "accuracy": metrics_lib.accuracy,
    "rouge": functools.partial(metrics_lib.rouge, score_keys=summarization.ROUGE_KEYS),
}


def metric_fns(names: str | Sequence[str]) -> list[Callable]:
  """The metric functions named in `names` ("accuracy,rouge" or a list), then the count."""
  if isinstance(names, str):
    names = names.split(",")
  names = [name.strip().lower() for name in names if name.strip()]
  known = " and ".join(map(repr, METRICS))
  if not names:
    raise DataError(f"DOWNSTREAM_METRICS names no metric; set it to {known} or both, "
                    "comma-separated ('accuracy,rouge').")
  for name in names:
    if name not in METRICS:
      close = difflib.get_close_matches(name, list(METRICS), n=1, cutoff=0.5)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      raise DataError(f"Unknown metric {name!r} in DOWNSTREAM_METRICS{hint}; the known "
                      f"metrics are {known}.")
  return [METRICS[name] for name in dict.fromkeys(names)] + [metrics_lib.example_count]


def stripped_text(output, example=None, is_target: bool = False) -> str:
  """seqio postprocessor: the decoded text without surrounding whitespace."""
  del example, is_target
  text = output.decode("utf-8") if isinstance(output, bytes) else output
  return text.strip()


def downstream_files_task(train_files: str | Sequence[str],
                          validation_files: str | Sequence[str] | None = None, *,
                          input_key: str = "input", target_key: str = "target",
                          metrics: str | Sequence[str] = "accuracy",
                          validation_percent: float = 10.0, encoding: str = "utf-8",
                          name: str = "downstream_files") -> str:
  """Registers the text-to-text task over local files and returns its name.

  Both splits are read once here, so a bad file (no match, wrong suffix, bad encoding, a
  malformed line, a missing field or column) or an empty split stops the run before any
  training, with a CorpusError naming the file, line and macro; an unknown metric is a
  DataError. Arguments: the macros of gin_configs/data/downstream_files.gin, lower case
  (DOWNSTREAM_TRAIN_FILES is `train_files`, DOWNSTREAM_TASK_NAME is `name`).
  """
  metric_functions = metric_fns(metrics)
  source = DownstreamFilesSource(train_files, validation_files, input_key=input_key,
                                 target_key=target_key, encoding=encoding,
                                 validation_percent=validation_percent)
  for split in source.splits:
    source.num_input_examples(split)
  registration.add_task(
      name, source=source, output_features=vocabulary.output_features(),
      preprocessors=[
          seqio.preprocessors.tokenize,
          seqio.CacheDatasetPlaceholder(),
          seqio.preprocessors.append_eos_after_trim,
      ],
      postprocess_fn=stripped_text,
      metric_fns=metric_functions)
  return name


def downstream_files_mixture(tasks: Sequence[str], *,
                             name: str = "downstream_files_mixture") -> str:
  """Registers a mixture of already registered tasks (e.g. several downstream_files_task
  results), mixed in proportion to their sizes, and returns its name: one finetuning run
  and one evaluation over all of them, each task keeping its own metrics."""
  registration.add_mixture(name, list(tasks), default_rate=seqio.mixing_rate_num_examples)
  return name
