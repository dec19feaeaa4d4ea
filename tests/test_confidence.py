"""Intervals over seeds and examples, and paired differences, against SciPy and known
binomial widths."""

import numpy as np
import pytest
from scipy import stats

from miniend_jax.evaluation import confidence


def test_seed_interval_is_students_t():
  values = [61.0, 64.5, 59.0]
  low, high = confidence.seed_interval(values)
  expected = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
  assert (low, high) == pytest.approx(expected, rel=1e-9)
  assert confidence.seed_interval([3.0]) is None


def test_example_interval_has_binomial_width():
  rng = np.random.default_rng(1)
  correct = (rng.random((1, 2000)) < 0.7).astype(float)
  estimate = confidence.estimate([correct.mean()], [correct])
  low, high = estimate.example_interval
  assert low < estimate.mean < high
  binomial = 1.96 * np.sqrt(0.7 * 0.3 / 2000)
  assert (high - low) / 2 == pytest.approx(binomial, rel=0.15)
  assert estimate.seed_interval is None
  assert estimate.interval == pytest.approx(estimate.example_interval, abs=0.01)


def test_seed_noise_widens_the_combined_interval():
  rng = np.random.default_rng(2)
  base = rng.random(500)
  shifted = [base + rng.normal(shift, 0.05, 500) for shift in (-0.1, 0.0, 0.1, 0.05)]
  estimate = confidence.estimate([s.mean() for s in shifted], [shifted])
  example_width = estimate.example_interval[1] - estimate.example_interval[0]
  combined_width = estimate.interval[1] - estimate.interval[0]
  assert combined_width > 1.5 * example_width
  assert estimate.std == pytest.approx(np.std([s.mean() for s in shifted], ddof=1))


def test_difference_pairs_examples():
  rng = np.random.default_rng(3)
  hard = rng.random(300)  # per-example difficulty shared by both models
  b = np.stack([(hard > 0.5).astype(float)] * 2)
  better = b.copy()
  better[:, :30] = 1.0  # 30 more right answers out of 300, on the same examples
  result = confidence.difference([better], [b])
  assert result.mean == pytest.approx((better.mean() - b.mean()))
  assert result.significant and result.interval[0] > 0
  same = confidence.difference([b], [b])
  assert same.mean == 0 and not same.significant


def test_shape_errors():
  with pytest.raises(ValueError, match="different examples"):
    confidence.difference([np.ones((1, 3))], [np.ones((1, 4))])
  with pytest.raises(ValueError, match="2 per-seed values but scores of 1 seeds"):
    confidence.estimate([1.0, 2.0], [np.ones((1, 4))])


def test_a_metric_over_two_tasks_averages_their_means():
  rng = np.random.default_rng(4)
  accuracy = (rng.random((2, 100)) < 0.5) * 100.0
  rouge = rng.random((2, 40)) * 30
  per_seed = (accuracy.mean(axis=1) + rouge.mean(axis=1)) / 2
  estimate = confidence.estimate(per_seed, [accuracy, rouge])
  assert estimate.mean == pytest.approx((accuracy.mean() + rouge.mean()) / 2)
  low, high = estimate.interval
  assert low < estimate.mean < high
  with pytest.raises(ValueError, match="different numbers of seeds"):
    confidence.estimate(per_seed, [accuracy, rouge[:1]])


def test_half_width_for_accuracy():
  assert confidence.half_width_for_accuracy(135) == pytest.approx(
      100 * 1.959964 * np.sqrt(0.25 / 135), rel=1e-6)
  assert confidence.half_width_for_accuracy(1000) < 3.1
