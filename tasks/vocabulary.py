"""The vocabulary every task is registered with: the embedded-corpus default.

All tasks share one vocabulary, so teacher, student and every task agree on token ids. It is
`miniend_jax.data.vocabulary.task_vocabulary()`: a SentencePiece model of 8000 pieces trained
on the embedded corpus on first use (a few seconds) and cached, so importing `tasks` costs
nothing. A run that reads another vocabulary passes it explicitly: `DatasetConfig.vocabulary`,
`evaluate(vocabulary=...)`, `infer(vocabulary=...)`, `InferenceEvaluator(vocabulary=...)`,
which runs/*.gin bind to `VOCABULARY = @vocabulary.task_vocabulary()`, set by
`--gin.SENTENCEPIECE_MODEL=\\"/path/spiece.model\\"`; in Python,
`dataset.get_mixture_or_task(name, vocabulary=...)` gives the task reading it. The
registered tasks themselves never change.
"""

from __future__ import annotations

import seqio

from miniend_jax.data.vocabulary import task_vocabulary

VOCABULARY = task_vocabulary()


def output_features() -> dict[str, seqio.Feature]:
  """Text-to-text features: "inputs" and "targets" in the task vocabulary, EOS appended."""
  return {"inputs": seqio.Feature(VOCABULARY, add_eos=True),
          "targets": seqio.Feature(VOCABULARY, add_eos=True)}
