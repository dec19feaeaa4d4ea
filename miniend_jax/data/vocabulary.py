"""SentencePiece models as seqio vocabularies with T5's 100 sentinels.

Any SentencePiece model with T5's special ids (PAD 0, EOS 1, UNK 2) works, a public T5
`spiece.model` unchanged: seqio appends the sentinels after the model's pieces in reverse
order, so <extra_id_0> is the highest id (32099 for T5's 32000 pieces) and the vocabulary
holds pieces + 100 ids. Models are trained by `sentencepiece_training`.

`DeferredVocabulary` lets registered tasks name their vocabulary before it is decided: it
asks a function for the model path each time it is used, so a gin binding made after
`import tasks` (or a default model trained on first use) still takes effect.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import seqio
import tensorflow as tf
import sentencepiece

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
