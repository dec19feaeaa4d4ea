"""Your own text-to-text files as a task (gin_configs/data/downstream_files.gin): finetuned
and evaluated through the real train and eval entry points, split deterministically by
example id, and refused with one error naming the file, the line and the macro."""

import hashlib
import json
import os

import numpy as np
import pytest
import seqio

from miniend_jax import gin_cli
from miniend_jax.data.dataset import with_vocabulary
from miniend_jax.data.errors import CorpusError, DataError
from miniend_jax.evaluation import evaluator
from tasks import downstream_files
from tests.training_runs import train_with

DATA = "data/downstream_files.gin"
LABELS = ("even", "odd")


def _labelled(numbers):
  """A classification-like task: "is <n> even or odd?" -> "even" / "odd"."""
  return [{"input": f"is {n} even or odd?", "target": LABELS[n % 2]} for n in numbers]


def _write(path, lines, *, ending="\n", encoding="utf-8"):
  path.write_bytes("".join(line + ending for line in lines).encode(encoding))
  return str(path)


def _jsonl(path, records):
  return _write(path, [json.dumps(record) for record in records])


def test_files_task_finetunes_and_evaluates_through_train_and_eval(
    tmp_path, trained_checkpoint, sentencepiece_model):
  """runs/finetune.gin + downstream_files.gin: training evaluates the validation file at
  the end, with accuracy and ROUGE as recomputed from the logged predictions; runs/eval.gin
  + downstream_files.gin gives the same numbers on the finished run, and accuracy 0 on the
  checkpoint it started from."""
  from rouge_score import rouge_scorer  # pylint: disable=g-import-not-at-top

  train = _jsonl(tmp_path / "train.jsonl", _labelled(range(64)))
  validation_examples = _labelled(range(100, 112))
  validation = _jsonl(tmp_path / "validation.jsonl", validation_examples)
  start_dir, config, _ = trained_checkpoint
  data = [f"DOWNSTREAM_TRAIN_FILES = '{train}'",
          f"DOWNSTREAM_VALIDATION_FILES = '{validation}'",
          "DOWNSTREAM_METRICS = 'accuracy,rouge'", "DOWNSTREAM_TASK_NAME = 'parity'",
          "TASK_FEATURE_LENGTHS = {'inputs': 16, 'targets': 8}"]
  model_dir = str(tmp_path / "finetune")
  train_with(model_dir, *data, "BATCH_SIZE = 8", "STUDENT_CONFIG = %TINY",
             f"tiny/config.preset.vocab_size = {config.vocab_size}",
             "tiny/config.preset.num_decoder_layers = 3",
             f'INITIAL_CHECKPOINT_PATH = "{start_dir}"', "TRAIN_STEPS = 20",
             "CHECKPOINT_PERIOD = 20", "LOG_PERIOD = 20", "LEARNING_RATE = 2e-2",
             "EVAL_BATCH_SIZE = 16",
             gin_files=("runs/finetune.gin", "models/tiny.gin", DATA),
             vocabulary=sentencepiece_model)

  eval_dir = os.path.join(model_dir, "eval")
  with open(os.path.join(eval_dir, "parity-metrics.jsonl")) as f:
    (final,) = [json.loads(line) for line in f]
  assert final["step"] == 20
  assert final["num_examples"] == len(validation_examples) == 12
  with open(os.path.join(eval_dir, "parity-000020.jsonl")) as f:
    logged = [json.loads(line) for line in f]
  assert [r["target"] for r in logged] == [e["target"] for e in validation_examples]
  predictions = [r["prediction"] for r in logged]
  assert set(predictions) <= set(LABELS)  # Finetuned: it answers with a label.
  assert final["accuracy"] == pytest.approx(
      100 * np.mean([p == e["target"] for p, e in zip(predictions, validation_examples)]))
  scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"], use_stemmer=True)
  scores = [scorer.score(e["target"], p) for p, e in zip(predictions, validation_examples)]
  for key in ("rouge1", "rouge2", "rougeLsum"):
    assert final[key] == pytest.approx(100 * np.mean([s[key].fmeasure for s in scores]))

  def evaluate(checkpoint_path, eval_output_dir):
    return gin_cli.call_configured(
        evaluator.evaluate, ["runs/eval.gin", DATA],
        [f'CHECKPOINT_PATH = "{checkpoint_path}"', f'EVAL_OUTPUT_DIR = "{eval_output_dir}"',
         "BATCH_SIZE = 16", *data,
         f'SENTENCEPIECE_MODEL = "{sentencepiece_model}"'])

  eval_output_dir = str(tmp_path / "eval")
  results = evaluate(model_dir, eval_output_dir)
  expected = {key: value for key, value in final.items() if key != "step"}
  assert results[20]["parity"] == pytest.approx(expected)
  with open(os.path.join(eval_output_dir, "parity-metrics.jsonl")) as f:
    assert json.loads(f.read()) == pytest.approx(final)
  (before,) = evaluate(start_dir, str(tmp_path / "before")).values()
  assert before["parity"]["accuracy"] == 0 < final["accuracy"]


def _bucket_validates(example_id, percent):
  """The documented split rule, computed here independently of document_split.py."""
  digest = hashlib.sha256(example_id.encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") % 10_000 < percent * 100


def _source_examples(task, split, **kwargs):
  return {e["id"].numpy().decode(): (e["inputs"].numpy().decode(),
                                     e["targets"].numpy().decode())
          for e in task.source.get_dataset(split, **kwargs)}


def test_tsv_and_jsonl_split_by_percent_into_disjoint_deterministic_splits(
    tmp_path, task_vocabulary):
  """Train files alone: every example lands in exactly one split, the one its id hashes
  to, whichever source object or shuffle reads it; .tsv columns are found by the header
  (with a byte-order mark and Windows line endings), JSON numbers become text."""
  rows = ["\ufefflabel\tsource\tsentence"] + [
      f"{LABELS[n % 2]}\tweb\tis {n} even or odd?" for n in range(200)]
  rows.insert(50, "")  # A blank line: skipped, but it still counts for the line numbers.
  tsv = _write(tmp_path / "rows.tsv", rows, ending="\r\n")
  _jsonl(tmp_path / "more.jsonl", [{"sentence": f"is {n} even or odd?", "label": n % 2}
                                   for n in range(200, 300)])
  expected = {}
  for number, row in enumerate(rows[1:], start=2):
    if row:
      label, _, sentence = row.split("\t")
      expected[f"rows.tsv:{number}"] = (sentence, label)
  for number, n in enumerate(range(200, 300), start=1):
    expected[f"more.jsonl:{number}"] = (f"is {n} even or odd?", str(n % 2))

  register = lambda: seqio.get_mixture_or_task(downstream_files.downstream_files_task(
      [tsv, str(tmp_path / "*.jsonl")], input_key="sentence", target_key="label",
      validation_percent=20.0, name="tsv_split"))
  task = register()
  train = _source_examples(task, "train", shuffle=False)
  validation = _source_examples(task, "validation", shuffle=False)
  assert not set(train) & set(validation)
  assert {**train, **validation} == expected
  assert sorted(validation) == sorted(i for i in expected if _bucket_validates(i, 20.0))
  assert 0.1 < len(validation) / len(expected) < 0.3
  assert task.num_input_examples("validation") == len(validation)
  again = register()  # A new source reading the same files, shuffled: the same splits.
  assert _source_examples(again, "validation", shuffle=True, seed=5) == validation
  assert _source_examples(again, "train", shuffle=True, seed=5) == train
  # The task's own pipeline: tokenized, nothing dropped, text as given.
  tokenized = list(with_vocabulary(task, task_vocabulary).get_dataset(
      {"inputs": 32, "targets": 4}, "validation", shuffle=False))
  assert [(e["inputs_pretokenized"].numpy().decode(),
           e["targets_pretokenized"].numpy().decode()) for e in tokenized] == list(
               validation.values())
  assert all(e["targets"].numpy()[-1] == 1 for e in tokenized)  # EOS appended.
  assert [fn.__name__ for fn in task.metric_fns] == ["accuracy", "example_count"]


GOOD = b'{"input": "is 1 even or odd?", "target": "odd"}\n'
# (case, files to write {name: bytes}, task arguments (paths by name), error, message).
BAD_FILES = [
    ("train_pattern_matches_nothing", {}, {"train_files": "missing-*.jsonl"}, CorpusError,
     r"No corpus file matches '.*missing-\*\.jsonl': check DOWNSTREAM_TRAIN_FILES"),
    ("validation_pattern_matches_nothing", {"t.jsonl": GOOD},
     {"train_files": "t.jsonl", "validation_files": "dev-*.jsonl"}, CorpusError,
     r"No corpus file matches '.*dev-\*\.jsonl': check DOWNSTREAM_VALIDATION_FILES"),
    ("unsupported_suffix", {"t.jsonl": GOOD, "t.csv": b"input,target\n"},
     {"train_files": "t.*"}, CorpusError,
     r"t\.csv is neither a \.jsonl, \.json nor \.tsv file.*DOWNSTREAM_TRAIN_FILES"),
    ("not_utf8", {"latin1.jsonl": GOOD + b'{"input": "caf\xe9", "target": "odd"}\n'},
     {"train_files": "latin1.jsonl"}, CorpusError,
     r"latin1\.jsonl:2 is not valid utf-8 text \(byte 0xe9.*set DOWNSTREAM_ENCODING"),
    ("line_not_json", {"t.jsonl": GOOD + b"{oops\n"}, {"train_files": "t.jsonl"},
     CorpusError, r"t\.jsonl:2 is not valid JSON .*leave the file out of "
                  r"DOWNSTREAM_TRAIN_FILES"),
    ("line_not_an_object", {"t.jsonl": GOOD + b"\n" + b'["is 2 even?", "even"]\n'},
     {"train_files": "t.jsonl"}, CorpusError,
     r"t\.jsonl:3 is valid JSON but not an object.*DOWNSTREAM_TRAIN_FILES"),
    ("json_without_input", {"t.jsonl": b'{"text": "is 1 even?", "target": "odd"}\n'},
     {"train_files": "t.jsonl"}, CorpusError,
     r"t\.jsonl:1 has no field 'input' .*\['target', 'text'\]\); set DOWNSTREAM_INPUT_KEY"),
    ("json_without_target", {"t.jsonl": GOOD,
                             "dev.jsonl": GOOD + b'{"input": "is 2 even?", "label": 0}\n'},
     {"train_files": "t.jsonl", "validation_files": "dev.jsonl"}, CorpusError,
     r"dev\.jsonl:2 has no field 'target' .*set DOWNSTREAM_TARGET_KEY"),
    ("tsv_without_input_column", {"t.tsv": b"sentence\ttarget\nis 1 even?\todd\n"},
     {"train_files": "t.tsv"}, CorpusError,
     r"t\.tsv:1 \(the header\) has no column 'input' .*set DOWNSTREAM_INPUT_KEY"),
    ("tsv_without_target_column", {"t.tsv": b"input\tlabel\nis 1 even?\todd\n"},
     {"train_files": "t.tsv", "target_key": "gold"}, CorpusError,
     r"t\.tsv:1 \(the header\) has no column 'gold' .*set DOWNSTREAM_TARGET_KEY"),
    ("tsv_row_with_extra_field", {"t.tsv": b"input\ttarget\na\tb\nis 1\teven\todd\n"},
     {"train_files": "t.tsv"}, CorpusError,
     r"t\.tsv:3 has 3 tab-separated field\(s\) where the header \(line 1\) names 2 "
     r"columns.*DOWNSTREAM_TRAIN_FILES"),
    ("tsv_row_short_in_validation", {"t.jsonl": GOOD, "dev.tsv": b"input\ttarget\nodd\n"},
     {"train_files": "t.jsonl", "validation_files": "dev.tsv"}, CorpusError,
     r"dev\.tsv:2 has 1 tab-separated field\(s\) .*leave the file out of "
     r"DOWNSTREAM_VALIDATION_FILES"),
    ("metric_misspelled", {"t.jsonl": GOOD}, {"train_files": "t.jsonl", "metrics": "acuracy"},
     DataError, r"Unknown metric 'acuracy' in DOWNSTREAM_METRICS \(did you mean "
                r"'accuracy'\?\)"),
    ("train_split_empty", {"t.jsonl": GOOD * 3},
     {"train_files": "t.jsonl", "validation_percent": 100.0}, CorpusError,
     r"The 'train' split of .*t\.jsonl'\] holds no example .*lower "
     r"DOWNSTREAM_VALIDATION_PERCENT or give DOWNSTREAM_VALIDATION_FILES"),
    ("validation_split_empty", {"t.jsonl": GOOD * 3},
     {"train_files": "t.jsonl", "validation_percent": 0.0}, CorpusError,
     r"The 'validation' split of .*t\.jsonl'\] holds no example .*raise "
     r"DOWNSTREAM_VALIDATION_PERCENT or give DOWNSTREAM_VALIDATION_FILES"),
    ("validation_file_blank", {"t.jsonl": GOOD, "dev.jsonl": b"\n  \n"},
     {"train_files": "t.jsonl", "validation_files": "dev.jsonl"}, CorpusError,
     r"The validation files .*dev\.jsonl'\] hold no example.*DOWNSTREAM_VALIDATION_FILES"),
    ("validation_percent_out_of_range", {"t.jsonl": GOOD},
     {"train_files": "t.jsonl", "validation_percent": 150.0}, DataError,
     r"DOWNSTREAM_VALIDATION_PERCENT must be in \[0, 100\], got 150\.0"),
]


@pytest.mark.parametrize("case,files,arguments,error,message",
                         BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_bad_files_raise_one_error_naming_the_file_and_macro(tmp_path, case, files,
                                                             arguments, error, message):
  for name, content in files.items():
    (tmp_path / name).write_bytes(content)
  arguments = {key: str(tmp_path / value) if key.endswith("_files") else value
               for key, value in arguments.items()}
  with pytest.raises(error, match=message) as raised:
    downstream_files.downstream_files_task(**arguments, name=f"bad_{case}")
  assert "\n" not in str(raised.value)
  assert f"bad_{case}" not in seqio.TaskRegistry.names()  # Nothing half-registered.


def test_bad_file_stops_a_gin_run_before_it_trains(tmp_path, sentencepiece_model):
  """Through train and runs/finetune.gin: refused while gin builds the run's arguments,
  before MODEL_DIR is made."""
  train = _jsonl(tmp_path / "train.jsonl", _labelled(range(8)))
  validation = _write(tmp_path / "dev.jsonl", [json.dumps({"input": "is 9 even?"})])
  model_dir = str(tmp_path / "run")
  with pytest.raises(CorpusError, match=r"dev\.jsonl:1 has no field 'target' .*"
                                        r"DOWNSTREAM_TARGET_KEY"):
    train_with(model_dir, f"DOWNSTREAM_TRAIN_FILES = '{train}'",
               f"DOWNSTREAM_VALIDATION_FILES = '{validation}'",
               "TASK_FEATURE_LENGTHS = {'inputs': 16, 'targets': 4}", "BATCH_SIZE = 8",
               "STUDENT_CONFIG = %TINY", f'INITIAL_CHECKPOINT_PATH = "{tmp_path}"',
               gin_files=("runs/finetune.gin", "models/tiny.gin", DATA),
               vocabulary=sentencepiece_model)
  assert not os.path.exists(model_dir)
