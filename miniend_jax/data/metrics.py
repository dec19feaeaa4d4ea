"""Task metrics as seqio metric functions, `fn(targets, predictions) -> {name: value}`.

Values are percentages (x100), as T5 reports them. Classification metrics take class ids
after postprocessing, where -1 marks a prediction that named no known label: it counts as
wrong everywhere (for F1: a false negative against a positive target, a false positive
against a negative one). Our own NumPy implementations; the tests check them against
scikit-learn and SciPy. ROUGE is Google's rouge-score package (the reference
implementation T5 uses), with Porter stemming.

The GLUE score is the mean over tasks of one headline metric each: Matthews correlation for
CoLA, F1 for MRPC and QQP, Pearson correlation for STS-B by default (`stsb_metric`
selects "spearman" or "mean" of both instead), accuracy elsewhere; MNLI matched and
mismatched count as two tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.stats

from miniend_jax.data.errors import DataError

INVALID = -1


def _as_arrays(targets, predictions) -> tuple[np.ndarray, np.ndarray]:
  targets, predictions = np.asarray(targets), np.asarray(predictions)
  if targets.shape != predictions.shape or targets.ndim != 1 or not targets.size:
    raise ValueError(f"Metrics need two equally long, non-empty lists; got "
                     f"{targets.shape} targets and {predictions.shape} predictions.")
  return targets, predictions


def accuracy(targets: Sequence, predictions: Sequence) -> dict[str, float]:
  """Share of exact matches (labels, class ids or strings)."""
  targets, predictions = _as_arrays(targets, predictions)
  return {"accuracy": 100 * float(np.mean(targets == predictions))}


def example_count(targets: Sequence, predictions: Sequence) -> dict[str, int]:
  """{"num_examples": the number of examples scored}: an evaluation's size, logged beside
  its scores (a count, not a percentage)."""
  targets, predictions = _as_arrays(targets, predictions)
  return {"num_examples": int(targets.size)}


def f1(targets: Sequence[int], predictions: Sequence[int], *,
       positive_label: int = 1) -> dict[str, float]:
  """Binary F1 of `positive_label`; an invalid prediction (-1) counts as wrong."""
  targets, predictions = _as_arrays(targets, predictions)
  negative = np.where(targets == positive_label, INVALID, positive_label)
  predictions = np.where(predictions == INVALID, negative, predictions)
  true_positive = np.sum((predictions == positive_label) & (targets == positive_label))
  predicted = np.sum(predictions == positive_label)
  actual = np.sum(targets == positive_label)
  if not predicted + actual:
    return {"f1": 0.0}
  return {"f1": 100 * float(2 * true_positive / (predicted + actual))}


def matthews_corrcoef(targets: Sequence[int], predictions: Sequence[int]) -> dict[str, float]:
  """Matthews correlation coefficient (multi-class form; 0 when undefined)."""
  targets, predictions = _as_arrays(targets, predictions)
  labels = np.union1d(targets, predictions)
  confusion = np.zeros((labels.size, labels.size))
  np.add.at(confusion, (np.searchsorted(labels, targets), np.searchsorted(labels, predictions)),
            1)
  samples, correct = confusion.sum(), np.trace(confusion)
  true_counts, predicted_counts = confusion.sum(axis=1), confusion.sum(axis=0)
  numerator = correct * samples - true_counts @ predicted_counts
  denominator = np.sqrt((samples**2 - predicted_counts @ predicted_counts)
                        * (samples**2 - true_counts @ true_counts))
  return {"matthews_corrcoef": 100 * float(numerator / denominator) if denominator else 0.0}


def _correlation(statistic, x: np.ndarray, y: np.ndarray) -> float:
  """scipy.stats' `statistic` of x and y; 0 when either is constant (undefined)."""
  if np.ptp(x) == 0 or np.ptp(y) == 0:
    return 0.0
  return float(statistic(x, y)[0])


def pearson_corrcoef(targets: Sequence[float], predictions: Sequence[float]
                     ) -> dict[str, float]:
  """Pearson correlation of two float lists."""
  targets, predictions = _as_arrays(targets, predictions)
  return {"pearson_corrcoef": 100 * _correlation(scipy.stats.pearsonr, targets.astype(float),
                                                 predictions.astype(float))}


def spearman_corrcoef(targets: Sequence[float], predictions: Sequence[float]
                      ) -> dict[str, float]:
  """Spearman rank correlation (Pearson of average ranks)."""
  targets, predictions = _as_arrays(targets, predictions)
  return {"spearman_corrcoef": 100 * _correlation(scipy.stats.spearmanr,
                                                  targets.astype(float),
                                                  predictions.astype(float))}


def rouge_per_example(targets: Sequence[str], predictions: Sequence[str], *,
                      score_keys: Sequence[str] = ("rouge1", "rouge2", "rougeL")
                      ) -> dict[str, np.ndarray]:
  """{key: [examples] F-measures x 100}, each example scored on its own."""
  from rouge_score import rouge_scorer  # Imports nltk; only summarization needs it.

  if len(targets) != len(predictions) or not targets:
    raise ValueError(f"ROUGE needs two equally long, non-empty lists; got {len(targets)} "
                     f"targets and {len(predictions)} predictions.")
  scorer = rouge_scorer.RougeScorer(list(score_keys), use_stemmer=True)
  scores = [scorer.score(target, prediction)
            for target, prediction in zip(targets, predictions)]
  return {key: 100 * np.array([s[key].fmeasure for s in scores]) for key in score_keys}


def rouge(targets: Sequence[str], predictions: Sequence[str], *,
          score_keys: Sequence[str] = ("rouge1", "rouge2", "rougeL")) -> dict[str, float]:
  """Mean ROUGE F-measures. "rougeLsum" treats newlines as sentence breaks."""
  per_example = rouge_per_example(targets, predictions, score_keys=score_keys)
  return {key: float(np.mean(values)) for key, values in per_example.items()}


GLUE_HEADLINE_METRICS = {
    "cola": "matthews_corrcoef", "sst2": "accuracy", "mrpc": "f1", "qqp": "f1",
    "stsb": "pearson_corrcoef", "mnli_matched": "accuracy",
    "mnli_mismatched": "accuracy", "qnli": "accuracy", "rte": "accuracy",
    "wnli": "accuracy"}
# The MiniEnD paper's GLUE score (docs/method.md, "GLUE score"): no CoLA, no WNLI.
PAPER_GLUE_TASKS = ("sst2", "mrpc", "stsb", "qqp", "mnli_matched", "mnli_mismatched", "qnli",
                    "rte")
_STSB_METRICS = ("pearson", "spearman", "mean")


def _glue_task(name: str) -> str:
  """'glue_mrpc_v002' -> 'mrpc'; 'mrpc' -> 'mrpc'."""
  if name.startswith("glue_") and name.endswith("_v002"):
    name = name[len("glue_"):-len("_v002")]
  if name not in GLUE_HEADLINE_METRICS:
    raise ValueError(f"{name!r} is not a GLUE task with a headline metric; known: "
                     f"{sorted(GLUE_HEADLINE_METRICS)}.")
  return name


def glue_score(metrics_by_task: Mapping[str, Mapping[str, float]], *,
               tasks: Sequence[str] | None = None,
               stsb_metric: str = "pearson") -> dict[str, float]:
  """{"glue_score": mean headline metric, "<task>": headline metric per task}.

  Args:
    metrics_by_task: each task's metrics as its metric functions returned them, keyed by
      "mrpc" or "glue_mrpc_v002" style names.
    tasks: the tasks to average (default: all given). A listed task without metrics is an
      error, so a score is never silently computed over fewer tasks.
    stsb_metric: "pearson", "spearman" or "mean" (of the two) for STS-B.
  """
  if stsb_metric not in _STSB_METRICS:
    raise DataError(f"stsb_metric must be one of {_STSB_METRICS}, got {stsb_metric!r}.")
  given = {_glue_task(name): metrics for name, metrics in metrics_by_task.items()}
  wanted = [_glue_task(t) for t in tasks] if tasks is not None else sorted(given)
  missing = [t for t in wanted if t not in given]
  if missing or not wanted:
    raise ValueError(f"No metrics for GLUE task(s) {missing or wanted}.")
  headline = {}
  for task in wanted:
    metrics = given[task]
    if task == "stsb" and stsb_metric != "pearson":
      spearman = metrics["spearman_corrcoef"]
      headline[task] = (spearman if stsb_metric == "spearman"
                        else (spearman + metrics["pearson_corrcoef"]) / 2)
    else:
      headline[task] = metrics[GLUE_HEADLINE_METRICS[task]]
  return {"glue_score": float(np.mean(list(headline.values()))), **headline}
