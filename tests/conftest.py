"""Shared pytest set-up: 8 virtual CPU devices for mesh tests, CPU only, quiet TensorFlow."""

import atexit
import os
import shutil
import tempfile

# Must happen before jax is imported anywhere in the test session.
# LLVM's optimisation level 0: most tests' time is compiling tiny programs, which this
# makes about 8% faster than level 1 (the default is 3); the few compute-heavy ones run slower.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
                      "--xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# One compilation cache for the session, shared with the training subprocesses the tests
# start: the same tiny train step is compiled once, not once per process.
_CACHE_DIR = tempfile.mkdtemp(prefix="miniend-jax-test-compilation-cache-")
atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE_DIR)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


import pytest  # noqa: E402  (after the environment set-up above)


@pytest.fixture(scope="session")
def sentencepiece_model(tmp_path_factory) -> str:
  """A small T5-style SentencePiece model (1000 pieces), trained once per session on the
  start of the embedded corpus."""
  import itertools

  from miniend_jax.data import embedded_corpus, sentencepiece_training

  lines = itertools.islice(embedded_corpus.sentencepiece_lines(), 3000)
  path = str(tmp_path_factory.mktemp("sentencepiece") / "spiece.model")
  sentencepiece_training.write_atomically(
      path, sentencepiece_training.train_sentencepiece(lines, vocab_size=1000))
  return path


@pytest.fixture(scope="session")
def single_device_run(tmp_path_factory, sentencepiece_model) -> str:
  """MODEL_DIR of the tiny experiment run for 4 steps on one device (checkpoints 2 and 4,
  a metrics line per step): the uninterrupted run that resumed ones are compared with."""
  from tests.training_runs import train_with

  model_dir = str(tmp_path_factory.mktemp("one_device") / "run")
  train_with(model_dir, "trainer.train.num_devices = 1", vocabulary=sentencepiece_model)
  return model_dir


@pytest.fixture(scope="session")
def task_vocabulary(sentencepiece_model):
  """The session's SentencePiece model as the vocabulary a run passes to its tasks
  (DatasetConfig.vocabulary, get_mixture_or_task(..., vocabulary=...))."""
  from miniend_jax.data.vocabulary import task_vocabulary as vocabulary_of

  return vocabulary_of(sentencepiece_model)


@pytest.fixture(scope="session")
def tiny_tfds_data_dir(tmp_path_factory):
  """Every TFDS dataset the tasks read, tiny, in a data directory seqio reads from."""
  import seqio

  from tests import tiny_datasets

  data_dir = str(tmp_path_factory.mktemp("tensorflow_datasets"))
  tiny_datasets.write_tfds_datasets(data_dir)
  seqio.set_tfds_data_dir_override(data_dir)
  yield data_dir
  seqio.set_tfds_data_dir_override(None)


@pytest.fixture(scope="module")
def hf_stand_ins(tmp_path_factory):
  """Hugging Face loads of the tasks' datasets answered from local JSON-lines stand-ins."""
  import datasets

  from tests import tiny_datasets

  files = tiny_datasets.write_hf_files(str(tmp_path_factory.mktemp("hf")))
  real_load = datasets.load_dataset

  def load_stand_in(path, name=None, *, split, streaming, data_files=None):
    del name, split, data_files
    return real_load("json", data_files=files[path], split="train", streaming=streaming)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(datasets, "load_dataset", load_stand_in)
    yield files


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory, sentencepiece_model):
  """(run directory, config, params): a tiny model in the session vocabulary saved as the
  trainer saves it, at steps 3 and 7 (the weights differ between the two)."""
  import flax.linen as nn
  import jax
  import optax
  import seqio

  from miniend_jax.model import init_params, preset
  from miniend_jax.train.checkpoints import Checkpointer
  from miniend_jax.train.state import TrainState

  vocab_size = seqio.SentencePieceVocabulary(sentencepiece_model, extra_ids=100).vocab_size
  config = preset("tiny", vocab_size=vocab_size, num_decoder_layers=3)
  model_dir = str(tmp_path_factory.mktemp("trained_run"))
  checkpointer = Checkpointer(model_dir, period=1)
  for step, seed in ((3, 4), (7, 5)):
    params = nn.unbox(init_params(config, jax.random.key(seed)))
    state = TrainState.create({"student": params}, optax.adafactor(1e-3))
    checkpointer.save(step, state, config=config)
  checkpointer.close()
  return model_dir, config, params


# The longest modules (about 20 s or more each on 2 cores), longest first: pytest-xdist
# hands out whole files (--dist loadfile) in collection order, so starting these first keeps
# one worker from running a long file alone at the end.
LONGEST_FIRST = ("test_quickstart.py", "test_train.py", "test_faults.py",
                 "test_train_assistant.py", "test_teacher_recipe.py", "test_bad_input.py",
                 "test_train_compile.py", "test_run_record.py", "test_model_parity.py",
                 "test_run_lock.py", "test_wheel.py", "test_bench.py",
                 "test_quickstart_assistant.py", "test_downstream_files.py")


def pytest_collection_modifyitems(items):
  def rank(item):
    name = item.path.name
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

  items.sort(key=rank)   # stable: the order within a module is kept
