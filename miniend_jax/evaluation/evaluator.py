"""Evaluate checkpoints on a seqio task or mixture (t5x's eval.py) and write predictions
(t5x's infer.py).

`evaluate` runs seqio.Evaluator with our predict and score functions and writes, under
EVAL_OUTPUT_DIR, `<task>-metrics.jsonl` (seqio's JSON logger) and TensorBoard scalars.
Given a run directory it evaluates its latest checkpoint, or every one with
`checkpoint_steps="all"`. `infer` writes one JSON line per example: inputs, prediction
and, optionally, the targets' log-likelihood.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping

import seqio

from miniend_jax.convert.checkpoint_loading import load_model
from miniend_jax.convert.model_vocabulary import check_model_vocabulary
from miniend_jax.convert.step_directories import step_directories, step_of
from miniend_jax.convert.validation import CheckpointError
from miniend_jax.data.dataset import get_mixture_or_task, provider_vocabulary
from miniend_jax.errors import MiniendError, OutputExistsError
from miniend_jax.evaluation.model_fns import make_predict_fn, make_score_fn
from miniend_jax.model.config import T5Config

class EvaluationError(MiniendError, ValueError):
  """An evaluation setting cannot work; the message names it."""


def checkpoints_to_evaluate(checkpoint_path: str, checkpoint_steps: str = "latest"
                            ) -> list[tuple[int, str]]:
  """[(step, path)]: the checkpoint itself, or a run directory's latest or all."""
  if not os.path.isdir(checkpoint_path):
    raise CheckpointError(f"CHECKPOINT_PATH {checkpoint_path!r} does not exist.")
  if checkpoint_steps not in ("latest", "all"):
    raise EvaluationError(
        f"checkpoint_steps must be 'latest' or 'all', got {checkpoint_steps!r}.")
  step = step_of(checkpoint_path)
  if step is not None:
    return [(step, checkpoint_path)]
  steps = step_directories(checkpoint_path)
  if not steps:  # a Hugging Face or t5x directory: one model, no step
    return [(0, checkpoint_path)]
  return steps if checkpoint_steps == "all" else steps[-1:]


def _check_task(provider: seqio.Task | seqio.Mixture) -> None:
  if not any(task.metric_fns or task.score_metric_fns or task.predict_metric_fns
             for task in seqio.get_subtasks(provider)):
    raise EvaluationError(
        f"{provider.name!r} has no metric functions: evaluation needs a task "
        "registered with metric_fns (use infer to only write predictions).")


@contextlib.contextmanager
def _registered_for_evaluator(provider: seqio.Task | seqio.Mixture) -> Iterator[str]:
  """A name under which seqio.Evaluator (which takes names only) finds `provider`: the
  registered one, or for a provider with an explicit vocabulary, an alias registered while
  the Evaluator is built (it keeps the Task objects; their names, and so the
  <task>-metrics.jsonl files, are unchanged)."""
  registered = seqio.get_mixture_or_task(provider.name)
  if registered is provider:
    yield provider.name
    return
  registry = seqio.MixtureRegistry if isinstance(provider, seqio.Mixture) else seqio.TaskRegistry
  alias = f"{provider.name}@miniend_jax.evaluator.{id(provider)}"
  registry.add_provider(alias, provider)
  try:
    yield alias
  finally:
    registry.remove(alias)


class InferenceEvaluator:
  """seqio inference evaluation of in-memory parameters (t5x's evaluation during training).

  Built by gin for a training run (runs/finetune.gin binds it to the trainer with
  EVAL_PERIOD); the seqio.Evaluator, with its cached task datasets, is made on first use.
  `vocabulary`: the vocabulary the task reads (None: the one it was registered with).
  """

  def __init__(self, mixture_or_task_name: str, task_feature_lengths: Mapping[str, int], *,
               batch_size: int = 32, split: str = "validation", num_beams: int = 1,
               num_examples: int | None = None, vocabulary: seqio.Vocabulary | None = None):
    self.provider = get_mixture_or_task(mixture_or_task_name, split=split,
                                        vocabulary=vocabulary)
    _check_task(self.provider)
    self.mixture_or_task_name = mixture_or_task_name
    self.task_feature_lengths = dict(task_feature_lengths)
    self.batch_size = batch_size
    self.split = split
    self.num_beams = num_beams
    self.num_examples = num_examples
    self._evaluator = None
    self._output_dir = None

  def __call__(self, config: T5Config, params, step: int, output_dir: str
               ) -> dict[str, dict[str, float]]:
    """{task: {metric: value}}; appends to <task>-metrics.jsonl in `output_dir`."""
    if self._evaluator is None or output_dir != self._output_dir:
      self._output_dir = output_dir
      with _registered_for_evaluator(self.provider) as name:
        self._evaluator = seqio.Evaluator(
            mixture_or_task_name=name,
            feature_converter=seqio.EncDecFeatureConverter(pack=False),
            eval_split=self.split, sequence_length=self.task_feature_lengths,
            num_examples=self.num_examples,
            logger_cls=(seqio.PyLoggingLogger, seqio.TensorBoardLogger, seqio.JSONLogger),
            log_dir=output_dir)
    predict_fn = make_predict_fn(config, params, batch_size=self.batch_size,
                                 max_decode_length=self.task_feature_lengths["targets"],
                                 num_beams=self.num_beams)
    score_fn = make_score_fn(config, params, batch_size=self.batch_size)
    metrics, _ = self._evaluator.evaluate(compute_metrics=True, step=step,
                                          predict_fn=predict_fn, score_fn=score_fn)
    return metrics.result()


def evaluate(*, checkpoint_path: str, mixture_or_task_name: str, eval_output_dir: str,
             task_feature_lengths: Mapping[str, int], batch_size: int = 32,
             split: str = "validation", num_beams: int = 1,
             checkpoint_steps: str = "latest", model_config: T5Config | None = None,
             num_examples: int | None = None, vocabulary: seqio.Vocabulary | None = None
             ) -> dict[int, dict[str, dict[str, float]]]:
  """{step: {task: {metric: value}}} for the chosen checkpoints.

  Args:
    checkpoint_path: CHECKPOINT_PATH: a run directory, one checkpoint_<step>/, a Hugging
      Face directory or a t5x checkpoint (then give model_config).
    mixture_or_task_name: a registered seqio task or mixture with metrics.
    eval_output_dir: EVAL_OUTPUT_DIR: <task>-metrics.jsonl and TensorBoard events.
    task_feature_lengths: {"inputs": ..., "targets": ...}; targets bound the decode length.
    batch_size: examples per decoding batch.
    split: the evaluation split.
    num_beams: 1 decodes greedily, more runs beam search.
    checkpoint_steps: "latest" or "all" checkpoints of a run directory.
    model_config: the architecture (required for t5x checkpoints only).
    num_examples: evaluate only the first N examples of each task (smoke runs).
    vocabulary: VOCABULARY, the vocabulary the task reads (None: its registered one); a
      checkpoint whose directory carries another SentencePiece model is refused.
  """
  inference = InferenceEvaluator(mixture_or_task_name, task_feature_lengths,
                                 batch_size=batch_size, split=split, num_beams=num_beams,
                                 num_examples=num_examples, vocabulary=vocabulary)
  check_model_vocabulary(checkpoint_path, provider_vocabulary(inference.provider),
                         "CHECKPOINT_PATH")
  results = {}
  for step, path in checkpoints_to_evaluate(checkpoint_path, checkpoint_steps):
    config, params = load_model(path, model_config)
    results[step] = inference(config, params, step, eval_output_dir)
  return results


def infer(*, checkpoint_path: str, mixture_or_task_name: str, output_file: str,
          task_feature_lengths: Mapping[str, int], batch_size: int = 32,
          split: str = "validation", num_beams: int = 1, with_scores: bool = False,
          model_config: T5Config | None = None, num_examples: int | None = None,
          overwrite: bool = False, vocabulary: seqio.Vocabulary | None = None) -> int:
  """Write {"inputs", "prediction"[, "score"]} per example as JSON lines; -> count.
  `vocabulary` as for `evaluate`."""
  if os.path.exists(output_file) and not overwrite:
    raise OutputExistsError(
        f"{output_file} exists; choose another OUTPUT_FILE or set overwrite=True.")
  provider = get_mixture_or_task(mixture_or_task_name, split=split, vocabulary=vocabulary)
  vocabulary = provider_vocabulary(provider)
  check_model_vocabulary(checkpoint_path, vocabulary, "CHECKPOINT_PATH")
  config, params = load_model(checkpoint_path, model_config)
  lengths = dict(task_feature_lengths)
  dataset = provider.get_dataset(sequence_length=lengths, split=split, shuffle=False,
                                 num_epochs=1)
  if num_examples is not None:
    dataset = dataset.take(num_examples)
  examples = list(dataset.as_numpy_iterator())
  converted = seqio.EncDecFeatureConverter(pack=False)(dataset, lengths).enumerate()
  predictions = dict(make_predict_fn(config, params, batch_size=batch_size,
                                     max_decode_length=lengths["targets"],
                                     num_beams=num_beams)(converted))
  scores = (dict(make_score_fn(config, params, batch_size=batch_size)(converted))
            if with_scores else {})
  os.makedirs(os.path.dirname(os.path.abspath(output_file)), exist_ok=True)
  temporary = output_file + ".tmp"
  with open(temporary, "w", encoding="utf-8") as f:
    for index, example in enumerate(examples):
      inputs = example.get("inputs_pretokenized", example["inputs"])
      record = {"inputs": inputs.decode() if isinstance(inputs, bytes)
                else vocabulary.decode([int(t) for t in inputs]),
                "prediction": vocabulary.decode(predictions[index])}
      if with_scores:
        record["score"] = scores[index]
      f.write(json.dumps(record, ensure_ascii=False) + "\n")
  os.replace(temporary, output_file)
  return len(examples)
