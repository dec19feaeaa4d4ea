"""Every registered task and mixture yields batches; registration is explicit and repeatable."""

import ast
import pathlib

import numpy as np
import pytest
import seqio

import tasks
from miniend_jax.data.dataset import BatchIterator, DatasetConfig, get_mixture_or_task
from miniend_jax.data import vocabulary as vocabularies
from miniend_jax.data.vocabulary import load_vocabulary, same_vocabulary
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
def test_task_yields_batches_of_the_requested_shapes(name, task_vocabulary):
  provider = seqio.get_mixture_or_task(name)
  split = next(s for s in ("train", "validation", "test") if s in provider.splits)
  lengths = {"inputs": 64, "targets": 16}
  assert random_spans_helper(64)[1] <= lengths["targets"]
  iterator = BatchIterator(
      DatasetConfig(name, lengths, split, batch_size=2, shuffle=False, seed=0,
                    vocabulary=task_vocabulary),
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


def test_registration_is_repeatable(task_vocabulary):
  names = SPAN_CORRUPTION + GLUE + SUMMARIZATION + OTHER
  for name in names:
    seqio.TaskRegistry.remove(name)
  seqio.MixtureRegistry.remove("glue_v002_proportional")
  tasks.register_all()
  tasks.register_all()  # Again: replaces, no duplicate-registration error.
  assert set(names) <= set(seqio.TaskRegistry.names())
  assert "glue_v002_proportional" in seqio.MixtureRegistry.names()
  registered = seqio.TaskRegistry.get("glue_sst2_v002")
  assert registered.output_features["inputs"].vocabulary is tasks.vocabulary.VOCABULARY
  task = get_mixture_or_task("glue_sst2_v002", vocabulary=task_vocabulary)
  np.testing.assert_array_equal(  # Still readable after re-registration.
      next(iter(task.get_dataset({"inputs": 32, "targets": 4}, "train", shuffle=False)))[
          "targets"], task.output_features["targets"].vocabulary.encode("positive") + [1])


def test_a_run_passes_its_vocabulary_and_the_registry_keeps_its_own(task_vocabulary,
                                                                     sentencepiece_model):
  mixture = get_mixture_or_task("glue_v002_proportional", vocabulary=task_vocabulary)
  registered = seqio.MixtureRegistry.get("glue_v002_proportional")
  assert mixture is not registered and mixture.name == registered.name
  assert {t.name: mixture.get_rate(t) for t in mixture.tasks} == {
      t.name: registered.get_rate(t) for t in registered.tasks}
  for task in mixture.tasks:
    assert all(f.vocabulary is task_vocabulary for f in task.output_features.values())
  for task in registered.tasks:  # The registry is not changed.
    assert all(f.vocabulary is tasks.vocabulary.VOCABULARY
               for f in task.output_features.values())
  assert get_mixture_or_task("glue_sst2_v002", vocabulary=tasks.vocabulary.VOCABULARY) is (
      seqio.TaskRegistry.get("glue_sst2_v002"))   # Its own vocabulary: the task itself.
  assert same_vocabulary(task_vocabulary, load_vocabulary(sentencepiece_model))


def test_run_files_bind_the_vocabulary_from_sentencepiece_model(sentencepiece_model):
  import copy

  import gin

  from miniend_jax.gin_cli import PACKAGE_GIN_DIR

  gin.clear_config()
  try:
    gin.add_config_file_search_path(PACKAGE_GIN_DIR)
    with gin.unlock_config():
      gin.parse_config_files_and_bindings(
          ["runs/eval.gin"], [f"SENTENCEPIECE_MODEL = '{sentencepiece_model}'"],
          skip_unknown=False, finalize_config=False)
    vocabulary = copy.deepcopy(gin.query_parameter("%VOCABULARY"))  # Evaluates the call.
    assert same_vocabulary(vocabulary, load_vocabulary(sentencepiece_model))
    assert vocabulary.vocab_size == 1100
  finally:
    gin.clear_config()


def test_default_vocabulary_is_trained_on_the_embedded_corpus_and_cached(tmp_path,
                                                                         monkeypatch):
  import itertools

  from miniend_jax.data import embedded_corpus

  lines = list(itertools.islice(embedded_corpus.sentencepiece_lines(), 2000))
  monkeypatch.setattr(embedded_corpus, "sentencepiece_lines", lambda: iter(lines))
  model = vocabularies.EmbeddedCorpusModel(vocab_size=500, cache_dir=str(tmp_path))
  path = model()
  digest = embedded_corpus.corpus_digest()[:16]
  assert path == str(tmp_path / "sentencepiece" / f"embedded-{digest}-v500-r1.model")
  assert model() == path
  assert vocabularies.task_vocabulary(embedded_vocab_size=500, cache_dir=str(tmp_path)).vocab_size == 600


def test_a_tfds_dataset_that_is_not_prepared_is_a_clear_error():
  from miniend_jax.data.errors import CorpusError
  from miniend_jax.data.sources import PreparedTfdsSource

  for name in ("glue/sst2:1.0.0", "c4/en:3.0.0"):  # Versions absent from the data dir.
    source = PreparedTfdsSource(name, splits=("train",))
    with pytest.raises(CorpusError, match=rf"{name} \(split 'train'\) is not prepared in "
                                          "the TFDS data directory"):
      source.get_dataset("train", shuffle=False)
