"""The quickstart's figures, from the runs' metrics.jsonl files.

- training_losses.png: every model's cross-entropy on its training targets per step (the
  number all objectives share), and each run's own objective loss.
- gradient_norms.png: the global gradient norm of the encoder's and of the decoder's
  parameters per step for every student: the MiniEnD paper's stability figure (the
  implicit objectives' encoder norm spikes, the explicit ones' stays flat).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")  # files only, no display
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _series(history: Sequence[Mapping[str, float]], key: str) -> tuple[list, list]:
  points = [(r["step"], r[key]) for r in history if key in r]
  return [s for s, _ in points], [v for _, v in points]


def _finish(plt, figure, axes, titles: Sequence[str], path: str) -> None:
  """Titles, log-scale steps axes, legends; save to `path` and free the figure."""
  for axis, title in zip(axes, titles):
    axis.set_title(title)
    axis.set_xlabel("step")
    axis.set_yscale("log")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path, dpi=110)
  plt.close(figure)


def training_losses(histories: Mapping[str, Sequence[Mapping[str, float]]], path: str) -> None:
  """{run name: metrics records} -> a two-panel PNG."""
  plt = _pyplot()
  figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
  for name, history in histories.items():
    left.plot(*_series(history, "cross_ent_loss"), label=name, linewidth=1)
    right.plot(*_series(history, "loss"), label=name, linewidth=1)
  _finish(plt, figure, (left, right), ("cross-entropy on the training targets",
                                        "training loss (each run's objective)"), path)


def gradient_norms(histories: Mapping[str, Sequence[Mapping[str, float]]], path: str) -> None:
  """{student run name: metrics records} -> encoder and decoder gradient norms per step."""
  plt = _pyplot()
  figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
  stacks = ("encoder", "decoder")
  for axis, stack in zip(axes, stacks):
    for name, history in histories.items():
      axis.plot(*_series(history, f"grad_norm/{stack}"), label=name, linewidth=1)
  _finish(plt, figure, axes,
          [f"gradient norm of the {stack} parameters" for stack in stacks], path)
