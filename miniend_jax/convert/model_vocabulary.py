"""The SentencePiece model a model directory carries, and the check that it is the run's.

A Hugging Face T5 directory carries its tokenizer as `spiece.model`; so does every run
directory of ours (the trainer writes the run's vocabulary there) and every export. A model
given to a run (TEACHER_CHECKPOINT, INITIAL_CHECKPOINT_PATH, CHECKPOINT_PATH, a resumed
MODEL_DIR) whose directory carries a different model would read the task's token ids as
other words, with no error, and is refused. Directories without one (t5x checkpoints) are
not checked: the vocab_size check is all there is.
"""

from __future__ import annotations

import os

import seqio

from miniend_jax.convert.step_directories import step_of
from miniend_jax.data.errors import VocabularyError
from miniend_jax.data.sentencepiece_training import write_atomically
from miniend_jax.data.vocabulary import load_vocabulary, loaded, same_vocabulary

VOCABULARY_FILE = "spiece.model"


def vocabulary_file(model_path: str) -> str | None:
  """The `spiece.model` of a model directory (a checkpoint_<step>/'s run directory's for
  one step), or None."""
  directory = os.path.dirname(os.path.normpath(model_path)) \
      if step_of(model_path) is not None else model_path
  path = os.path.join(directory, VOCABULARY_FILE)
  return path if os.path.isfile(path) else None


def check_model_vocabulary(model_path: str | None, vocabulary: seqio.Vocabulary,
                           setting: str) -> None:
  """Refuses the model at `model_path` (named by `setting`) if its directory carries a
  SentencePiece model other than `vocabulary`'s."""
  carried = vocabulary_file(model_path) if model_path else None
  if carried is None or same_vocabulary(load_vocabulary(carried), vocabulary):
    return
  raise VocabularyError(
      f"{setting} {model_path!r} carries the SentencePiece model {carried}, which is not the "
      f"run's vocabulary ({_describe(vocabulary)}): set SENTENCEPIECE_MODEL to "
      f"\"{carried}\", or change {setting.split()[0]}.")


def write_model_vocabulary(model_dir: str, vocabulary: seqio.Vocabulary) -> None:
  """Copies the vocabulary's SentencePiece model to MODEL_DIR/spiece.model (once)."""
  target = os.path.join(model_dir, VOCABULARY_FILE)
  if os.path.exists(target):
    return
  with open(loaded(vocabulary).sentencepiece_model_file, "rb") as source:
    write_atomically(target, source.read())


def _describe(vocabulary: seqio.Vocabulary) -> str:
  vocabulary = loaded(vocabulary)
  return f"{getattr(vocabulary, 'sentencepiece_model_file', vocabulary)}, " \
      f"{vocabulary.vocab_size} ids"
