"""Every registered task and mixture yields batches; registration is explicit and repeatable."""

import ast
import pathlib

import numpy as np
import pytest
import seqio

import tasks
from miniend_jax.data.dataset import BatchIterator, DatasetConfig
from miniend_jax.data.span_corruption import random_spans_helper

REPO = pathlib.Path(__file__).resolve().parent.parent
SPAN_CORRUPTION = ["c4_v220_span_corruption", "c4_hf_span_corruption",
                   "embedded_span_corruption"]
GLUE = [f"glue_{name}_v002" for name in (
    "cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "mnli_matched", "mnli_mismatched", "qnli",
    "rte", "wnli", "ax")]
SUMMARIZATION = ["cnn_dailymail_v002", "xsum_v110", "cnn_dailymail_hf", "xsum_hf",
                 "embedded_summarization"]
OTHER = ["embedded_topic_classification"]
MIXTURES = ["glue_v002_proportional"]


@pytest.fixture(scope="module", autouse=True)
def _data(task_vocabulary, tiny_tfds_data_dir, hf_stand_ins):
  return task_vocabulary


def test_all_expected_names_are_registered():
  assert set(SPAN_CORRUPTION + GLUE + SUMMARIZATION + OTHER) <= set(seqio.TaskRegistry.names())
  assert set(MIXTURES) <= set(seqio.MixtureRegistry.names())


@pytest.mark.parametrize("name", SPAN_CORRUPTION + GLUE + SUMMARIZATION + OTHER + MIXTURES)
def test_task_yields_batches_of_the_requested_shapes(name):
  provider = seqio.get_mixture_or_task(name)
  split = next(s for s in ("train", "validation", "test") if s in provider.splits)
  lengths = {"inputs": 64, "targets": 16}
  assert random_spans_helper(64)[1] <= lengths["targets"]
  iterator = BatchIterator(
      DatasetConfig(name, lengths, split, batch_size=2, shuffle=False, seed=0),
      shard_id=0, num_shards=1)
  batch = next(iterator)
  assert {k: v.shape for k, v in batch.items()} == {
      "encoder_input_tokens": (2, 64), "decoder_target_tokens": (2, 16),
      "decoder_input_tokens": (2, 16), "decoder_loss_weights": (2, 16)}
  assert (batch["encoder_input_tokens"][:, 0] > 1).all()  # Real tokens, not padding.
  assert (batch["decoder_loss_weights"].sum(axis=1) > 0).all()
  assert batch["encoder_input_tokens"].max() < 1100  # The test vocabulary's ids.


def test_glue_mixture_mixes_tasks_in_proportion_to_their_training_sets():
  mixture = seqio.MixtureRegistry.get("glue_v002_proportional")
  rates = {task.name: mixture.get_rate(task) for task in mixture.tasks}
  assert "glue_wnli_v002" not in rates
  assert rates["glue_mnli_v002"] == 392_702 and rates["glue_rte_v002"] == 2_490
  assert rates["glue_ax_v002"] == rates["glue_mnli_matched_v002"] == 0
  assert len(rates) == 11


def _imported_modules(path):
  tree = ast.parse(path.read_text())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      yield node.module


def test_the_library_never_imports_or_registers_tasks():
  for path in (REPO / "miniend_jax").rglob("*.py"):
    imported = set(_imported_modules(path))
    assert not {m for m in imported if m == "tasks" or m.startswith("tasks.")}, path
    assert "Registry.add" not in path.read_text(), path


def test_registration_is_repeatable():
  names = SPAN_CORRUPTION + GLUE + SUMMARIZATION + OTHER
  for name in names:
    seqio.TaskRegistry.remove(name)
  seqio.MixtureRegistry.remove("glue_v002_proportional")
  tasks.register_all()
  tasks.register_all()  # Again: replaces, no duplicate-registration error.
  assert set(names) <= set(seqio.TaskRegistry.names())
  assert "glue_v002_proportional" in seqio.MixtureRegistry.names()
  task = seqio.TaskRegistry.get("glue_sst2_v002")
  assert task.output_features["inputs"].vocabulary is tasks.vocabulary.VOCABULARY
  np.testing.assert_array_equal(  # Still readable after re-registration.
      next(iter(task.get_dataset({"inputs": 32, "targets": 4}, "train", shuffle=False)))[
          "targets"], task.output_features["targets"].vocabulary.encode("positive") + [1])


def test_gin_file_imports_tasks_and_sets_the_vocabulary(sentencepiece_model):
  import gin

  with gin.unlock_config():
    gin.parse_config(f"import tasks\n"
                     f"tasks.vocabulary.sentencepiece_model_path.path = "
                     f"'{sentencepiece_model}'")
  assert tasks.vocabulary.sentencepiece_model_path() == sentencepiece_model
  assert tasks.vocabulary.VOCABULARY.sentencepiece_model_file == sentencepiece_model


def test_default_vocabulary_is_trained_on_the_embedded_corpus_and_cached(tmp_path,
                                                                         monkeypatch):
  import itertools

  from miniend_jax.data import embedded_corpus

  lines = list(itertools.islice(embedded_corpus.sentencepiece_lines(), 2000))
  monkeypatch.setattr(embedded_corpus, "sentencepiece_lines", lambda: iter(lines))
  path = tasks.vocabulary.sentencepiece_model_path(
      None, embedded_vocab_size=500, cache_dir=str(tmp_path))
  digest = embedded_corpus.corpus_digest()[:16]
  assert path == str(tmp_path / "sentencepiece" / f"embedded-{digest}-v500-r1.model")
  assert tasks.vocabulary.sentencepiece_model_path(
      None, embedded_vocab_size=500, cache_dir=str(tmp_path)) == path


def test_a_tfds_dataset_that_is_not_prepared_is_a_clear_error():
  from miniend_jax.data.errors import CorpusError
  from miniend_jax.data.sources import PreparedTfdsSource

  for name in ("glue/sst2:1.0.0", "c4/en:3.0.0"):  # Versions absent from the data dir.
    source = PreparedTfdsSource(name, splits=("train",))
    with pytest.raises(CorpusError, match=rf"{name} \(split 'train'\) is not prepared in "
                                          "the TFDS data directory"):
      source.get_dataset("train", shuffle=False)
