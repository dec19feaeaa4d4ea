"""GLUE as text-to-text tasks (docs/data.md, "GLUE"): glue_<task>_v002, glue_v002_proportional.

Inputs are "<benchmark> <field>: <text> <field>: <text>" with the fields in alphabetical
order and the text as given, e.g. "mnli hypothesis: ... premise: ..."; targets are label
names ("negative"/"positive", ...), "<unk>" for an unlabelled example (label -1, the test
splits). STS-B targets are the similarity rounded to the nearest 0.2, printed with one
decimal ("3.8"). AX, the diagnostic set, is cast as MNLI, as T5 does.

Each task reads TFDS glue/<config>:2.0.0 from a prepared TFDS data directory (nothing is
downloaded). Predictions are mapped back to class ids (-1 for text that names no label) or
floats before scoring. Metrics: CoLA Matthews correlation; MRPC and QQP F1 and accuracy;
STS-B Pearson and Spearman; AX Matthews correlation; accuracy elsewhere.

glue_v002_proportional mixes every task except WNLI in proportion to its training set
size; the MNLI matched/mismatched evaluation tasks and AX have rate 0 (no training data):
they are there so that evaluating the mixture on "validation" covers MNLI-m and MNLI-mm.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import seqio
import tensorflow as tf

from miniend_jax.data import metrics
from miniend_jax.data.sources import PreparedTfdsSource
from tasks import registration, vocabulary

UNLABELLED_TARGET = "<unk>"
_MNLI_LABELS = ("entailment", "neutral", "contradiction")
_SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class GlueTask:
  """One GLUE task: its TFDS config, prefix, labels (None for regression) and metrics."""

  config: str
  benchmark: str
  label_names: tuple[str, ...] | None
  metric_fns: tuple[Callable, ...]
  splits: tuple[str, ...] = _SPLITS
  train_examples: int = 0  # Mixing rate in glue_v002_proportional.

  @property
  def task_name(self) -> str:
    return f"glue_{self.config}_v002"


GLUE_TASKS: tuple[GlueTask, ...] = (
    GlueTask("cola", "cola", ("unacceptable", "acceptable"), (metrics.matthews_corrcoef,),
             train_examples=8_551),
    GlueTask("sst2", "sst2", ("negative", "positive"), (metrics.accuracy,),
             train_examples=67_349),
    GlueTask("mrpc", "mrpc", ("not_equivalent", "equivalent"), (metrics.f1, metrics.accuracy),
             train_examples=3_668),
    GlueTask("qqp", "qqp", ("not_duplicate", "duplicate"), (metrics.f1, metrics.accuracy),
             train_examples=363_846),
    GlueTask("stsb", "stsb", None, (metrics.pearson_corrcoef, metrics.spearman_corrcoef),
             train_examples=5_749),
    GlueTask("mnli", "mnli", _MNLI_LABELS, (metrics.accuracy,),
             splits=("train", "validation_matched", "validation_mismatched", "test_matched",
                     "test_mismatched"), train_examples=392_702),
    GlueTask("mnli_matched", "mnli", _MNLI_LABELS, (metrics.accuracy,),
             splits=("validation", "test")),
    GlueTask("mnli_mismatched", "mnli", _MNLI_LABELS, (metrics.accuracy,),
             splits=("validation", "test")),
    GlueTask("qnli", "qnli", ("entailment", "not_entailment"), (metrics.accuracy,),
             train_examples=104_743),
    GlueTask("rte", "rte", ("entailment", "not_entailment"), (metrics.accuracy,),
             train_examples=2_490),
    GlueTask("wnli", "wnli", ("not_entailment", "entailment"), (metrics.accuracy,),
             train_examples=635),
    GlueTask("ax", "mnli", _MNLI_LABELS, (metrics.matthews_corrcoef,), splits=("test",)),
)


def stsb_target(label: tf.Tensor) -> tf.Tensor:
  """The STS-B score rounded to the nearest 0.2 (half to even, float32), e.g. "3.8"."""
  return tf.strings.as_string(tf.round(label * 5) / 5, precision=1)


@seqio.map_over_dataset
def glue_text_to_text(example, *, benchmark: str, label_names: Sequence[str] | None):
  """A GLUE example -> {"inputs", "targets", "idx"} in T5's text-to-text format."""
  fields = sorted(key for key in example if key not in ("idx", "label"))
  parts = [benchmark]
  for field in fields:
    parts += [f"{field}:", example[field]]
  label = example["label"]
  if label_names is None:   # STS-B's labels are numbers: a test example's -1 is "-1.0"
    target = stsb_target(label)
  else:   # a class: an unlabelled (test) example's -1 is T5's "<unk>"
    target = tf.where(label < 0, UNLABELLED_TARGET,
                      tf.gather(tf.constant(label_names), tf.maximum(label, 0)))
  return {"inputs": tf.strings.join(parts, separator=" "), "targets": target,
          "idx": example["idx"]}


def _text(output) -> str:
  return output.decode("utf-8") if isinstance(output, bytes) else output


def label_to_class_id(output, example=None, is_target: bool = False, *,
                      label_names: Sequence[str]) -> int:
  """seqio postprocessor: a label name -> its class id; anything else -> -1."""
  del example, is_target
  text = _text(output).strip()
  return label_names.index(text) if text in label_names else metrics.INVALID


def string_to_float(output, example=None, is_target: bool = False) -> float:
  """seqio postprocessor for STS-B: "3.8" -> 3.8; text that is no number -> -1.0."""
  del example, is_target
  try:
    return float(_text(output))
  except ValueError:
    return -1.0


def register(*, tfds_data_dir: str | None = None) -> None:
  """Registers the GLUE tasks and glue_v002_proportional (again, replacing)."""
  for task in GLUE_TASKS:
    postprocess = (string_to_float if task.label_names is None else
                   functools.partial(label_to_class_id, label_names=task.label_names))
    registration.add_task(
        task.task_name,
        source=PreparedTfdsSource(f"glue/{task.config}:2.0.0", tfds_data_dir=tfds_data_dir,
                                  splits=task.splits),
        output_features=vocabulary.output_features(),
        preprocessors=[
            functools.partial(glue_text_to_text, benchmark=task.benchmark,
                              label_names=task.label_names),
            seqio.preprocessors.tokenize,
            seqio.CacheDatasetPlaceholder(),
            seqio.preprocessors.append_eos_after_trim,
        ],
        postprocess_fn=postprocess,
        metric_fns=list(task.metric_fns))
  registration.add_mixture(
      "glue_v002_proportional",
      [(task.task_name, float(task.train_examples)) for task in GLUE_TASKS
       if task.config != "wnli"])


register()
