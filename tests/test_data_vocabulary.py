"""SentencePiece training (deterministic, T5 ids, cached, command) and seqio vocabularies."""

import itertools
import json
import os
import pickle
import subprocess
import sys

import pytest
import seqio
import sentencepiece

from miniend_jax.data import embedded_corpus, sentencepiece_training
from miniend_jax.data.errors import CorpusError, VocabularyError
from miniend_jax.data.vocabulary import load_vocabulary, same_vocabulary, task_vocabulary

# seqio's own test model: a SentencePiece model made outside this project with T5's ids.
SEQIO_MODEL = os.path.join(os.path.dirname(seqio.__file__), "test_data", "sentencepiece",
                           "sentencepiece.model")


@pytest.fixture(scope="module")
def lines():
  return list(itertools.islice(embedded_corpus.sentencepiece_lines(), 1500))


def test_training_is_deterministic_for_a_corpus_and_size(lines, sentencepiece_model):
  first = sentencepiece_training.train_sentencepiece(lines, vocab_size=300)
  assert sentencepiece_training.train_sentencepiece(lines, vocab_size=300) == first
  assert sentencepiece_training.train_sentencepiece(lines, vocab_size=301) != first
  # The session model, trained in another call on 3000 lines, is reproduced exactly too.
  again = sentencepiece_training.train_sentencepiece(
      itertools.islice(embedded_corpus.sentencepiece_lines(), 3000), vocab_size=1000)
  with open(sentencepiece_model, "rb") as stream:
    assert stream.read() == again


def test_trained_model_has_t5_special_ids(sentencepiece_model):
  processor = sentencepiece.SentencePieceProcessor(model_file=sentencepiece_model)
  assert (processor.pad_id(), processor.eos_id(), processor.unk_id(), processor.bos_id()) == (
      0, 1, 2, -1)
  assert [processor.id_to_piece(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]
  assert processor.get_piece_size() == 1000


def test_vocabulary_appends_100_sentinels_highest_first(sentencepiece_model):
  vocabulary = load_vocabulary(sentencepiece_model)
  assert vocabulary.vocab_size == 1100 and vocabulary.extra_ids == 100
  assert vocabulary.encode("<extra_id_0>") == [1099]
  assert vocabulary.encode("<extra_id_99>") == [1000]
  assert (vocabulary.pad_id, vocabulary.eos_id, vocabulary.unk_id) == (0, 1, 2)
  text = "Return the number of items."
  assert vocabulary.decode(vocabulary.encode(text)) == text


def test_an_external_t5_style_model_loads_unchanged():
  ours = load_vocabulary(SEQIO_MODEL)
  raw = sentencepiece.SentencePieceProcessor(model_file=SEQIO_MODEL)
  reference = seqio.SentencePieceVocabulary(SEQIO_MODEL, extra_ids=100)
  text = "this is a test of the vocabulary"
  assert ours.encode(text) == raw.encode(text) == reference.encode(text)
  assert ours.vocab_size == reference.vocab_size == raw.get_piece_size() + 100
  assert ours.sentencepiece_model_file == SEQIO_MODEL


def test_training_errors_are_clear(lines, tmp_path):
  with pytest.raises(CorpusError, match="empty corpus"):
    sentencepiece_training.train_sentencepiece(["", "  "], vocab_size=100)
  with pytest.raises(VocabularyError, match="too large for this corpus: it supports at most"):
    sentencepiece_training.train_sentencepiece(lines[:50], vocab_size=5000)
  with pytest.raises(VocabularyError, match="smaller than the .* pieces this corpus needs"):
    sentencepiece_training.train_sentencepiece(lines, vocab_size=20)


def test_loading_errors_are_clear(tmp_path, lines):
  with pytest.raises(VocabularyError, match="No SentencePiece model at"):
    load_vocabulary(str(tmp_path / "missing.model"))
  (tmp_path / "junk.model").write_bytes(b"not a model")
  with pytest.raises(VocabularyError, match=r"^SentencePiece model '.*junk.model' cannot be "
                     r"read: it is a text file, not a SentencePiece model \(it starts with "
                     r"'not a model'\); copy it again, or train one with `python -m "
                     r"miniend_jax.data.sentencepiece_training`\.$"):
    load_vocabulary(str(tmp_path / "junk.model"))
  # SentencePiece's own defaults (unk 0, bos 1, eos 2) are not T5's.
  path = tmp_path / "default_ids.model"
  sentencepiece.SentencePieceTrainer.train(
      sentence_iterator=iter(lines), model_prefix=str(path.with_suffix("")), vocab_size=200,
      minloglevel=2)
  with pytest.raises(VocabularyError, match="does not use T5's special ids"):
    load_vocabulary(str(path))


def test_damaged_model_files_are_one_sentence(tmp_path, sentencepiece_model):
  """A model cut short or empty names the file and what is wrong. A half cut falls in the
  model's last record (its normalizer, most of the file), which ends at the file's end."""
  with open(sentencepiece_model, "rb") as f:
    data = f.read()
  cut, empty = tmp_path / "cut.model", tmp_path / "empty.model"
  cut.write_bytes(data[:len(data) // 2])
  empty.write_bytes(b"")
  fix = "copy it again, or train one with `python -m miniend_jax.data.sentencepiece_training`."
  with pytest.raises(VocabularyError) as raised:
    load_vocabulary(str(cut))
  assert str(raised.value) == (
      f"SentencePiece model '{cut}' cannot be read: the file is truncated (its last record "
      f"needs at least {len(data) / 1000:.1f} kB, the file has "
      f"{len(data) // 2 / 1000:.1f} kB); {fix}")
  with pytest.raises(VocabularyError) as raised:
    task_vocabulary(str(empty))
  assert str(raised.value) == (
      f"SentencePiece model '{empty}' cannot be read: the file is empty; {fix}")


def test_cached_model_is_trained_once_per_corpus_and_size(tmp_path, lines):
  calls = []

  def corpus():
    calls.append(1)
    return lines

  cache = dict(corpus_name="test", lines=corpus, cache_dir=str(tmp_path))
  path = sentencepiece_training.cached_sentencepiece_model(
      corpus_digest="ab" * 32, vocab_size=300, **cache)
  assert path == str(tmp_path / "sentencepiece" / f"test-{'ab' * 8}-v300-r1.model")
  assert sentencepiece_training.cached_sentencepiece_model(
      corpus_digest="ab" * 32, vocab_size=300, **cache) == path
  assert len(calls) == 1
  other_size = sentencepiece_training.cached_sentencepiece_model(
      corpus_digest="ab" * 32, vocab_size=301, **cache)
  other_corpus = sentencepiece_training.cached_sentencepiece_model(
      corpus_digest="cd" * 32, vocab_size=300, **cache)
  assert len({path, other_size, other_corpus}) == 3 and len(calls) == 3
  assert sorted(os.listdir(tmp_path / "sentencepiece")) == sorted(
      os.path.basename(p) for p in (path, other_size, other_corpus))  # No temporary left.


def _run_command(*args):
  return subprocess.run(
      [sys.executable, "-m", "miniend_jax.data.sentencepiece_training", *args],
      capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
      timeout=120)


def test_command_trains_the_same_model_as_the_function(tmp_path, lines):
  corpus = tmp_path / "corpus.jsonl"
  corpus.write_text("".join(json.dumps({"body": line}) + "\n" for line in lines[:800]))
  output = tmp_path / "out" / "spiece.model"
  result = _run_command(f"--corpus={corpus}", "--text_key=body", f"--output={output}",
                        "--vocab_size=250")
  assert result.returncode == 0, result.stderr
  assert "250 pieces" in result.stdout
  assert output.read_bytes() == sentencepiece_training.train_sentencepiece(
      lines[:800], vocab_size=250)

  (tmp_path / "bad.txt").write_bytes(b"fine line\nbad \xff byte\n")
  result = _run_command(f"--corpus={tmp_path / 'bad.txt'}", f"--output={output}")
  assert result.returncode != 0
  assert "bad.txt:2 is not valid utf-8 text (byte 0xff at column 5)" in result.stderr
  assert "Traceback" not in result.stderr


def test_task_vocabulary_loads_on_first_use_and_compares_by_model(tmp_path, lines,
                                                                  sentencepiece_model):
  small = str(tmp_path / "small.model")
  sentencepiece_training.write_atomically(
      small, sentencepiece_training.train_sentencepiece(lines, vocab_size=300))
  vocabulary = task_vocabulary(small)
  assert vocabulary == task_vocabulary(small) and vocabulary._loaded is None  # Not loaded yet.
  assert vocabulary.vocab_size == 400 and vocabulary.encode("<extra_id_0>") == [399]
  assert vocabulary.decode(vocabulary.encode("Return the value.")) == "Return the value."
  copy = str(tmp_path / "copy" / "spiece.model")
  os.makedirs(os.path.dirname(copy))
  with open(small, "rb") as source, open(copy, "wb") as target:
    target.write(source.read())
  assert vocabulary != task_vocabulary(copy)      # Other settings...
  assert same_vocabulary(vocabulary, task_vocabulary(copy))   # ...the same model.
  assert same_vocabulary(vocabulary, load_vocabulary(copy))
  assert not same_vocabulary(vocabulary, task_vocabulary(sentencepiece_model))
  with pytest.raises(VocabularyError, match="No SentencePiece model at '/nonexistent"):
    task_vocabulary("/nonexistent/spiece.model")   # A given path is checked at once.


def test_a_model_directory_carrying_another_vocabulary_is_refused(tmp_path, lines,
                                                                  sentencepiece_model):
  from miniend_jax.convert.model_vocabulary import (check_model_vocabulary, vocabulary_file,
                                                    write_model_vocabulary)

  vocabulary = task_vocabulary(sentencepiece_model)

  run = tmp_path / "run"
  (run / "checkpoint_4").mkdir(parents=True)
  assert vocabulary_file(str(run)) is None
  check_model_vocabulary(str(run), vocabulary, "TEACHER_CHECKPOINT")  # Nothing to check.
  write_model_vocabulary(str(run), vocabulary)
  assert vocabulary_file(str(run / "checkpoint_4")) == str(run / "spiece.model")
  check_model_vocabulary(str(run / "checkpoint_4"), vocabulary, "TEACHER_CHECKPOINT")
  other = str(tmp_path / "other.model")
  sentencepiece_training.write_atomically(
      other, sentencepiece_training.train_sentencepiece(lines, vocab_size=300))
  with pytest.raises(VocabularyError, match=rf"TEACHER_CHECKPOINT '{run}/checkpoint_4' carries "
                                            rf"the SentencePiece model {run}/spiece.model.*"
                                            "set SENTENCEPIECE_MODEL"):
    check_model_vocabulary(str(run / "checkpoint_4"), task_vocabulary(other),
                           "TEACHER_CHECKPOINT")


def test_task_vocabulary_pickles_and_compares_by_setting(sentencepiece_model):
  vocabulary = task_vocabulary(sentencepiece_model)
  copy = pickle.loads(pickle.dumps(vocabulary))
  assert copy == vocabulary and hash(copy) == hash(vocabulary)
  assert copy.vocab_size == vocabulary.vocab_size == 1100
