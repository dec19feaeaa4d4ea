"""SentencePiece models as seqio vocabularies with T5's 100 sentinels.

Any SentencePiece model with T5's special ids (PAD 0, EOS 1, UNK 2) works, a public T5
`spiece.model` unchanged: seqio appends the sentinels after the model's pieces in reverse
order, so <extra_id_0> is the highest id (32099 for T5's 32000 pieces) and the vocabulary
holds pieces + 100 ids. Models are trained by `sentencepiece_training`.

A run's vocabulary is explicit: `task_vocabulary(...)` builds it (from gin's
SENTENCEPIECE_MODEL, or the embedded-corpus default), the run's DatasetConfig and evaluators
carry it, `dataset.get_mixture_or_task(..., vocabulary=...)` puts the task in it, and the
trainer checks it against the models' vocab_size. `DeferredVocabulary` only defers the
*training* of the default model to its first use (so `import tasks` trains nothing); its
model path is a fixed function of its settings, never looked up in global state.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

import seqio
import tensorflow as tf
import sentencepiece

from miniend_jax.data import embedded_corpus, sentencepiece_training
from miniend_jax.data.errors import VocabularyError

T5_EXTRA_IDS = 100
_T5_SPECIAL_IDS = {"pad_id": 0, "eos_id": 1, "unk_id": 2}


def check_sentencepiece_model(path: str) -> None:
  """Raises VocabularyError unless `path` is a SentencePiece model with T5's special ids."""
  if not tf.io.gfile.exists(path):
    raise VocabularyError(f"No SentencePiece model at {path!r}: check the vocabulary path.")
  with tf.io.gfile.GFile(path, "rb") as stream:
    processor = sentencepiece.SentencePieceProcessor()
    try:
      processor.LoadFromSerializedProto(stream.read())
    except (RuntimeError, TypeError):
      raise VocabularyError(f"{path!r} is not a SentencePiece model file.") from None
  wrong = {name: getattr(processor, name)() for name, want in _T5_SPECIAL_IDS.items()
           if getattr(processor, name)() != want}
  if wrong:
    raise VocabularyError(
        f"{path!r} does not use T5's special ids (pad 0, eos 1, unk 2); it has {wrong}. "
        "Train one with `python -m miniend_jax.data.sentencepiece_training`.")


def load_vocabulary(path: str, extra_ids: int = T5_EXTRA_IDS) -> seqio.SentencePieceVocabulary:
  """The SentencePiece model at `path` as a seqio vocabulary with `extra_ids` sentinels."""
  check_sentencepiece_model(path)
  return seqio.SentencePieceVocabulary(path, extra_ids=extra_ids)


class DeferredVocabulary(seqio.Vocabulary):
  """A SentencePiece vocabulary whose model path is asked of `model_path()` at each use.

  Every method delegates to `load_vocabulary(model_path())`; the loaded vocabulary is
  kept until the path changes. `model_path` must be picklable (a module-level function),
  since gin deep-copies vocabularies.
  """

  def __init__(self, model_path: Callable[[], str], extra_ids: int = T5_EXTRA_IDS):
    super().__init__(extra_ids=extra_ids)
    self._model_path = model_path
    self._loaded: tuple[str, seqio.SentencePieceVocabulary] | None = None

  @property
  def resolved(self) -> seqio.SentencePieceVocabulary:
    """The vocabulary of the model that `model_path()` names now."""
    path = os.fspath(self._model_path())
    if self._loaded is None or self._loaded[0] != path:
      self._loaded = (path, load_vocabulary(path, extra_ids=self.extra_ids))
    return self._loaded[1]

  @property
  def sentencepiece_model_file(self) -> str:
    return self.resolved.sentencepiece_model_file

  @property
  def tokenizer(self):
    return self.resolved.tokenizer

  @property
  def sp_model(self) -> bytes | None:
    return self.resolved.sp_model

  @property
  def bos_id(self) -> int | None:
    return self.resolved.bos_id

  @property
  def eos_id(self) -> int | None:
    return self.resolved.eos_id

  @property
  def unk_id(self) -> int | None:
    return self.resolved.unk_id

  @property
  def vocab_size(self) -> int:
    return self.resolved.vocab_size

  @property
  def _base_vocab_size(self) -> int:
    return self.resolved.vocab_size - self.extra_ids

  def _encode(self, s: str) -> Sequence[int]:
    return self.resolved.encode(s)

  def _decode(self, ids):
    return self.resolved.decode(ids)

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    return self.resolved.encode_tf(s)

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    return self.resolved.decode_tf(ids)

  def decode(self, ids):
    return self.resolved.decode(ids)

  def decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    return self.resolved.decode_tf(ids)

  def __getstate__(self):
    return {"_extra_ids": self._extra_ids, "_model_path": self._model_path, "_loaded": None}

  def __eq__(self, other) -> bool:
    return (isinstance(other, DeferredVocabulary) and self._model_path == other._model_path
            and self.extra_ids == other.extra_ids)

  def __hash__(self) -> int:
    return hash((self._model_path, self.extra_ids))

  def __str__(self) -> str:
    return f"DeferredVocabulary(model_path={self._model_path!r}, extra_ids={self.extra_ids})"


EMBEDDED_VOCAB_SIZE = 8000


@dataclasses.dataclass(frozen=True)
class EmbeddedCorpusModel:
  """The path of a SentencePiece model of `vocab_size` pieces trained on the embedded
  corpus on first use (a few seconds) and cached under `cache_dir` (default
  ~/.cache/miniend_jax/sentencepiece/, or $XDG_CACHE_HOME/miniend_jax), keyed by the
  corpus' digest and the size: every later run and every host reuses the same file.
  Compares by value, so vocabularies built from equal settings are equal."""

  vocab_size: int = EMBEDDED_VOCAB_SIZE
  cache_dir: str | None = None

  def __call__(self) -> str:
    return sentencepiece_training.cached_sentencepiece_model(
        corpus_name="embedded", corpus_digest=embedded_corpus.corpus_digest(),
        lines=embedded_corpus.sentencepiece_lines, vocab_size=self.vocab_size,
        cache_dir=self.cache_dir)


def task_vocabulary(sentencepiece_model: str | None = None, *,
                    embedded_vocab_size: int = EMBEDDED_VOCAB_SIZE,
                    cache_dir: str | None = None) -> seqio.Vocabulary:
  """A run's vocabulary: the SentencePiece model at `sentencepiece_model` (gin:
  SENTENCEPIECE_MODEL, e.g. a public T5's spiece.model), or, when None, the embedded-corpus
  model of `embedded_vocab_size` pieces (EMBEDDED_VOCAB_SIZE), trained on first use."""
  if sentencepiece_model:
    return load_vocabulary(os.fspath(sentencepiece_model))
  return DeferredVocabulary(EmbeddedCorpusModel(embedded_vocab_size, cache_dir))


def same_vocabulary(a: seqio.Vocabulary, b: seqio.Vocabulary) -> bool:
  """Whether two vocabularies map text to the same ids (same SentencePiece model file
  contents and sentinels), whatever their classes."""
  if a is b or a == b:
    return True
  try:
    return a.extra_ids == b.extra_ids and a.sp_model == b.sp_model
  except AttributeError:
    return False
