"""Training a T5-style SentencePiece model from a corpus, and caching one per corpus.

T5 conventions: PAD 0 ("<pad>"), EOS 1 ("</s>"), UNK 2 ("<unk>"), no BOS; the 100
sentinels are not pieces of the model, seqio appends them on load (see vocabulary.py).

Training is deterministic for a given corpus and size: the input is fed in corpus order,
nothing is sampled or shuffled (input_sentence_size=0, shuffle_input_sentence=False) and the
trainer runs on one thread, so the same corpus and settings give a byte-identical model.

Command:
  python -m miniend_jax.data.sentencepiece_training --corpus=embedded \
      --output=/tmp/spiece.model --vocab_size=8000
  python -m miniend_jax.data.sentencepiece_training --corpus='data/*.jsonl' \
      --text_key=text --output=/tmp/spiece.model --vocab_size=32000
"""

from __future__ import annotations

import io
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence

import sentencepiece as spm

from miniend_jax.data import corpus_files
from miniend_jax.data.errors import CorpusError, DataError, VocabularyError

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
# Part of the cache key: bump it when the training options below change.
_RECIPE_VERSION = 1


def train_sentencepiece(lines: Iterable[str], *, vocab_size: int,
                        model_type: str = "unigram",
                        character_coverage: float = 0.9995) -> bytes:
  """A serialized SentencePiece model with T5's special ids, trained on `lines`.

  Args:
    lines: training text, one sentence or line per item (SentencePiece skips items longer
      than 4192 bytes).
    vocab_size: pieces in the model, specials included (T5: 32000; seqio adds 100 sentinels).
    model_type: "unigram" (T5) or "bpe".
    character_coverage: fraction of characters covered by pieces; the rest map to UNK.
  """
  if vocab_size <= UNK_ID + 1:
    raise VocabularyError(f"vocab_size must exceed the 3 special pieces, got {vocab_size}.")
  lines = [line for line in lines if line.strip()]
  if not lines:
    raise CorpusError("Cannot train a SentencePiece model on an empty corpus.")
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size,
        model_type=model_type, character_coverage=character_coverage,
        pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        input_sentence_size=0, shuffle_input_sentence=False, num_threads=1,
        minloglevel=2)
  except RuntimeError as error:
    too_large = re.search(r"value <= (\d+)", str(error))
    too_small = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(error))
    if too_large:
      message = (f"vocab_size={vocab_size} is too large for this corpus: it supports at most "
                 f"{too_large.group(1)} pieces. Lower vocab_size or train on more text.")
    elif too_small:
      message = (f"vocab_size={vocab_size} is smaller than the {too_small.group(1)} pieces "
                 "this corpus needs (its characters plus the specials). Raise vocab_size or "
                 "lower character_coverage.")
    else:
      message = f"SentencePiece training failed: {error}"
    raise VocabularyError(message) from None
  return model.getvalue()


def write_atomically(path: str, content: bytes) -> None:
  """Writes `content` to `path` through a temporary file and a rename, so concurrent
  writers (several hosts on one file system) never leave a half-written file."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
  try:
    with os.fdopen(handle, "wb") as stream:
      stream.write(content)
    os.replace(temporary, path)
  except BaseException:
    if os.path.exists(temporary):
      os.remove(temporary)
    raise


def default_cache_dir() -> str:
  """~/.cache/miniend_jax, or $XDG_CACHE_HOME/miniend_jax where that is set."""
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(root, "miniend_jax")


def cached_sentencepiece_model(*, corpus_name: str, corpus_digest: str,
                               lines: Callable[[], Iterable[str]], vocab_size: int,
                               cache_dir: str | None = None) -> str:
  """Path of a model trained on a corpus, trained and cached on first use.

  The file is <cache_dir>/sentencepiece/<corpus_name>-<digest[:16]>-v<size>-r<recipe>.model:
  keyed by the corpus' content digest and the vocabulary size, so a changed corpus or size
  gets its own model and a stale one is never reused.
  """
  cache_dir = cache_dir or default_cache_dir()
  path = os.path.join(
      cache_dir, "sentencepiece",
      f"{corpus_name}-{corpus_digest[:16]}-v{vocab_size}-r{_RECIPE_VERSION}.model")
  if not os.path.exists(path):
    write_atomically(path, train_sentencepiece(lines(), vocab_size=vocab_size))
  return path


def corpus_lines(corpus: str, *, text_key: str = "text",
                 encoding: str = "utf-8") -> Iterable[str]:
  """Training lines of `corpus`: "embedded" or glob patterns of local files (comma-
  separated)."""
  if corpus == "embedded":
    from miniend_jax.data import embedded_corpus  # Imports the standard-library modules.
    return embedded_corpus.sentencepiece_lines()
  files = corpus_files.expand_patterns([p for p in corpus.split(",") if p])
  return (line.strip()
          for _, text in corpus_files.read_documents(files, text_key=text_key,
                                                     encoding=encoding)
          for line in text.splitlines() if line.strip())


def main(argv: Sequence[str]) -> None:
  del argv
  try:
    content = train_sentencepiece(
        corpus_lines(FLAGS.corpus, text_key=FLAGS.text_key, encoding=FLAGS.encoding),
        vocab_size=FLAGS.vocab_size, model_type=FLAGS.model_type,
        character_coverage=FLAGS.character_coverage)
  except DataError as error:  # A bad corpus or size: one line, no traceback.
    sys.exit(f"error: {error}")
  write_atomically(FLAGS.output, content)
  processor = spm.SentencePieceProcessor(model_proto=content)
  print(f"Wrote {FLAGS.output}: {processor.get_piece_size()} pieces "
        f"(+100 sentinels when loaded as a T5 vocabulary).")


if __name__ == "__main__":
  from absl import app, flags

  flags.DEFINE_string("corpus", "embedded",
                      "'embedded' or comma-separated glob patterns of .txt/.jsonl files.")
  flags.DEFINE_string("output", None, "Path of the .model file to write.", required=True)
  flags.DEFINE_integer("vocab_size", 8000, "Pieces in the model (T5: 32000).")
  flags.DEFINE_string("model_type", "unigram", "'unigram' (T5) or 'bpe'.")
  flags.DEFINE_float("character_coverage", 0.9995, "Fraction of characters covered.")
  flags.DEFINE_string("text_key", "text", "JSON field holding the text in .jsonl files.")
  flags.DEFINE_string("encoding", "utf-8", "Encoding of the corpus files.")
  FLAGS = flags.FLAGS
  app.run(main)
