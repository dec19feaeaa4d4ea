"""t5x-style dataset configuration and the per-host batch iterator built from it.

`DatasetConfig` names a registered seqio task or mixture and how to batch it; `get_dataset`
turns it into this host's tf.data pipeline of model features through seqio's
EncDecFeatureConverter (with pack=True: encoder/decoder segment ids and positions);
`BatchIterator` yields its batches as NumPy arrays.

Determinism: with a seed, seqio's shuffles, preprocessor randomness (span-corruption masks)
and mixture sampling are all seeded and tf.data runs in deterministic order, so a config,
seed and host always give the same batches.

Sharded reading: `shard_id` of `num_shards` (by default jax.process_index() of
jax.process_count()) reads shard `shard_id` of the data (seqio.ShardInfo, applied before
preprocessing and packing) and gets batch_size / num_shards examples per batch. Training
reads through data/host_input.py, which gives each host its own shards.

Resuming at step k, two exact mechanisms:
- `BatchIterator.save(path)` / `restore(path)` checkpoint the tf.data iterator itself
  (shuffle buffers and source positions included; what t5x saves beside each model
  checkpoint), so a restore continues at once, with no replay. Sources that read through
  Python (local files, Hugging Face) cannot be checkpointed this way.
- `start_step=k` rebuilds the same deterministic pipeline and skips its first k batches
  with `tf.data.Dataset.skip`. The skipped batches are still produced inside tf.data (C++,
  no Python loop, no model step, no host transfer), so resuming costs the input pipeline's
  time for k batches; it works for every source and needs no saved state.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Mapping

import jax
import numpy as np
import seqio
import tensorflow as tf

from miniend_jax.data.errors import DataError, UnknownTaskError


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
  """What to read and how to batch it (t5x's DatasetConfig).

  Attributes:
    mixture_or_task_name: a registered seqio task or mixture (import `tasks` first, or
      name it in `module`).
    task_feature_lengths: {"inputs": ..., "targets": ...} (t5x TASK_FEATURE_LENGTHS).
    split: "train", "validation", ...
    batch_size: global batch size, over all hosts.
    shuffle: shuffle examples (training) or keep the source order (evaluation).
    seed: seeds shuffling, preprocessing randomness and mixing. None draws fresh
      randomness each run (then the data cannot be resumed exactly).
    use_cached: read seqio's offline cache of the task (needs a prior cache job).
    pack: pack several examples per row (adds segment ids and positions).
    num_epochs: passes over the data; None repeats forever (training).
    module: a module to import before looking the name up, e.g. "tasks".
    vocabulary: the vocabulary every feature reads (runs bind it to VOCABULARY); None keeps
      the one the task was registered with.
  """

  mixture_or_task_name: str
  task_feature_lengths: Mapping[str, int]
  split: str
  batch_size: int
  shuffle: bool
  seed: int | None = 0
  use_cached: bool = False
  pack: bool = False
  num_epochs: int | None = None
  module: str | None = None
  vocabulary: seqio.Vocabulary | None = None


def with_vocabulary(provider: seqio.Task | seqio.Mixture, vocabulary: seqio.Vocabulary
                    ) -> seqio.Task | seqio.Mixture:
  """`provider` with every feature reading `vocabulary`: a new task (seqio.Task.replace) or
  a new mixture of such tasks at the same rates, under the same names; the registries are
  not changed."""
  if isinstance(provider, seqio.Task):
    features = provider.output_features
    if all(feature.vocabulary == vocabulary for feature in features.values()):
      return provider
    return provider.replace(output_features={
        key: dataclasses.replace(feature, vocabulary=vocabulary)
        for key, feature in features.items()})
  direct = {task.name: task for task in provider.tasks}
  return seqio.Mixture(provider.name, [
      (with_vocabulary(direct.get(name) or seqio.get_mixture_or_task(name), vocabulary), rate)
      for name, rate in provider.rate_per_task_name.items()])


def get_mixture_or_task(name: str, module: str | None = None, *, split: str | None = None,
                        vocabulary: seqio.Vocabulary | None = None
                        ) -> seqio.Task | seqio.Mixture:
  """The registered task or mixture `name`, with close-name suggestions when unknown;
  with `split`, also checked to have that split; with `vocabulary`, reading it
  (`with_vocabulary`)."""
  if module:
    importlib.import_module(module)
  provider = None
  if name in seqio.MixtureRegistry.names():
    provider = seqio.MixtureRegistry.get(name)
  elif name in seqio.TaskRegistry.names():
    provider = seqio.TaskRegistry.get(name)
  if provider is not None:
    if split is not None and split not in provider.splits:
      raise DataError(f"{name!r} has no split {split!r}; it has {sorted(provider.splits)}.")
    return provider if vocabulary is None else with_vocabulary(provider, vocabulary)
  known = sorted(set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names()))
  close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
  hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
  raise UnknownTaskError(
      f"No seqio task or mixture is named {name!r}.{hint} Tasks are registered by "
      f"importing their module (`import tasks` in Python or gin); {len(known)} are "
      "registered now.")


def provider_vocabulary(provider: seqio.Task | seqio.Mixture) -> seqio.Vocabulary:
  """The vocabulary a task or mixture is tokenized with (its "targets" feature's: every
  task here has one vocabulary for inputs and targets)."""
  return provider.output_features["targets"].vocabulary


def dataset_vocabulary(config: DatasetConfig) -> seqio.Vocabulary:
  """The vocabulary the configured data is tokenized with."""
  return provider_vocabulary(get_mixture_or_task(
      config.mixture_or_task_name, config.module, vocabulary=config.vocabulary))


def batch_spec(config: DatasetConfig,
               feature_converter_cls: type[seqio.FeatureConverter] = (
                   seqio.EncDecFeatureConverter)) -> dict[str, jax.ShapeDtypeStruct]:
  """The global batch's features, {name: ShapeDtypeStruct [batch_size, length]}, as
  `get_dataset` yields them (per host: batch_size / hosts rows), worked out from the
  feature converter alone: no task is read (e.g. to compile a step ahead of time)."""
  _check_config(config, 1)
  lengths = dict(config.task_feature_lengths)
  example = tf.data.Dataset.from_tensors({k: tf.ones([1], tf.int32) for k in lengths})
  converted = feature_converter_cls(pack=config.pack)(example, task_feature_lengths=lengths)
  return {name: jax.ShapeDtypeStruct((config.batch_size, *spec.shape),
                                     spec.dtype.as_numpy_dtype)
          for name, spec in converted.element_spec.items()}


def _check_config(config: DatasetConfig, num_shards: int) -> None:
  for feature in ("inputs", "targets"):
    length = config.task_feature_lengths.get(feature)
    if not isinstance(length, int) or length <= 0:
      raise DataError(f"task_feature_lengths[{feature!r}] must be a positive integer, got "
                      f"{length!r} (set TASK_FEATURE_LENGTHS).")
  if config.batch_size <= 0 or config.batch_size % num_shards:
    raise DataError(f"batch_size={config.batch_size} must be a positive multiple of the "
                    f"{num_shards} shards the data is read in (hosts, or INPUT_SHARDS).")


def get_dataset(config: DatasetConfig, *, shard_id: int | None = None,
                num_shards: int | None = None,
                feature_converter_cls: type[seqio.FeatureConverter] = (
                    seqio.EncDecFeatureConverter),
                start_step: int = 0) -> tf.data.Dataset:
  """This host's batches of model features, [batch_size / num_shards, length] each.

  Args:
    config: the dataset configuration.
    shard_id: this host's data shard (default jax.process_index()).
    num_shards: hosts reading data (default jax.process_count()).
    feature_converter_cls: seqio feature converter class, built with pack=config.pack.
    start_step: batches to skip, to resume a run at that step (see the module docstring).
  """
  shard_id = jax.process_index() if shard_id is None else shard_id
  num_shards = jax.process_count() if num_shards is None else num_shards
  if not 0 <= shard_id < num_shards:
    raise DataError(f"shard_id={shard_id} must be in [0, num_shards={num_shards}).")
  if start_step < 0:
    raise DataError(f"start_step must be >= 0, got {start_step}.")
  if start_step and config.shuffle and config.seed is None:
    raise DataError("Resuming at start_step > 0 needs a fixed seed; set the dataset "
                    "config's seed.")
  provider = get_mixture_or_task(config.mixture_or_task_name, config.module,
                                 split=config.split, vocabulary=config.vocabulary)
  _check_config(config, num_shards)
  lengths = dict(config.task_feature_lengths)
  # No seqio in-memory caching of small sources: it would replay the first epoch's order
  # every epoch, put the cached data into saved iterator states, and warn whenever an
  # iterator stops within the first epoch.
  dataset = provider.get_dataset(
      sequence_length=lengths, split=config.split, use_cached=config.use_cached,
      shuffle=config.shuffle, seed=config.seed,
      shard_info=seqio.ShardInfo(shard_id, num_shards), num_epochs=config.num_epochs,
      try_in_mem_cache=False)
  # Only the features the model reads: the converter would drop the rest anyway, with a
  # warning per dataset when packing.
  dataset = dataset.map(lambda example: {k: example[k] for k in lengths},
                        num_parallel_calls=tf.data.AUTOTUNE)
  dataset = feature_converter_cls(pack=config.pack)(dataset, task_feature_lengths=lengths)
  dataset = dataset.batch(config.batch_size // num_shards, drop_remainder=True)
  options = tf.data.Options()
  options.deterministic = True
  # Saving an iterator whose state lives in Python (from_generator) must fail, not write a
  # checkpoint that silently restarts the generator. (BatchIterator refuses known
  # Python-read sources up front with a clearer message.)
  options.experimental_external_state_policy = (
      tf.data.experimental.ExternalStatePolicy.FAIL)
  return dataset.skip(start_step).with_options(options).prefetch(tf.data.AUTOTUNE)


class BatchIterator:
  """NumPy batches of one host, resumable; see the module docstring.

  Attributes:
    dataset: the underlying tf.data pipeline.
    step: index of the next batch, counted from the start of the data.
  """

  def __init__(self, config: DatasetConfig, *, shard_id: int | None = None,
               num_shards: int | None = None,
               feature_converter_cls: type[seqio.FeatureConverter] = (
                   seqio.EncDecFeatureConverter),
               start_step: int = 0):
    self.dataset = get_dataset(config, shard_id=shard_id, num_shards=num_shards,
                               feature_converter_cls=feature_converter_cls,
                               start_step=start_step)
    self._iterator = iter(self.dataset)
    self._step = tf.Variable(start_step, dtype=tf.int64, trainable=False)
    self._name = config.mixture_or_task_name
    self._reads_in_python = any(
        getattr(task.source, "reads_in_python", False)
        for task in seqio.get_subtasks(get_mixture_or_task(self._name)))

  @property
  def step(self) -> int:
    return int(self._step.numpy())

  @property
  def shapes(self) -> dict[str, tuple[int, ...]]:
    """{feature: (per-host batch, length)}, e.g. to initialise a model."""
    return {k: tuple(spec.shape) for k, spec in self.dataset.element_spec.items()}

  def __iter__(self) -> BatchIterator:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = next(self._iterator)
    self._step.assign_add(1)
    return {name: tensor.numpy() for name, tensor in batch.items()}

  def _checkpoint(self) -> tf.train.Checkpoint:
    if self._reads_in_python:
      raise DataError(
          f"{self._name!r} reads data through Python (local files or Hugging Face), whose "
          "position tf.data cannot save: resume with start_step instead.")
    return tf.train.Checkpoint(iterator=self._iterator, step=self._step)

  def save(self, path: str) -> str:
    """Writes the iterator's position (and step) to files with prefix `path`."""
    return self._checkpoint().write(path)

  def restore(self, path: str) -> None:
    """Continues from the position saved at `path` by `save` with the same config."""
    self._checkpoint().read(path).assert_consumed()
