"""SentencePiece models as seqio vocabularies with T5's 100 sentinels.

Any SentencePiece model with T5's special ids (PAD 0, EOS 1, UNK 2) works, a public T5
`spiece.model` unchanged: seqio appends the sentinels after the model's pieces in reverse
order, so <extra_id_0> is the highest id (32099 for T5's 32000 pieces) and the vocabulary
holds pieces + 100 ids. Models are trained by `sentencepiece_training`.

`task_vocabulary` is the vocabulary a run passes explicitly to its data and evaluation
(runs/*.gin bind `VOCABULARY = @vocabulary.task_vocabulary()` from the SENTENCEPIECE_MODEL
macro): a given model file, or by default a model trained on the embedded corpus. Both are
`DeferredVocabulary`s: the model is loaded (or, for the embedded default, trained and
cached) on first use, so naming a vocabulary costs nothing, and two vocabularies with the
same setting compare equal. `same_vocabulary` compares vocabularies by their models.
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
from miniend_jax.unreadable_files import describe, truncated

T5_EXTRA_IDS = 100
EMBEDDED_VOCAB_SIZE = 8000
_T5_SPECIAL_IDS = {"pad_id": 0, "eos_id": 1, "unk_id": 2}


def check_sentencepiece_model(path: str) -> None:
  """Raises VocabularyError unless `path` is a SentencePiece model with T5's special ids."""
  if not tf.io.gfile.exists(path):
    raise VocabularyError(f"No SentencePiece model at {path!r}: check the vocabulary path.")
  with tf.io.gfile.GFile(path, "rb") as stream:
    contents = stream.read()
  processor = sentencepiece.SentencePieceProcessor()
  try:
    processor.LoadFromSerializedProto(contents)
  except (RuntimeError, TypeError) as error:
    reason = describe(path, error, file_format="SentencePiece model", contents=contents,
                      damage=_protobuf_damage(contents),
                      fix="copy it again, or train one with `python -m "
                          "miniend_jax.data.sentencepiece_training`")
    raise VocabularyError(f"SentencePiece model {path!r} cannot be read: {reason}.") from None
  wrong = {name: getattr(processor, name)() for name, want in _T5_SPECIAL_IDS.items()
           if getattr(processor, name)() != want}
  if wrong:
    raise VocabularyError(
        f"{path!r} does not use T5's special ids (pad 0, eos 1, unk 2); it has {wrong}. "
        "Train one with `python -m miniend_jax.data.sentencepiece_training`.")


def _protobuf_damage(data: bytes) -> str | None:
  """"the file is truncated (...)" when the last field of the protobuf message `data` (a
  SentencePiece model is one) runs past its end; None when it does not, or when `data` is
  not a protobuf message."""
  position = 0
  while position < len(data):
    key, position = _varint(data, position)
    if key is None:
      break
    field, wire_type = key >> 3, key & 7
    if field == 0 or wire_type not in (0, 1, 2, 5):
      return None   # a wire type no message uses: another format
    if wire_type == 0:
      _, position = _varint(data, position)
    elif wire_type == 2:
      length, position = _varint(data, position)
      position += length or 0
    else:
      position += 8 if wire_type == 1 else 4
  if position > len(data):
    return truncated(position, len(data), "its last record needs at least")
  return None


def _varint(data: bytes, position: int) -> tuple[int | None, int]:
  """(the protobuf varint at `position`, the position after it); (None, past the end) when
  it runs past the end of `data`."""
  value = shift = 0
  while position < len(data):
    byte = data[position]
    value |= (byte & 0x7F) << shift
    position += 1
    if byte < 0x80:
      return value, position
    shift += 7
  return None, len(data) + 1


def load_vocabulary(path: str, extra_ids: int = T5_EXTRA_IDS) -> seqio.SentencePieceVocabulary:
  """The SentencePiece model at `path` as a seqio vocabulary with `extra_ids` sentinels."""
  check_sentencepiece_model(path)
  return seqio.SentencePieceVocabulary(path, extra_ids=extra_ids)


@dataclasses.dataclass(frozen=True)
class ModelFile:
  """A SentencePiece model file, as a `DeferredVocabulary`'s model path."""

  path: str

  def __call__(self) -> str:
    return self.path


@dataclasses.dataclass(frozen=True)
class EmbeddedCorpusModel:
  """The SentencePiece model of `vocab_size` pieces trained on the embedded corpus, as a
  `DeferredVocabulary`'s model path: trained on first use (a few seconds) and cached under
  `cache_dir` (default ~/.cache/miniend_jax/sentencepiece/, or $XDG_CACHE_HOME/miniend_jax),
  keyed by the corpus' digest and the size, so every later run and every host reuses it."""

  vocab_size: int = EMBEDDED_VOCAB_SIZE
  cache_dir: str | None = None

  def __call__(self) -> str:
    return sentencepiece_training.cached_sentencepiece_model(
        corpus_name="embedded", corpus_digest=embedded_corpus.corpus_digest(),
        lines=embedded_corpus.sentencepiece_lines, vocab_size=self.vocab_size,
        cache_dir=self.cache_dir)


def task_vocabulary(sentencepiece_model: str | None = None, *,
                    embedded_vocab_size: int = EMBEDDED_VOCAB_SIZE,
                    cache_dir: str | None = None) -> DeferredVocabulary:
  """The vocabulary of `sentencepiece_model` (a path, checked now), or without one the
  embedded-corpus model of `embedded_vocab_size` pieces (`EmbeddedCorpusModel`)."""
  if sentencepiece_model:
    path = os.fspath(sentencepiece_model)
    check_sentencepiece_model(path)
    return DeferredVocabulary(ModelFile(path))
  return DeferredVocabulary(EmbeddedCorpusModel(embedded_vocab_size, cache_dir))


def loaded(vocabulary: seqio.Vocabulary) -> seqio.Vocabulary:
  """The loaded vocabulary behind a `DeferredVocabulary`; any other as it is."""
  return vocabulary.resolved if isinstance(vocabulary, DeferredVocabulary) else vocabulary


def same_vocabulary(a: seqio.Vocabulary, b: seqio.Vocabulary) -> bool:
  """Whether `a` and `b` map text to the same ids: equal settings, or the same model and
  sentinels wherever their files are (seqio's own == also compares the paths)."""
  if a == b:
    return True
  a, b = loaded(a), loaded(b)
  return (a.extra_ids == b.extra_ids and a.sp_model is not None
          and a.sp_model == getattr(b, "sp_model", None))


class DeferredVocabulary(seqio.Vocabulary):
  """A SentencePiece vocabulary whose model path `model_path()` gives on first use.

  Every method delegates to `load_vocabulary(model_path())`, loaded once. `model_path` is
  a value (`ModelFile`, `EmbeddedCorpusModel`): vocabularies compare and hash by it, and
  pickle (gin deep-copies vocabularies).
  """

  def __init__(self, model_path: Callable[[], str], extra_ids: int = T5_EXTRA_IDS):
    super().__init__(extra_ids=extra_ids)
    self._model_path = model_path
    self._loaded: seqio.SentencePieceVocabulary | None = None

  @property
  def resolved(self) -> seqio.SentencePieceVocabulary:
    """The vocabulary of the model that `model_path()` names, loaded on first use."""
    if self._loaded is None:
      self._loaded = load_vocabulary(os.fspath(self._model_path()), extra_ids=self.extra_ids)
    return self._loaded

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
