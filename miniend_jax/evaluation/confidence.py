"""How far a measured difference can be trusted: intervals over seeds and eval examples.

A quickstart-sized comparison has two sources of noise: the training seed (initialisation
and data order) and the finite set of evaluation examples. Every metric here is a mean of
per-example scores (a correct answer scores 1, a summary its ROUGE-L, a held-out document
its loss), measured for each seed on the same examples, so both can be resampled:

- over seeds: Student's t interval of the per-seed means (needs two seeds or more);
- over examples: percentile bootstrap of the seed-averaged per-example scores;
- both (the interval reported, and the one significance is read from): a hierarchical
  bootstrap that draws seeds with replacement, then examples with replacement.

A difference between two models (e.g. a distilled student minus the scratch student) is
bootstrapped the same way, pairing the examples (both models answer the same ones) and
drawing each model's seeds independently. It is significant at 95% when its interval
excludes 0. With few seeds the seed part is underestimated (a bootstrap of N values has
(N - 1) / N of their variance), so the report also gives the spread of the seeds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy import stats

LEVEL = 0.95
RESAMPLES = 2000


@dataclasses.dataclass(frozen=True)
class Estimate:
  """A metric over seeds: its mean, the seeds' spread and 95% intervals.

  `seed_interval` is None with one seed; `example_interval` and `interval` are None when
  no per-example scores were given.
  """

  mean: float
  per_seed: tuple[float, ...]
  std: float
  seed_interval: tuple[float, float] | None
  example_interval: tuple[float, float] | None
  interval: tuple[float, float] | None

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Difference:
  """A - B: the mean difference, its 95% interval and whether it excludes 0."""

  mean: float
  interval: tuple[float, float]
  significant: bool

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


Parts = Sequence[Sequence[Sequence[float]]]


def _as_parts(parts: Parts) -> list[np.ndarray]:
  """Each part [seeds, examples] float64, all with the same number of seeds."""
  matrices = [np.asarray(part, np.float64) for part in parts]
  if not matrices:
    raise ValueError("No per-example scores given.")
  for matrix in matrices:
    if matrix.ndim != 2 or matrix.shape[0] < 1 or matrix.shape[1] < 1:
      raise ValueError(f"Per-example scores must be [seeds, examples] with both >= 1, got "
                       f"shape {matrix.shape}.")
  if len({m.shape[0] for m in matrices}) != 1:
    raise ValueError(f"Parts scored by different numbers of seeds: "
                     f"{[m.shape[0] for m in matrices]}.")
  return matrices


def _percentiles(samples: np.ndarray) -> tuple[float, float]:
  tail = 100 * (1 - LEVEL) / 2
  low, high = np.percentile(samples, [tail, 100 - tail])
  return float(low), float(high)


def _example_draws(parts: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
  """[RESAMPLES, examples] indices drawn with replacement, one array per part."""
  return [rng.integers(0, m.shape[1], size=(RESAMPLES, m.shape[1])) for m in parts]


def _hierarchical_means(parts: list[np.ndarray], rng: np.random.Generator,
                        draws: list[np.ndarray]) -> np.ndarray:
  """[RESAMPLES] metric values (mean over parts of each part's mean) over seeds drawn
  with replacement and the given example draws."""
  seeds = parts[0].shape[0]
  seed_draws = rng.integers(0, seeds, size=(RESAMPLES, seeds))
  total = np.zeros(RESAMPLES)
  for matrix, draw in zip(parts, draws):
    per_example = matrix[seed_draws].mean(axis=1)  # [resamples, examples]
    total += np.take_along_axis(per_example, draw, axis=1).mean(axis=1)
  return total / len(parts)


def seed_interval(values: Sequence[float]) -> tuple[float, float] | None:
  """Student's t 95% interval of the mean of per-seed values (None for one value)."""
  values = np.asarray(values, np.float64)
  if values.size < 2:
    return None
  half = stats.t.ppf((1 + LEVEL) / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(
      values.size)
  return float(values.mean() - half), float(values.mean() + half)


def estimate(per_seed: Sequence[float], parts: Parts | None = None, *,
             seed: int = 0) -> Estimate:
  """The metric's Estimate from its per-seed values and, optionally, the per-example
  scores behind them: `parts`, one [seeds, examples] array per task, the metric being the
  mean over parts of each part's mean (one part for a single task's metric)."""
  values = np.asarray(per_seed, np.float64)
  std = float(values.std(ddof=1)) if values.size > 1 else 0.0
  example, both = None, None
  if parts is not None:
    matrices = _as_parts(parts)
    if matrices[0].shape[0] != values.size:
      raise ValueError(f"{values.size} per-seed values but scores of "
                       f"{matrices[0].shape[0]} seeds.")
    rng = np.random.default_rng(seed)
    draws = _example_draws(matrices, rng)
    example = _percentiles(sum(m.mean(axis=0)[d].mean(axis=1)
                               for m, d in zip(matrices, draws)) / len(matrices))
    both = _percentiles(_hierarchical_means(matrices, rng, draws))
  return Estimate(mean=float(values.mean()), per_seed=tuple(float(v) for v in values),
                  std=std, seed_interval=seed_interval(values), example_interval=example,
                  interval=both)


def difference(a: Parts, b: Parts, *, seed: int = 0) -> Difference:
  """metric(a) - metric(b) with its hierarchical-bootstrap 95% interval; `a` and `b` are
  per-example scores (parts of [seeds, examples]) on the same examples; the two models'
  seed counts may differ."""
  a_parts, b_parts = _as_parts(a), _as_parts(b)
  if [m.shape[1] for m in a_parts] != [m.shape[1] for m in b_parts]:
    raise ValueError(f"The two models were scored on different examples "
                     f"({[m.shape[1] for m in a_parts]} vs {[m.shape[1] for m in b_parts]}).")
  rng = np.random.default_rng(seed)
  draws = _example_draws(a_parts, rng)
  samples = (_hierarchical_means(a_parts, rng, draws)
             - _hierarchical_means(b_parts, rng, draws))
  low, high = _percentiles(samples)
  mean = (np.mean([m.mean() for m in a_parts]) - np.mean([m.mean() for m in b_parts]))
  return Difference(mean=float(mean), interval=(low, high),
                    significant=bool(low > 0 or high < 0))


def half_width_for_accuracy(examples: int, accuracy: float = 0.5) -> float:
  """Half-width, in points, of the normal 95% interval of an accuracy measured on
  `examples` examples (the widest, at 50%, by default): what an eval set can resolve."""
  z = stats.norm.ppf((1 + LEVEL) / 2)
  return float(100 * z * np.sqrt(accuracy * (1 - accuracy) / max(examples, 1)))
