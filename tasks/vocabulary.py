"""The vocabulary of every registered task, decided when data is first read.

All tasks share one `DeferredVocabulary`, so teacher, student and every task agree on
token ids. It asks `sentencepiece_model_path()` for the model at each use; that function is
gin-configurable, so a run picks its vocabulary in its gin file, after `import tasks`:

    tasks.vocabulary.sentencepiece_model_path.path = "/checkpoints/t5_1_1_base/spiece.model"

(the run files bind it to the SENTENCEPIECE_MODEL macro, so `--gin.SENTENCEPIECE_MODEL=
\"/path/spiece.model\"` sets it; or `sentencepiece_model_path.path = ...`; in Python:
`gin.bind_parameter("tasks.vocabulary.sentencepiece_model_path.path", path)`). Without a
path, the default is a SentencePiece model of `embedded_vocab_size` pieces trained on the
embedded corpus on first use (a few seconds) and cached under `cache_dir` (default
~/.cache/miniend_jax/sentencepiece/, or $XDG_CACHE_HOME/miniend_jax), keyed by the corpus'
digest and the size, so every later run and every host reuses the same file.
"""

from __future__ import annotations

import gin
import seqio

from miniend_jax.data import embedded_corpus, sentencepiece_training
from miniend_jax.data.vocabulary import DeferredVocabulary

EMBEDDED_VOCAB_SIZE = 8000


@gin.configurable
def sentencepiece_model_path(path: str | None = None, *,
                             embedded_vocab_size: int = EMBEDDED_VOCAB_SIZE,
                             cache_dir: str | None = None) -> str:
  """The SentencePiece model the tasks use: `path`, or the cached embedded-corpus model."""
  if path:
    return path
  return sentencepiece_training.cached_sentencepiece_model(
      corpus_name="embedded", corpus_digest=embedded_corpus.corpus_digest(),
      lines=embedded_corpus.sentencepiece_lines, vocab_size=embedded_vocab_size,
      cache_dir=cache_dir)


VOCABULARY = DeferredVocabulary(sentencepiece_model_path)


def output_features() -> dict[str, seqio.Feature]:
  """Text-to-text features: "inputs" and "targets" in the task vocabulary, EOS appended."""
  return {"inputs": seqio.Feature(VOCABULARY, add_eos=True),
          "targets": seqio.Feature(VOCABULARY, add_eos=True)}
