"""Where a quickstart run's text comes from: the embedded corpus, or a directory of files.

A corpus gives the quickstart four things: lines to train the SentencePiece vocabulary
on, a span-corruption task for pretraining, and two downstream tasks (a classification
task scored by accuracy, a summarization task scored by ROUGE-L) mixed into one finetuning
mixture. Each training stage's experiment file registers what it reads (so that
`python -m miniend_jax.train --gin_file=DIR/gin/<stage>.gin` reruns it in a new process);
`register` parses the same lines in this process for the validation and evaluation stages.

A files corpus is a directory laid out as

    DIR/pretraining/train.jsonl, validation.jsonl       {"text": ...} per line
    DIR/classification/train.jsonl, validation.jsonl    {"input": ..., "target": ...}
    DIR/summarization/train.jsonl, validation.jsonl     {"input": ..., "target": ...}

(tools/man_pages_corpus.py writes one from a machine's manual pages).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import gin

from miniend_jax.data import corpus_files, embedded_corpus
from miniend_jax.quickstart.sizes import QuickstartError

FILES_LAYOUT = {"pretraining": "text", "classification": "input/target",
                "summarization": "input/target"}


@dataclasses.dataclass(frozen=True)
class Corpus:
  """The tasks of one corpus. `directory` is None for the embedded corpus."""

  name: str
  directory: str | None
  pretraining_task: str
  classification_task: str
  summarization_task: str
  downstream_mixture: str

  @property
  def downstream_metrics(self) -> dict[str, str]:
    """Each downstream task's headline metric; their mean is the score."""
    return {self.classification_task: "accuracy", self.summarization_task: "rougeL"}

  def _files(self, kind: str) -> dict[str, str]:
    return {split: os.path.join(self.directory, kind, f"{split}.jsonl")
            for split in ("train", "validation")}

  def sentencepiece_lines(self) -> Iterator[str]:
    if self.directory is None:
      yield from embedded_corpus.sentencepiece_lines()
      return
    files = self._files("pretraining")
    for _, text in corpus_files.read_documents([files["train"]]):
      yield text

  def pretraining_bindings(self) -> list[str]:
    """Gin lines that register the pretraining task and name it MIXTURE_OR_TASK_NAME."""
    if self.directory is None:
      return [f"MIXTURE_OR_TASK_NAME = {self.pretraining_task!r}"]
    return ["from tasks import pretraining",
            "MIXTURE_OR_TASK_NAME = @pretraining.corpus_span_corruption()",
            f"pretraining.corpus_span_corruption.files = {self._files('pretraining')!r}",
            f"pretraining.corpus_span_corruption.name = {self.pretraining_task!r}"]

  def downstream_bindings(self) -> list[str]:
    """Gin lines that register the downstream mixture and name it MIXTURE_OR_TASK_NAME."""
    if self.directory is None:
      return [f"MIXTURE_OR_TASK_NAME = {self.downstream_mixture!r}"]
    lines = ["from tasks import downstream_files",
             "MIXTURE_OR_TASK_NAME = @downstream_files.downstream_files_mixture()",
             f"downstream_files.downstream_files_mixture.name = {self.downstream_mixture!r}",
             "downstream_files.downstream_files_mixture.tasks = ["
             "@classification/downstream_files.downstream_files_task(), "
             "@summarization/downstream_files.downstream_files_task()]"]
    for kind, task, metric in (("classification", self.classification_task, "accuracy"),
                               ("summarization", self.summarization_task, "rouge")):
      files = self._files(kind)
      scope = f"{kind}/downstream_files.downstream_files_task"
      lines += [f"{scope}.train_files = {files['train']!r}",
                f"{scope}.validation_files = {files['validation']!r}",
                f"{scope}.metrics = {metric!r}", f"{scope}.name = {task!r}"]
    return lines

  def register(self) -> None:
    """Registers this corpus's tasks in this process by parsing the same gin lines as the
    stages' experiment files (the library itself never imports `tasks`). Call it where
    gin's configuration may be added to (the pipeline's `register_outside_stages`)."""
    for lines in (self.pretraining_bindings(), self.downstream_bindings()):
      with gin.unlock_config():
        gin.parse_config(["from __gin__ import dynamic_registration", "import tasks", *lines])
      name = gin.query_parameter("%MIXTURE_OR_TASK_NAME")
      if isinstance(name, gin.config.ConfigurableReference):  # @register_fn(): call it
        name.scoped_configurable_fn()


EMBEDDED = Corpus(name="embedded", directory=None,
                  pretraining_task="embedded_span_corruption",
                  classification_task="embedded_topic_classification",
                  summarization_task="embedded_summarization",
                  downstream_mixture="embedded_downstream")


def corpus(directory: str | None) -> Corpus:
  """The embedded corpus (None or "embedded"), or the files corpus in `directory`, whose
  layout is checked here (--corpus_dir names the flag to change)."""
  if directory in (None, "", "embedded"):
    return EMBEDDED
  directory = os.path.abspath(directory)
  missing = [os.path.join(kind, f"{split}.jsonl") for kind in FILES_LAYOUT
             for split in ("train", "validation")
             if not os.path.isfile(os.path.join(directory, kind, f"{split}.jsonl"))]
  if missing:
    raise QuickstartError(
        f"--corpus_dir={directory} lacks {', '.join(missing)}: a corpus directory holds "
        "pretraining/, classification/ and summarization/, each with train.jsonl and "
        "validation.jsonl (see miniend_jax/quickstart/corpora.py).")
  return Corpus(name=directory, directory=directory, pretraining_task="files_span_corruption",
                classification_task="files_classification",
                summarization_task="files_summarization",
                downstream_mixture="files_downstream")
