"""Shared pytest set-up: 8 virtual CPU devices for mesh tests, CPU only, quiet TensorFlow."""

import os

# Must happen before jax is imported anywhere in the test session.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402  (after the environment above)


@pytest.fixture(scope="session")
def sentencepiece_model(tmp_path_factory) -> str:
  """A small T5-style SentencePiece model (PAD 0, EOS 1, UNK 2, no BOS), trained once."""
  import pydoc_data.topics  # pylint: disable=g-import-not-at-top
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  directory = tmp_path_factory.mktemp("spm")
  corpus = directory / "corpus.txt"
  text = "\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))
  corpus.write_text(text[:300_000])
  spm.SentencePieceTrainer.train(
      input=str(corpus), model_prefix=str(directory / "spm"), vocab_size=300,
      model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=1,
      character_coverage=1.0, minloglevel=2)
  return str(directory / "spm.model")
