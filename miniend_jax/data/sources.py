"""seqio data sources for text corpora that seqio itself does not read.

- `InMemorySource`: examples built in Python on first use (the embedded corpus and the
  datasets derived from it).
- `LocalFilesSource`: local plain-text or JSON-lines files (see corpus_files.py), with
  explicit per-split files or a deterministic split by document.
- `DownstreamFilesSource`: the same for text-to-text examples in .jsonl/.json or .tsv
  files (see downstream_files.py).
- `HuggingFaceSource`: a Hugging Face `datasets` dataset (e.g. allenai/c4, streaming).
- `PreparedTfdsSource`: seqio's TFDS source, reading prepared data only.

Every source here checks what a user can get wrong (no files, no documents, undecodable
text, a missing field, an unloadable or unprepared dataset) when the dataset is built, in
Python, and raises `CorpusError`; nothing fails later inside a TensorFlow iterator. The
sources written here yield string features only.

Sharding: `InMemorySource` and `HuggingFaceSource` shard examples themselves; the local
files sources shard whole files when there are at least as many files as shards and let
seqio shard examples otherwise.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence

import seqio
import tensorflow as tf

from miniend_jax.data import corpus_files, document_split, downstream_files
from miniend_jax.data.errors import CorpusError, DataError


def _string_signature(fields: Sequence[str]) -> dict[str, tf.TensorSpec]:
  return {field: tf.TensorSpec((), tf.string) for field in fields}


class InMemorySource(seqio.DataSource):
  """Examples (dicts of strings) that `load(split)` builds in Python on first use."""

  def __init__(self, load: Callable[[str], Sequence[Mapping[str, str]]],
               splits: Sequence[str], *, caching_permitted: bool = True):
    super().__init__(splits=splits, caching_permitted=caching_permitted)
    self._load = load
    self._columns: dict[str, dict[str, list[str]]] = {}

  def columns(self, split: str) -> dict[str, list[str]]:
    """The split as {feature: [value per example]}; an empty split is an error."""
    if split not in self.splits:
      raise DataError(f"Unknown split {split!r}; this source has {list(self.splits)}.")
    if split not in self._columns:
      examples = self._load(split)
      if not examples:
        raise CorpusError(f"The {split!r} split of {self} holds no example.")
      self._columns[split] = {key: [example[key] for example in examples]
                              for key in examples[0]}
    return self._columns[split]

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def list_shards(self, split: str) -> Sequence[str]:
    return [split]

  def num_input_examples(self, split: str) -> int:
    return len(next(iter(self.columns(split).values())))

  def get_dataset(self, split: str = "train", shuffle: bool = True, seed: int | None = None,
                  shard_info: seqio.ShardInfo | None = None, *, sequence_length=None,
                  use_cached: bool = False, num_epochs: int | None = 1) -> tf.data.Dataset:
    del sequence_length, use_cached, num_epochs  # Handled by the Task.
    columns = self.columns(split)
    dataset = tf.data.Dataset.from_tensor_slices(columns)
    if shard_info and shard_info.num_shards > 1:
      dataset = dataset.shard(shard_info.num_shards, shard_info.index)
    if shuffle:  # A full permutation: the whole split is in memory anyway.
      dataset = dataset.shuffle(self.num_input_examples(split), seed=seed)
    return dataset

  def __repr__(self) -> str:
    return f"InMemorySource(load={getattr(self._load, '__name__', self._load)})"


class LocalFilesSource(seqio.DataSource):
  """Documents {"id", "text"} from local .txt (one per line) or .jsonl/.json files.

  Read by a Python generator: tf.data cannot checkpoint its position (`reads_in_python`).
  A subclass reads other records from local files (`fields`, `_expand`, `_read`,
  `_empty_split_message`) and keeps the splitting, counting and sharding here.

  Args:
    files: glob pattern(s) of one corpus, split into "train" and "validation" by document
      id (`validation_percent`); or a mapping {split: pattern(s)} for explicit splits.
    text_key: the JSON field that holds the text.
    encoding: the files' text encoding.
    validation_percent: share of documents in "validation" when `files` is not a mapping.
  """

  reads_in_python = True
  fields: tuple[str, ...] = ("id", "text")

  def __init__(self, files: str | Sequence[str] | Mapping[str, str | Sequence[str]], *,
               text_key: str = "text", encoding: str = "utf-8",
               validation_percent: float = 5.0):
    self._text_key = text_key
    self._encoding = encoding
    if isinstance(files, Mapping):
      self._files = {split: self._expand(split, p) for split, p in files.items()}
      self._validation_percent = None
    else:
      all_files = self._expand(document_split.TRAIN, files)
      self._files = {document_split.TRAIN: all_files, document_split.VALIDATION: all_files}
      self._validation_percent = validation_percent
    super().__init__(splits=tuple(self._files), caching_permitted=True)
    self._counts: dict[tuple, int] = {}

  def _expand(self, split: str, patterns: str | Sequence[str]) -> list[str]:
    """The files of `patterns`, given for `split` (for "train" too when split by id)."""
    del split
    return corpus_files.expand_patterns(patterns)

  def _read(self, path: str, split: str) -> Iterator[dict[str, str]]:
    """Every record {field: text} of one file of `split`, with its "id"."""
    del split
    for doc_id, text in corpus_files.read_file(path, text_key=self._text_key,
                                               encoding=self._encoding):
      yield {"id": doc_id, "text": text}

  def _empty_split_message(self, split: str, files: Sequence[str]) -> str:
    return (f"The {split!r} split of {files} holds no document; add text or lower "
            "validation_percent.")

  def _records(self, split: str, files: Sequence[str]) -> Iterator[dict[str, str]]:
    for path in files:
      for record in self._read(path, split):
        if (self._validation_percent is None
            or document_split.split_of(record["id"], self._validation_percent) == split):
          yield record

  def num_input_examples(self, split: str) -> int:
    """Records in `split`, counted by reading the files (cached while they are
    unchanged); the read also validates every line."""
    files = self._files[split]
    key = (split, tuple((f, os.stat(f).st_mtime_ns, os.stat(f).st_size) for f in files))
    if key not in self._counts:
      count = sum(1 for _ in self._records(split, files))
      if not count:
        raise CorpusError(self._empty_split_message(split, files))
      self._counts[key] = count
    return self._counts[key]

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return False

  def list_shards(self, split: str) -> Sequence[str]:
    return self._files[split]

  def get_dataset(self, split: str = "train", shuffle: bool = True, seed: int | None = None,
                  shard_info: seqio.ShardInfo | None = None, *, sequence_length=None,
                  use_cached: bool = False, num_epochs: int | None = 1) -> tf.data.Dataset:
    del sequence_length, use_cached, num_epochs  # Handled by the Task.
    self.num_input_examples(split)  # Fails here, in Python, on a bad or empty corpus.
    files = self._files[split]
    if shard_info:
      files = files[shard_info.index::shard_info.num_shards]
    if shuffle:  # File order only; the Task's shuffle buffer mixes records.
      files = list(files)
      random.Random(seed).shuffle(files)
    fields = self.fields
    generator = lambda: ({field: record[field] for field in fields}
                         for record in self._records(split, files))
    return tf.data.Dataset.from_generator(generator,
                                          output_signature=_string_signature(fields))

  def __repr__(self) -> str:
    return f"{type(self).__name__}(files={self._files})"


class DownstreamFilesSource(LocalFilesSource):
  """Text-to-text examples {"id", "inputs", "targets"} from local .jsonl/.json or .tsv
  files (downstream_files.py); errors name the macros of downstream_files.gin.

  Args:
    train_files: glob pattern(s) of the training examples.
    validation_files: glob pattern(s) of the validation examples; None: the train files
      are split by example id, `validation_percent` of them validate.
    input_key, target_key: the JSON fields or .tsv columns of the input and target texts.
    encoding: the files' text encoding.
    validation_percent: share of the train files' examples that validate, in [0, 100].
  """

  fields = downstream_files.FEATURES

  def __init__(self, train_files: str | Sequence[str],
               validation_files: str | Sequence[str] | None = None, *,
               input_key: str = "input", target_key: str = "target",
               encoding: str = "utf-8", validation_percent: float = 10.0):
    if validation_files is None and not 0 <= validation_percent <= 100:
      raise DataError(f"{downstream_files.VALIDATION_PERCENT_MACRO} must be in [0, 100], "
                      f"got {validation_percent}.")
    self._input_key, self._target_key = input_key, target_key
    self._macros = {document_split.TRAIN: downstream_files.TRAIN_FILES_MACRO,
                    document_split.VALIDATION: (downstream_files.TRAIN_FILES_MACRO
                                                if validation_files is None else
                                                downstream_files.VALIDATION_FILES_MACRO)}
    files = train_files if validation_files is None else {
        document_split.TRAIN: train_files, document_split.VALIDATION: validation_files}
    super().__init__(files, encoding=encoding, validation_percent=validation_percent)

  def _expand(self, split: str, patterns: str | Sequence[str]) -> list[str]:
    return downstream_files.expand_files(patterns, macro=self._macros[split])

  def _read(self, path: str, split: str) -> Iterator[dict[str, str]]:
    return downstream_files.read_file(path, input_key=self._input_key,
                                      target_key=self._target_key, encoding=self._encoding,
                                      files_macro=self._macros[split])

  def _empty_split_message(self, split: str, files: Sequence[str]) -> str:
    if self._validation_percent is None:
      return (f"The {split} files {files} hold no example; add examples to them or point "
              f"{self._macros[split]} at other files.")
    change = "lower" if split == document_split.TRAIN else "raise"
    return (f"The {split!r} split of {files} holds no example "
            f"({self._validation_percent}% of the examples validate); add examples, "
            f"{change} {downstream_files.VALIDATION_PERCENT_MACRO} or give "
            f"{downstream_files.VALIDATION_FILES_MACRO}.")


class PreparedTfdsSource(seqio.TfdsDataSource):
  """A TFDS dataset read from a prepared data directory, never downloaded or generated.

  `seqio.TfdsDataSource(read_only=True)` whose dataset is first checked to be prepared in
  the data directory, so a missing dataset is one clear `CorpusError` naming the directory,
  not a TFDS KeyError about empty splits. Same arguments as seqio.TfdsDataSource.
  """

  def __init__(self, tfds_name: str, **kwargs):
    super().__init__(tfds_name, read_only=True, **kwargs)

  def _check_prepared(self, split: str) -> None:
    loader = self.tfds_dataset
    try:
      prepared = split in loader.builder.info.splits
    except AssertionError:  # TFDS cannot build this version from code: no prepared files.
      prepared = False
    if not prepared:
      data_dir = loader.data_dir or "the default ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
      raise CorpusError(
          f"The TFDS dataset {loader.name} (split {split!r}) is not prepared in the TFDS "
          f"data directory {data_dir}. Prepare it there (e.g. `tfds build`), or point the "
          "tasks at the directory holding it (tasks.register_all(tfds_data_dir=...) or "
          "seqio.set_tfds_data_dir_override).")

  def list_shards(self, split: str) -> Sequence[str]:
    self._check_prepared(split)
    return super().list_shards(split)

  def get_dataset(self, split: str | None = None, *args, **kwargs) -> tf.data.Dataset:
    self._check_prepared(split or "train")
    return super().get_dataset(split, *args, **kwargs)


class HuggingFaceSource(seqio.DataSource):
  """String fields of a Hugging Face dataset, e.g. allenai/c4 "en" streamed.

  Read by a Python generator: tf.data cannot checkpoint its position (`reads_in_python`).

  Args:
    path: the dataset's name on the Hub or a builder such as "json" or "parquet".
    fields: the (string) fields to keep.
    splits: {our split: the dataset's split}, e.g. {"validation": "validation"}.
    name: the dataset configuration (e.g. "en").
    streaming: read without downloading the whole dataset first.
    data_files: local files for builders such as "json".
    shuffle_buffer_size: examples in the streaming shuffle buffer when shuffling.
  """

  reads_in_python = True

  def __init__(self, path: str, *, fields: Sequence[str], splits: Mapping[str, str],
               name: str | None = None, streaming: bool = True,
               data_files: str | Sequence[str] | Mapping[str, str] | None = None,
               shuffle_buffer_size: int = 10_000):
    super().__init__(splits=tuple(splits), caching_permitted=True)
    self._path, self._name, self._split_map = path, name, dict(splits)
    self._fields, self._streaming, self._data_files = tuple(fields), streaming, data_files
    self._shuffle_buffer_size = shuffle_buffer_size

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def list_shards(self, split: str) -> Sequence[str]:
    return [split]

  def _load(self, split: str):
    """The dataset of `split`, after checking that its first example has our fields."""
    import datasets  # Heavy, and only needed by Hugging Face tasks.

    try:
      dataset = datasets.load_dataset(self._path, self._name, split=self._split_map[split],
                                      streaming=self._streaming, data_files=self._data_files)
      first = next(iter(dataset), None)
    except StopIteration:  # Raised while inferring the features of empty data files.
      first = None
    except Exception as error:  # Network, missing dataset, bad config: all user-fixable.
      raise CorpusError(
          f"Cannot load the Hugging Face dataset {self._path!r} (config {self._name!r}, "
          f"split {self._split_map[split]!r}): {str(error) or type(error).__name__}. Without "
          "network access, use a local copy (HF_DATASETS_OFFLINE=1 with a filled cache, or "
          "local data_files).") from error
    if first is None:
      raise CorpusError(f"The {split!r} split of the Hugging Face dataset {self._path!r} is "
                        "empty (or its data_files match no file).")
    missing = [f for f in self._fields if not isinstance(first.get(f), str)]
    if missing:
      raise CorpusError(
          f"The Hugging Face dataset {self._path!r} has no string field {missing[0]!r}; its "
          f"fields are {sorted(first)}.")
    return dataset

  def get_dataset(self, split: str = "train", shuffle: bool = True, seed: int | None = None,
                  shard_info: seqio.ShardInfo | None = None, *, sequence_length=None,
                  use_cached: bool = False, num_epochs: int | None = 1) -> tf.data.Dataset:
    del sequence_length, use_cached, num_epochs  # Handled by the Task.
    import datasets
    import datasets.distributed

    dataset = self._load(split)
    if shard_info and shard_info.num_shards > 1:
      dataset = datasets.distributed.split_dataset_by_node(
          dataset, rank=shard_info.index, world_size=shard_info.num_shards)
    if shuffle:
      if isinstance(dataset, datasets.IterableDataset):
        dataset = dataset.shuffle(seed=seed, buffer_size=self._shuffle_buffer_size)
      else:
        dataset = dataset.shuffle(seed=seed)
    fields = self._fields
    generator = lambda: ({f: example[f] for f in fields} for example in dataset)
    return tf.data.Dataset.from_generator(generator,
                                          output_signature=_string_signature(fields))

  def __repr__(self) -> str:
    return f"HuggingFaceSource(path={self._path!r}, name={self._name!r})"
