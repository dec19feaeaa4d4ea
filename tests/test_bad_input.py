"""Bad input reaches the trainer the way a user gives it (gin files and bindings, data
files, checkpoint paths) and is refused with one error that names what to change, before
anything is compiled, with every file already there left as it was.

CASES is the table docs/faults.md's "Faults and bad input" section shows
(test_readme_lists_every_case keeps the two in step). Each case gives the gin files and
bindings to run with (built from a per-test `paths` fixture: a scratch directory, the
session's finished tiny run, a vocabulary) and the expected error type and message.
"""

import gzip
import hashlib
import json
import os
import re
import shutil
import socket
import stat

import pytest
import seqio

from miniend_jax.convert.validation import CheckpointError
from miniend_jax.data.errors import CorpusError, DataError, UnknownTaskError, VocabularyError
from miniend_jax.distill.objectives import ObjectiveError
from miniend_jax.gin_cli import GinConfigError
from miniend_jax.model.config import ConfigError
from miniend_jax.taps import TapError
from miniend_jax.train.optimizers import OptimizerError
from miniend_jax.train.frozen_models import FrozenModelError
from miniend_jax.train.partitioning import PartitioningError
from miniend_jax.train.run_lock import RunLockedError, process_start
from miniend_jax.train.run_record import RunDefinitionError
from miniend_jax.train.trainer import TrainError
from tests.training_runs import REPO, TINY, train_with

CORPUS = "data/corpus_files.gin"
INTERPOLATED = "experiments/tiny_interpolated.gin"


def _corpus(paths, name, content: bytes):
  path = os.path.join(paths["scratch"], name)
  with open(path, "wb") as f:
    f.write(content)
  return [f"CORPUS_FILES = '{path}'"]


def _teacher_dir_with(paths, files):
  teacher = os.path.join(paths["scratch"], "teacher")
  os.makedirs(teacher)
  for name, content in files.items():
    with open(os.path.join(teacher, name), "w") as f:
      f.write(content)
  return [f"TEACHER_CHECKPOINT = '{teacher}'"]


# seqio's own test model: T5's special ids, other pieces than the session's vocabulary.
OTHER_SENTENCEPIECE_MODEL = os.path.join(os.path.dirname(seqio.__file__), "test_data",
                                         "sentencepiece", "sentencepiece.model")


def _teacher_with_other_vocabulary(paths):
  teacher = os.path.join(paths["scratch"], "teacher")
  shutil.copytree(paths["finished_run"], teacher)
  shutil.copyfile(OTHER_SENTENCEPIECE_MODEL, os.path.join(teacher, "spiece.model"))
  return [f"TEACHER_CHECKPOINT = '{teacher}'"]


def _assistant_with_other_vocabulary(paths):
  assistant = os.path.join(paths["scratch"], "assistant")
  shutil.copytree(paths["finished_run"], assistant)
  shutil.copyfile(OTHER_SENTENCEPIECE_MODEL, os.path.join(assistant, "spiece.model"))
  return [f"ASSISTANT_CHECKPOINT = '{assistant}'"]


def _resume_as(paths, *bindings):
  shutil.copytree(paths["finished_run"], paths["model_dir"], dirs_exist_ok=True)
  return list(bindings)


def _cut(path, keep=0.5):
  """Truncate the file at `path` to `keep` of its bytes, as a copy cut short would be."""
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:int(len(data) * keep)])


def _hf_checkpoint(paths, damage, setting="TEACHER_CHECKPOINT"):
  """The finished run exported as a Hugging Face directory for `setting` (a teacher's
  architecture from its config.json), then `damage(directory)`."""
  from miniend_jax.convert import checkpoint_loading, hf  # pylint: disable=g-import-not-at-top
  directory = os.path.join(paths["scratch"], "hf")
  hf.save(*checkpoint_loading.load_model(paths["finished_run"]), directory)
  damage(directory)
  return ([f"{setting} = '{directory}'"]
          + (["TEACHER_CONFIG = None"] if setting == "TEACHER_CHECKPOINT" else []))


def _pytorch_bin_cut_short(directory):
  """model.safetensors replaced by the pytorch_model.bin torch.save writes, cut short."""
  import torch  # pylint: disable=g-import-not-at-top
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  state = load_file(os.path.join(directory, "model.safetensors"))
  os.remove(os.path.join(directory, "model.safetensors"))
  torch.save({k: torch.from_numpy(v) for k, v in state.items()},
             os.path.join(directory, "pytorch_model.bin"))
  _cut(os.path.join(directory, "pytorch_model.bin"))


def _t5x_teacher_cut_short(paths):
  """A t5x checkpoint_<step>/ (msgpack layout) of the finished run's weights whose msgpack
  file is cut short."""
  from miniend_jax.convert import checkpoint_loading  # pylint: disable=g-import-not-at-top
  from tests.test_convert_t5x import write_legacy  # pylint: disable=g-import-not-at-top
  step_dir = os.path.join(paths["scratch"], "t5x", "checkpoint_4")
  write_legacy(step_dir, checkpoint_loading.load_model(paths["finished_run"])[1])
  _cut(os.path.join(step_dir, "checkpoint"))
  return [f"TEACHER_CHECKPOINT = '{step_dir}'"]


def _own_teacher_cut_short(paths):
  """A copy of the finished run whose newest checkpoint's data file holding the student's
  embedding (found in the checkpoint's OCDBT index; which file holds it varies from run to
  run) is cut halfway through the embedding."""
  import tensorstore  # pylint: disable=g-import-not-at-top
  teacher = os.path.join(paths["scratch"], "teacher")
  shutil.copytree(paths["finished_run"], teacher)
  state = os.path.join(teacher, "checkpoint_4", "state")
  index = tensorstore.KvStore.open({"driver": "file", "path": state + "/"}).result()
  version = tensorstore.ocdbt.dump(index).result()["versions"][0]
  assert version["root_height"] == 0   # one index node: a tiny checkpoint
  entries = tensorstore.ocdbt.dump(index, version["root"]["location"]).result()["entries"]
  value = next(e["indirect_value"] for e in entries
               if e["key"] == b"params.student.token_embedder.embedding/0.0")
  _, directory, name, offset, length = value.split(":")  # value:<dir>/:d/<file>:<offset>:<length>
  file = os.path.join(state, directory, name)
  _cut(file, keep=(int(offset) + int(length) // 2) / os.path.getsize(file))
  return [f"TEACHER_CHECKPOINT = '{teacher}'", "TEACHER_CONFIG = None"]


def _overwrite(path, text):
  with open(path, "w") as f:
    f.write(text)


def _damaged_vocabulary(paths, damage):
  """A copy of the run's SentencePiece model as SENTENCEPIECE_MODEL, then `damage(path)`."""
  path = os.path.join(paths["scratch"], "spiece.model")
  shutil.copyfile(paths["vocabulary"], path)
  damage(path)
  return [f"SENTENCEPIECE_MODEL = '{path}'"]


# A gzip-compressed corpus of 2000 lines (about 20 kB).
GZIP_CORPUS = gzip.compress("".join(f"Line {i} of a corpus: {i * 7919 % 1000} words.\n"
                                    for i in range(2000)).encode())


# (id, what the user did, gin files, bindings(paths), error, message pattern)
CASES = [
    # ---- configuration ----
    ("required_macro_unset", "a required macro left unset (MIXTURE_OR_TASK_NAME)", (TINY,),
     lambda p: ["MIXTURE_OR_TASK_NAME = %gin.REQUIRED"], GinConfigError,
     "Required macro MIXTURE_OR_TASK_NAME is not set"),
    ("gin_file_misspelled", "a misspelled --gin_file", (TINY, "objectives/miniend_x.gin"),
     lambda p: [], GinConfigError, "did you mean 'objectives/miniend_e.gin'"),
    ("binding_misspelled", "a misspelled parameter in a binding", (TINY,),
     lambda p: ["trainer.train.totl_steps = 3"], GinConfigError, "totl_steps"),
    ("model_shape_impossible", "an impossible model shape (num_heads = 0)", (TINY,),
     lambda p: ["student/config.preset.num_heads = 0"], ConfigError, "num_heads"),
    ("relation_heads_not_dividing", "RELATION_HEADS not dividing a model's heads x head_dim",
     (TINY,), lambda p: ["RELATION_HEADS = 5"], ObjectiveError, "RELATION_HEADS|relation"),
    ("teacher_layer_out_of_range", "a layer tap past the teacher's depth (TEACHER_LAYER = 7)",
     (TINY,), lambda p: ["TEACHER_LAYER = 7"], (ObjectiveError, TapError), "layer"),
    ("vocab_size_mismatch", "teacher and student vocabularies of different sizes", (TINY,),
     lambda p: ["teacher/config.preset.vocab_size = 2048"], ObjectiveError, "vocab"),
    ("vocabulary_larger_than_model", "a vocabulary with more ids than the models' vocab_size",
     (TINY,), lambda p: ["VOCAB_SIZE = 512"], TrainError, "1100 token ids.*vocab_size is 512"),
    ("batch_not_divisible", "a batch not divisible by the mesh's data axis", (TINY,),
     lambda p: ["BATCH_SIZE = 6"], PartitioningError, "BATCH_SIZE=6 is not divisible"),
    ("model_parallel_not_dividing", "MODEL_PARALLEL_SIZE not dividing the device count",
     (TINY,), lambda p: ["MODEL_PARALLEL_SIZE = 3"], PartitioningError, "MODEL_PARALLEL_SIZE"),
    ("microbatches_not_dividing", "NUM_MICROBATCHES not dividing the batch", (TINY,),
     lambda p: ["NUM_MICROBATCHES = 3"], TrainError, "num_microbatches=3"),
    ("train_steps_zero", "TRAIN_STEPS = 0", (TINY,), lambda p: ["TRAIN_STEPS = 0"],
     OptimizerError, "TRAIN_STEPS >= 1"),
    ("nonfinite_policy_unknown", "an unknown ON_NONFINITE policy", (TINY,),
     lambda p: ["ON_NONFINITE = 'ignore'"], TrainError, "ON_NONFINITE must be one of"),
    # ---- data ----
    ("task_misspelled", "a misspelled task name", (TINY,),
     lambda p: ["MIXTURE_OR_TASK_NAME = 'embeded_span_corruption'"], UnknownTaskError,
     "Did you mean 'embedded_span_corruption'"),
    ("split_missing", "a split the task does not have", (TINY,),
     lambda p: ["train/dataset.DatasetConfig.split = 'test'"], DataError, "has no split 'test'"),
    ("feature_length_missing", "TASK_FEATURE_LENGTHS without targets", (TINY,),
     lambda p: ["TASK_FEATURE_LENGTHS = {'inputs': 64}"], DataError, "targets"),
    ("corpus_file_missing", "CORPUS_FILES matching no file", (TINY, CORPUS),
     lambda p: [f"CORPUS_FILES = '{p['scratch']}/none/*.txt'"], CorpusError,
     "No corpus file matches"),
    ("corpus_empty", "an empty corpus file", (TINY, CORPUS),
     lambda p: _corpus(p, "empty.txt", b"\n \n"), CorpusError, "no document"),
    ("corpus_not_utf8", "a corpus file that is not UTF-8", (TINY, CORPUS),
     lambda p: _corpus(p, "latin1.txt", "caf\u00e9 cr\u00e8me\n".encode("latin-1") * 50),
     CorpusError, "latin1.txt:1.*CORPUS_ENCODING|encoding"),
    ("corpus_json_without_text", "a JSON-lines corpus without the text field", (TINY, CORPUS),
     lambda p: _corpus(p, "docs.jsonl", b'{"body": "words"}\n'), CorpusError,
     "no string field 'text'"),
    ("vocabulary_missing", "a SentencePiece model path that does not exist", (TINY,),
     lambda p: ["SENTENCEPIECE_MODEL = '/nonexistent/spiece.model'"],
     VocabularyError, "/nonexistent/spiece.model"),
    ("vocabulary_truncated", "a SentencePiece model cut in half", (TINY,),
     lambda p: _damaged_vocabulary(p, _cut), VocabularyError,
     r"(?m)^SentencePiece model '.*/spiece.model' cannot be read: the file is truncated \(its "
     r"last record needs at least [\d.]+ kB, the file has [\d.]+ kB\); copy it again, or train "
     r"one with `python -m miniend_jax.data.sentencepiece_training`\.$"),
    ("vocabulary_empty", "an empty SentencePiece model file", (TINY,),
     lambda p: _damaged_vocabulary(p, lambda path: _cut(path, keep=0)), VocabularyError,
     r"(?m)^SentencePiece model '.*/spiece.model' cannot be read: the file is empty; copy it "
     r"again, or train one with .*\.$"),
    ("vocabulary_not_sentencepiece", "a text file as SENTENCEPIECE_MODEL", (TINY,),
     lambda p: _damaged_vocabulary(p, lambda path: _overwrite(path, "pad eos unk\n")),
     VocabularyError, r"(?m)^SentencePiece model '.*/spiece.model' cannot be read: it is a "
     r"text file, not a SentencePiece model \(it starts with 'pad eos unk'\); copy it again, "
     r"or train one with .*\.$"),
    ("corpus_gz_truncated", "a gzip-compressed corpus file cut in half", (TINY, CORPUS),
     lambda p: _corpus(p, "docs.txt.gz", GZIP_CORPUS[:len(GZIP_CORPUS) // 2]), CorpusError,
     r"(?m)^/.*/docs.txt.gz cannot be read: the file is truncated \(its gzip stream ends "
     r"before its end marker\); copy it again\.$"),
    # ---- checkpoints and paths ----
    ("teacher_missing", "a TEACHER_CHECKPOINT that does not exist", (TINY,),
     lambda p: ["TEACHER_CHECKPOINT = '/nonexistent/teacher'"], CheckpointError,
     "does not exist"),
    ("teacher_wrong_format", "a TEACHER_CHECKPOINT directory in no known format", (TINY,),
     lambda p: _teacher_dir_with(p, {"weights.txt": "not a checkpoint"}), CheckpointError,
     "is not a checkpoint this project reads"),
    ("teacher_safetensors_truncated", "a Hugging Face teacher whose model.safetensors is cut "
     "in half", (TINY,),
     lambda p: _hf_checkpoint(p, lambda d: _cut(os.path.join(d, "model.safetensors"))),
     CheckpointError, r"(?m)^TEACHER_CHECKPOINT file '.*/hf/model.safetensors' cannot be read: "
     r"the file is truncated \(the safetensors header says .* kB, the file has .* kB\); copy "
     r"it again\.$"),
    ("teacher_safetensors_empty", "a Hugging Face teacher whose model.safetensors is empty",
     (TINY,),
     lambda p: _hf_checkpoint(p, lambda d: _cut(os.path.join(d, "model.safetensors"), 0)),
     CheckpointError, r"(?m)^TEACHER_CHECKPOINT file '.*/hf/model.safetensors' cannot be read: "
     r"the file is empty; copy it again\.$"),
    ("teacher_safetensors_foreign", "a text file named model.safetensors", (TINY,),
     lambda p: _hf_checkpoint(p, lambda d: _overwrite(os.path.join(d, "model.safetensors"),
                                                      "<!DOCTYPE html>\n<html>Sign in")),
     CheckpointError, r"(?m)^TEACHER_CHECKPOINT file '.*/hf/model.safetensors' cannot be read: "
     r"it is a text file, not a safetensors file \(it starts with '<!DOCTYPE html>'\); copy it "
     r"again\.$"),
    ("teacher_pytorch_bin_truncated", "a Hugging Face teacher whose pytorch_model.bin is cut "
     "in half", (TINY,),
     lambda p: _hf_checkpoint(p, _pytorch_bin_cut_short),
     CheckpointError, r"(?m)^TEACHER_CHECKPOINT file '.*/hf/pytorch_model.bin' cannot be read: "
     r"the file is truncated \(it is a zip archive without its central directory, which is "
     r"written last\); copy it again\.$"),
    ("teacher_t5x_truncated", "a t5x teacher whose msgpack checkpoint file is cut in half",
     (TINY,), _t5x_teacher_cut_short, CheckpointError,
     r"(?m)^TEACHER_CHECKPOINT file '.*/t5x/checkpoint_4/checkpoint' cannot be read: the file "
     r"is truncated \(its msgpack data ends inside a value\); copy it again\.$"),
    ("teacher_orbax_truncated", "one of our runs as teacher, a data file of its newest "
     "checkpoint cut in half", (TINY,), _own_teacher_cut_short, CheckpointError,
     r"(?m)^TEACHER_CHECKPOINT file '.*/teacher/checkpoint_4/state/ocdbt.process_0/d/\w+' "
     # unreadable_files.truncated: sizes in kB/MB, or in bytes where both round alike
     r"cannot be read: the file is truncated \(the checkpoint's index needs at least "
     r"([\d.]+ [kM]B, the file has [\d.]+ [kM]B|[\d,]+ bytes, the file has [\d,]+)\); "
     r"copy it again\.$"),
    ("initial_checkpoint_truncated", "an INITIAL_CHECKPOINT_PATH whose model.safetensors is cut "
     "in half", (TINY,),
     lambda p: _hf_checkpoint(p, lambda d: _cut(os.path.join(d, "model.safetensors")),
                              setting="INITIAL_CHECKPOINT_PATH"),
     CheckpointError, r"(?m)^Checkpoint file '.*/hf/model.safetensors' cannot be read: the file "
     r"is truncated \(the safetensors header says .* kB, the file has .* kB\); copy it "
     r"again\.$"),
    ("teacher_config_mismatch", "a TEACHER_CONFIG that does not fit the teacher's weights",
     (TINY,), lambda p: [f"TEACHER_CHECKPOINT = '{p['finished_run']}'"], CheckpointError,
     "emb_dim: config 64 vs checkpoint 32"),
    ("resume_other_student", "resuming a MODEL_DIR with a different student", (TINY,),
     lambda p: _resume_as(p, "student/config.preset.emb_dim = 48"), CheckpointError,
     "different student.*emb_dim: checkpoint 32 vs config 48"),
    ("teacher_other_vocabulary", "a TEACHER_CHECKPOINT carrying another SentencePiece model",
     (TINY,), _teacher_with_other_vocabulary, VocabularyError,
     r"TEACHER_CHECKPOINT .*teacher' carries the SentencePiece model .*teacher/spiece.model, "
     "which is not the run's vocabulary"),
    ("resume_other_vocabulary", "resuming a MODEL_DIR with another SENTENCEPIECE_MODEL",
     (TINY,), lambda p: _resume_as(p, f"SENTENCEPIECE_MODEL = '{OTHER_SENTENCEPIECE_MODEL}'"),
     VocabularyError, r"MODEL_DIR \(resumed\) .* carries the SentencePiece model "
     r".*run/spiece.model.*or change MODEL_DIR"),
    ("assistant_missing", "BLEND_PARTNER = \"assistant\" without an assistant",
     (INTERPOLATED,), lambda p: ["ASSISTANT_CHECKPOINT = None"], FrozenModelError,
     r"blends its logit target with an assistant.*set ASSISTANT_CHECKPOINT"),
    ("assistant_other_vocabulary", "an ASSISTANT_CHECKPOINT carrying another SentencePiece "
     "model", (INTERPOLATED,), _assistant_with_other_vocabulary, VocabularyError,
     r"ASSISTANT_CHECKPOINT .*assistant' carries the SentencePiece model"),
    ("assistant_unread", "an ASSISTANT_CHECKPOINT for an objective that reads no assistant",
     (TINY,), lambda p: [f"ASSISTANT_CHECKPOINT = '{p['finished_run']}'"], FrozenModelError,
     "ASSISTANT_CHECKPOINT is set but the objective reads no assistant"),
    ("model_axis_not_dividing", "a MODEL_PARALLEL_SIZE that does not divide the heads",
     (TINY,), lambda p: ["MODEL_PARALLEL_SIZE = 8"], PartitioningError,
     "has 4 along 'heads', which the 8-way 'model' mesh axis cannot split: set "
     "MODEL_PARALLEL_SIZE to a divisor of 4"),
    ("input_shards_not_dividing", "an INPUT_SHARDS that does not divide BATCH_SIZE", (TINY,),
     lambda p: ["INPUT_SHARDS = 3"], DataError, "INPUT_SHARDS=3 must divide BATCH_SIZE=8"),
    ("resume_other_input_shards", "resuming with another INPUT_SHARDS", (TINY,),
     lambda p: _resume_as(p, "INPUT_SHARDS = 2"), TrainError,
     "INPUT_SHARDS=2, but MODEL_DIR's checkpoints were read as 1 input shards"),
    ("model_dir_is_file", "MODEL_DIR inside a file", (TINY,),
     lambda p: [f"MODEL_DIR = '{p['model_dir']}/notes.txt/run'"], TrainError, "is a file"),
    ("macro_unread", "a misspelt macro (--gin.LERNING_RATE=1e-3)", (TINY,),
     lambda p: ["LERNING_RATE = 1e-3"], GinConfigError,
     r"LERNING_RATE \(set by --gin.LERNING_RATE\) is not read by any configuration; did you "
     r"mean LEARNING_RATE\?"),
    ("model_dir_in_use", "MODEL_DIR locked by a live process of this host", (TINY,),
     lambda p: _locked_by(p, socket.gethostname(), os.getppid()), RunLockedError,
     r"MODEL_DIR .*run is in use by process \d+ on host .* \(since .* UTC\), which is still "
     "running: wait for it to finish"),
    ("model_dir_locked_elsewhere", "MODEL_DIR locked by a process of another host", (TINY,),
     lambda p: _locked_by(p, "another-host", 4242), RunLockedError,
     "locked by process 4242 on host 'another-host' .*cannot be checked from this host: if "
     r"that run is gone, set TAKE_OVER_LOCK = True"),
    ("resume_other_objective", "resuming a MODEL_DIR (TRAIN_STEPS raised) with another "
     "objective (hidden_mse.gin instead of MiniEnD-E)", (TINY, "objectives/hidden_mse.gin"),
     lambda p: _resume_as(p, "TRAIN_STEPS = 6"), RunDefinitionError,
     r"holds checkpoints \(newest: step 4\) trained with other settings that define them: "
     r"objective.*restore the objective .*or set ALLOW_RESUME_CHANGES = True"),
    ("resume_other_teacher", "resuming a MODEL_DIR (TRAIN_STEPS raised) with the teacher in "
     "bfloat16", (TINY,), lambda p: _resume_as(p, "TRAIN_STEPS = 6", "TEACHER_DTYPE = 'bfloat16'"),
     RunDefinitionError, r"teacher.weights: [0-9a-f]+ -> [0-9a-f]+.*restore TEACHER_CHECKPOINT"),
]


def _locked_by(paths, host, pid):
  with open(os.path.join(paths["model_dir"], "run.lock"), "w") as f:
    json.dump({"host": host, "pid": pid, "process_started": process_start(pid),
               "started_at": 1.8e9}, f)
  return []


@pytest.fixture
def paths(tmp_path, single_device_run, sentencepiece_model):
  """scratch (for made-up inputs), model_dir (holds a file that must survive),
  finished_run (the session's tiny run), vocabulary."""
  scratch, model_dir = tmp_path / "inputs", tmp_path / "run"
  scratch.mkdir()
  model_dir.mkdir()
  (model_dir / "notes.txt").write_text("keep")
  return {"scratch": str(scratch), "model_dir": str(model_dir),
          "finished_run": single_device_run, "vocabulary": sentencepiece_model}


def _snapshot(*roots):
  """{path: (size, sha1)} of every file under `roots`."""
  files = {}
  for root in roots:
    for directory, _, names in os.walk(root):
      for name in names:
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
          files[path] = (os.path.getsize(path), hashlib.sha1(f.read()).hexdigest())
  return files


@pytest.mark.parametrize("case_id,gin_files,bindings,error,message",
                         [(c[0], c[2], c[3], c[4], c[5]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_touches_nothing(paths, case_id, gin_files, bindings, error,
                                                  message):
  made = bindings(paths)
  before = _snapshot(paths["model_dir"], paths["finished_run"])
  with pytest.raises(error, match=message):
    train_with(paths["model_dir"], *made, gin_files=gin_files, vocabulary=paths["vocabulary"])
  assert _snapshot(paths["model_dir"], paths["finished_run"]) == before


def test_read_only_model_dir_is_refused(paths):
  """Root writes through any permission bit, so this needs a read-only directory for the
  current user, which only a non-root user gets from chmod."""
  parent = os.path.join(paths["scratch"], "read_only")
  os.makedirs(parent)
  os.chmod(parent, stat.S_IRUSR | stat.S_IXUSR)
  try:
    if os.access(parent, os.W_OK):
      pytest.skip("running as root: chmod does not make a directory read-only")
    with pytest.raises(TrainError, match="not writable.*choose another MODEL_DIR"):
      train_with(os.path.join(parent, "run"), vocabulary=paths["vocabulary"])
    assert os.listdir(parent) == []
  finally:
    os.chmod(parent, stat.S_IRWXU)


def test_readme_lists_every_case():
  """docs/faults.md's "Faults and bad input" table has a row for each case here, each fault of
  tests/test_faults.py, and the cases tested elsewhere (OTHER_IDS), and no other row."""
  from tests.test_faults import FAULT_IDS  # pylint: disable=g-import-not-at-top
  with open(os.path.join(REPO, "docs", "faults.md")) as f:
    readme = f.read()
  section = readme.split("## Faults and bad input", 1)[1].split("\n## ", 1)[0]
  listed = re.findall(r"^\| `([a-z0-9_]+)` \|", section, flags=re.M)
  assert sorted(listed) == sorted([c[0] for c in CASES] + FAULT_IDS + OTHER_IDS)


# Rows of the docs/faults.md table tested outside CASES and tests/test_faults.py.
OTHER_IDS = ["model_dir_read_only",       # test_read_only_model_dir_is_refused, above
             "document_longer_than_sequence",   # the same, below
             "sigterm",                   # tests/test_train.py (the CLI run)
             "export_target_not_empty"]   # tests/test_export.py


def test_documents_longer_than_a_sequence_fill_several(paths, task_vocabulary):
  """Not an error: one 3000-word line of a corpus file fills several rows, none empty."""
  from miniend_jax.data.dataset import BatchIterator, DatasetConfig  # pylint: disable=g-import-not-at-top
  from tasks import pretraining  # pylint: disable=g-import-not-at-top
  path = os.path.join(paths["scratch"], "long.txt")
  with open(path, "w") as f:
    f.write(" ".join(f"word{i % 97} value{i % 13}" for i in range(1500)) + "\n")
  name = pretraining.corpus_span_corruption(path, validation_percent=0.0, name="long_line")
  batches = BatchIterator(DatasetConfig(name, {"inputs": 64, "targets": 16}, "train",
                                        batch_size=4, shuffle=False, num_epochs=1,
                                        vocabulary=task_vocabulary))
  rows = [row for batch in batches for row in batch["encoder_input_tokens"]]
  assert len(rows) >= 8 and all((row != 0).sum() > 32 for row in rows)
  assert len({tuple(row) for row in rows}) == len(rows)
