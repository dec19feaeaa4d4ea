"""DatasetConfig batches: shapes, packing, determinism, sharding, resuming, errors."""

import numpy as np
import pytest
import seqio

from miniend_jax.data.dataset import (BatchIterator, DatasetConfig, get_dataset,
                                      get_mixture_or_task)
from miniend_jax.data.errors import DataError, UnknownTaskError
from miniend_jax.data.sources import LocalFilesSource

LENGTHS = {"inputs": 32, "targets": 8}  # random_spans_helper(32) -> 34 raw tokens, 8 targets.


@pytest.fixture(scope="module")
def config(task_vocabulary):
  """DatasetConfig(**overrides) of the embedded span-corruption task in the test vocabulary."""
  def make(**overrides):
    settings = dict(mixture_or_task_name="embedded_span_corruption",
                    task_feature_lengths=LENGTHS, split="train", batch_size=4, shuffle=True,
                    seed=7, pack=True, vocabulary=task_vocabulary)
    settings.update(overrides)
    return DatasetConfig(**settings)
  return make


def _take(iterator, count):
  return [next(iterator) for _ in range(count)]


def _assert_same_batches(first, second):
  assert len(first) == len(second)
  for a, b in zip(first, second):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, task_vocabulary, config):
  """The first 5 batches of the default config, and the iterator state saved after 2."""
  iterator = BatchIterator(config(), shard_id=0, num_shards=1)
  assert task_vocabulary.vocab_size == 1100  # The session's test model.
  batches = _take(iterator, 2)
  state = iterator.save(str(tmp_path_factory.mktemp("data_state") / "state"))
  return batches + _take(iterator, 3), state


def test_packed_batches_have_model_shapes_and_segments(reference):
  batch = reference[0][0]
  assert {k: v.shape for k, v in batch.items()} == {
      "encoder_input_tokens": (4, 32), "encoder_segment_ids": (4, 32),
      "encoder_positions": (4, 32), "decoder_target_tokens": (4, 8),
      "decoder_input_tokens": (4, 8), "decoder_loss_weights": (4, 8),
      "decoder_segment_ids": (4, 8), "decoder_positions": (4, 8)}
  assert all(v.dtype == np.int32 for v in batch.values())
  segments, positions = batch["decoder_segment_ids"], batch["decoder_positions"]
  targets, decoder_inputs = batch["decoder_target_tokens"], batch["decoder_input_tokens"]
  for row in range(4):
    for column in range(8):
      if not segments[row, column]:
        assert targets[row, column] == 0 and not batch["decoder_loss_weights"][row, column]
      elif column == 0 or segments[row, column] != segments[row, column - 1]:
        assert positions[row, column] == 0 and decoder_inputs[row, column] == 0
      else:  # Inside a segment: position counts up, inputs are the shifted targets.
        assert positions[row, column] == positions[row, column - 1] + 1
        assert decoder_inputs[row, column] == targets[row, column - 1]
  assert (batch["encoder_segment_ids"].max(axis=1) >= 1).all()


def test_unpacked_batches_have_no_segment_features(config):
  iterator = BatchIterator(config(pack=False, shuffle=False), shard_id=0, num_shards=1)
  assert iterator.shapes == {"encoder_input_tokens": (4, 32), "decoder_target_tokens": (4, 8),
                             "decoder_input_tokens": (4, 8), "decoder_loss_weights": (4, 8)}
  batch = next(iterator)
  eos_positions = (batch["decoder_target_tokens"] == 1).argmax(axis=1)
  assert (eos_positions > 0).all()  # Every target row ends with EOS.


def test_resuming_at_a_step_skips_exactly_that_many_batches(reference, config):
  # Also shows determinism: a second pipeline with the same config gives the same batches.
  resumed = BatchIterator(config(), shard_id=0, num_shards=1, start_step=3)
  assert resumed.step == 3
  _assert_same_batches(reference[0][3:5], _take(resumed, 2))
  assert resumed.step == 5


def test_saved_iterator_state_continues_where_it_stopped(reference, config):
  restored = BatchIterator(config(seed=8), shard_id=0, num_shards=1)
  # Another seed, another stream; the restored state overrides it with the saved position.
  assert not np.array_equal(next(restored)["encoder_input_tokens"],
                            reference[0][0]["encoder_input_tokens"])
  restored = BatchIterator(config(), shard_id=0, num_shards=1)
  restored.restore(reference[1])
  assert restored.step == 2
  _assert_same_batches(reference[0][2:4], _take(restored, 2))


def test_hosts_read_disjoint_shards(config):
  settings = config(mixture_or_task_name="embedded_topic_classification", shuffle=False,
                    pack=False, num_epochs=1, split="validation",
                    task_feature_lengths={"inputs": 256, "targets": 4})
  rows = []
  for host in range(2):
    batches = list(BatchIterator(settings, shard_id=host, num_shards=2))
    assert batches[0]["encoder_input_tokens"].shape == (2, 256)  # Global 4 over 2 hosts.
    rows.append([tuple(row) for b in batches for row in b["encoder_input_tokens"]])
  assert not set(rows[0]) & set(rows[1])
  examples = seqio.get_mixture_or_task(settings.mixture_or_task_name).num_input_examples(
      "validation")
  assert examples - 2 <= len(rows[0]) + len(rows[1]) <= examples  # Partial batches dropped.


def test_unknown_task_suggests_close_names(config):
  assert get_mixture_or_task("glue_v002_proportional", module="tasks").name == (
      "glue_v002_proportional")
  with pytest.raises(UnknownTaskError,
                     match=r"'embeded_span_corruption'\. Did you mean 'embedded_span_corruption'"):
    get_dataset(config(mixture_or_task_name="embeded_span_corruption"), shard_id=0,
                num_shards=1)
  with pytest.raises(UnknownTaskError, match="import tasks"):
    get_dataset(config(mixture_or_task_name="no_such_thing_at_all"), shard_id=0,
                num_shards=1)


def test_configuration_errors_are_clear(config):
  with pytest.raises(DataError, match=r"no split 'validaton'; it has \['train', 'validation'"):
    get_dataset(config(split="validaton"), shard_id=0, num_shards=1)
  with pytest.raises(DataError, match=r"task_feature_lengths\['targets'\] must be a positive"):
    get_dataset(config(task_feature_lengths={"inputs": 32}), shard_id=0, num_shards=1)
  with pytest.raises(DataError, match="batch_size=4 must be a positive multiple of the 3"):
    get_dataset(config(), shard_id=0, num_shards=3)
  with pytest.raises(DataError, match="needs a fixed seed"):
    get_dataset(config(seed=None), shard_id=0, num_shards=1, start_step=2)
  with pytest.raises(DataError, match=r"shard_id=2 must be in \[0, num_shards=2\)"):
    get_dataset(config(), shard_id=2, num_shards=2)


def test_python_read_sources_cannot_save_their_position(tmp_path, config):
  import tasks

  corpus = tmp_path / "corpus.txt"
  corpus.write_text("".join(f"Document number {i} of the local corpus.\n" for i in range(50)))
  tasks.pretraining.span_corruption_task(
      "local_files_dataset_test", LocalFilesSource({"train": str(corpus)}))
  try:
    iterator = BatchIterator(config(mixture_or_task_name="local_files_dataset_test",
                                     shuffle=False), shard_id=0, num_shards=1)
    assert next(iterator)["encoder_input_tokens"].shape == (4, 32)
    with pytest.raises(DataError, match="reads data through Python.*resume with start_step"):
      iterator.save(str(tmp_path / "state"))
    with pytest.raises(DataError, match="resume with start_step instead"):
      iterator.restore(str(tmp_path / "state"))
  finally:
    seqio.TaskRegistry.remove("local_files_dataset_test")
