"""Metric functions against scikit-learn, SciPy and hand-counted ROUGE; the GLUE score."""

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sk

from miniend_jax.data import metrics


def _random_labels(seed, classes, n=60):
  rng = np.random.default_rng(seed)
  return rng.integers(0, classes, n), rng.integers(0, classes, n)


@pytest.mark.parametrize("seed", range(4))
def test_classification_metrics_match_scikit_learn(seed):
  targets, predictions = _random_labels(seed, classes=2)
  assert metrics.accuracy(targets, predictions)["accuracy"] == pytest.approx(
      100 * sk.accuracy_score(targets, predictions))
  assert metrics.f1(targets, predictions)["f1"] == pytest.approx(
      100 * sk.f1_score(targets, predictions))
  assert metrics.matthews_corrcoef(targets, predictions)["matthews_corrcoef"] == (
      pytest.approx(100 * sk.matthews_corrcoef(targets, predictions)))
  targets, predictions = _random_labels(seed, classes=3)
  predictions[::7] = metrics.INVALID
  assert metrics.matthews_corrcoef(targets, predictions)["matthews_corrcoef"] == (
      pytest.approx(100 * sk.matthews_corrcoef(targets, predictions)))


def test_hand_made_classification_cases():
  # An invalid prediction is wrong: a false positive against 0, a false negative against 1.
  # TP 1, predicted positive 2 (one real, one flipped), actual positive 2 -> F1 = 2/4.
  assert metrics.f1([1, 0, 1, 0], [1, -1, -1, 0])["f1"] == pytest.approx(50.0)
  assert metrics.accuracy(["positive", "negative"], ["positive", "positive"])[
      "accuracy"] == 50.0
  assert metrics.matthews_corrcoef([0, 1, 1], [1, 1, 1])["matthews_corrcoef"] == 0.0
  assert metrics.matthews_corrcoef([0, 1, 1, 0], [0, 1, 1, 0])["matthews_corrcoef"] == 100.0
  with pytest.raises(ValueError, match="equally long"):
    metrics.accuracy([1, 0], [1])


def test_correlations_match_scipy_with_ties():
  rng = np.random.default_rng(0)
  targets = np.round(rng.uniform(0, 5, 40) * 5) / 5  # STS-B-like, many ties.
  predictions = np.round((targets + rng.normal(0, 1, 40)) * 5) / 5
  assert metrics.pearson_corrcoef(targets, predictions)["pearson_corrcoef"] == pytest.approx(
      100 * stats.pearsonr(targets, predictions).statistic)
  assert metrics.spearman_corrcoef(targets, predictions)["spearman_corrcoef"] == (
      pytest.approx(100 * stats.spearmanr(targets, predictions).statistic))
  assert metrics.spearman_corrcoef([1, 2, 2, 3], [10, 20, 20, 30])[
      "spearman_corrcoef"] == pytest.approx(100)
  # By hand: centred x = (-1, 0, 1), y = (-4/3, -1/3, 5/3); r = 3 / sqrt(2 * 42/9).
  assert metrics.pearson_corrcoef([1, 2, 3], [1, 2, 4])["pearson_corrcoef"] == (
      pytest.approx(100 * 3 / (2 * 42 / 9) ** 0.5))
  assert metrics.pearson_corrcoef([1, 1, 1], [1, 2, 4])["pearson_corrcoef"] == 0.0


def test_rouge_on_hand_counted_overlaps():
  scores = metrics.rouge(["the cat sat on the mat"], ["the cat lay on a mat"])
  # Unigrams: the, cat, on, mat match (4 of 6 each side); bigrams: "the cat" (1 of 5);
  # longest common subsequence: the cat on mat (4).
  assert scores == pytest.approx({"rouge1": 100 * 4 / 6, "rouge2": 100 * 1 / 5,
                                  "rougeL": 100 * 4 / 6})
  # Porter stemming: "cats running" and "cat run" are the same words.
  assert metrics.rouge(["cats running"], ["cat run"], score_keys=("rouge1",)) == {
      "rouge1": pytest.approx(100)}
  # ROUGE-Lsum takes the LCS sentence by sentence (newlines).
  lsum = metrics.rouge(["a b\nc d"], ["c d\na b"], score_keys=("rougeL", "rougeLsum"))
  assert lsum["rougeLsum"] == pytest.approx(100) and lsum["rougeL"] == pytest.approx(50)
  # Averaged over examples.
  assert metrics.rouge(["a b", "c d"], ["a b", "x y"], score_keys=("rouge1",))[
      "rouge1"] == pytest.approx(50)


def test_glue_score_averages_headline_metrics():
  per_task = {
      "glue_cola_v002": {"matthews_corrcoef": 40.0, "accuracy": 99.0},
      "glue_sst2_v002": {"accuracy": 90.0},
      "mrpc": {"f1": 88.0, "accuracy": 80.0},
      "qqp": {"f1": 70.0, "accuracy": 99.0},
      "stsb": {"pearson_corrcoef": 86.0, "spearman_corrcoef": 84.0},
      "mnli_matched": {"accuracy": 80.0},
      "mnli_mismatched": {"accuracy": 81.0},
      "qnli": {"accuracy": 89.0},
      "rte": {"accuracy": 60.0},
  }
  paper = metrics.glue_score(per_task, tasks=metrics.PAPER_GLUE_TASKS)
  assert paper["glue_score"] == pytest.approx((90 + 88 + 86 + 70 + 80 + 81 + 89 + 60) / 8)
  assert paper["mrpc"] == 88.0 and "cola" not in paper
  everything = metrics.glue_score(per_task, stsb_metric="mean")
  assert everything["cola"] == 40.0 and everything["stsb"] == 85.0
  assert everything["glue_score"] == pytest.approx(
      (40 + 90 + 88 + 70 + 85 + 80 + 81 + 89 + 60) / 9)
  assert metrics.glue_score({"stsb": per_task["stsb"]}, stsb_metric="spearman")[
      "glue_score"] == 84.0
  with pytest.raises(ValueError, match=r"No metrics for GLUE task\(s\) \['wnli'\]"):
    metrics.glue_score(per_task, tasks=["sst2", "wnli"])
  with pytest.raises(ValueError, match="not a GLUE task"):
    metrics.glue_score({"squad": {"f1": 1.0}})
  with pytest.raises(ValueError, match="stsb_metric"):
    metrics.glue_score(per_task, stsb_metric="kendall")
