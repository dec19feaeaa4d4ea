"""The quickstart end to end at miniature size with two seeds: every stage, the report and
its numbers (checked against the files the stages wrote and against an independent
recomputation), intervals and the computed verdict, the learning-rate choice, the
figures, the Hugging Face export, reruns and refused settings."""

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch
import transformers

from miniend_jax.convert.checkpoint_loading import load_model
from miniend_jax.data.dataset import BatchIterator, DatasetConfig
from miniend_jax.evaluation.metrics_files import read_jsonl
from miniend_jax.model import Transformer
from miniend_jax.quickstart import pipeline, sizes
from miniend_jax.quickstart.workspace import Workspace

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("teacher", "student_scratch", "student_miniend_e")
STUDENTS = MODELS[1:]
SEEDS = (0, 1)
RATES = sizes.SIZES["miniature"].finetune_learning_rates
HEADLINE = ("validation_loss", "accuracy", "rougeL", "score")
# vocabulary, teacher, 2 students x 2 seeds, their 5 validations, 3 models x (2 rates + 1
# more seed), export.
STAGE_COUNT = 1 + 5 + 5 + 9 + 1


@pytest.fixture(scope="module")
def miniature(tmp_path_factory):
  """(output dir, console output) of `python -m miniend_jax.quickstart --size=miniature
  --seeds=2`."""
  output_dir = str(tmp_path_factory.mktemp("quickstart") / "run")
  result = subprocess.run(
      [sys.executable, "-m", "miniend_jax.quickstart", f"--output_dir={output_dir}",
       "--size=miniature", "--seeds=2"], cwd=REPO, env={**os.environ, "PYTHONPATH": REPO},
      capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
  return output_dir, result.stdout + result.stderr


@pytest.fixture(scope="module")
def report(miniature):
  with open(os.path.join(miniature[0], "report.json")) as f:
    return json.load(f)


def _pretrained(model, seed=0):
  return "teacher" if model == "teacher" else f"{model}.seed{seed}"


def test_every_stage_runs_and_writes_its_outputs(miniature, report):
  output_dir, console = miniature
  pretraining = ["teacher"] + [f"{m}.seed{s}" for m in STUDENTS for s in SEEDS]
  stages = ["vocabulary", *pretraining, *(f"validation_{p}" for p in pretraining)]
  for model in MODELS:
    chosen = report["models"][model]["finetune_learning_rate"]
    stages += [f"finetune_{model}.seed0.lr{pipeline.rate_name(r)}" for r in RATES]
    stages.append(f"finetune_{model}.seed1.lr{pipeline.rate_name(chosen)}")
  for index, stage in enumerate(stages, start=1):
    assert f"stage {index}/{STAGE_COUNT} {stage}: done in" in console, stage
    assert os.path.exists(os.path.join(output_dir, "stages", f"{stage}.json"))
  assert re.search(rf"stage {STAGE_COUNT}/{STAGE_COUNT} export_\w+: done in", console)
  for stage in pretraining:
    run_dir = os.path.join(output_dir, stage)
    assert {"config.gin", "model-info.txt", "metrics.jsonl"} <= set(os.listdir(run_dir))
    assert os.path.exists(os.path.join(output_dir, "gin", f"{stage}.gin"))
  for stage in stages:
    if stage.startswith("finetune_"):
      assert os.path.exists(os.path.join(output_dir, stage, "eval",
                                         "embedded_topic_classification-metrics.jsonl"))
  # The distilled students learnt from the pretrained teacher, not a random one, and the
  # teacher was trained with t5x's recipe (Adafactor).
  for seed in SEEDS:
    config_gin = open(os.path.join(output_dir, f"student_miniend_e.seed{seed}",
                                   "config.gin")).read()
    assert f"# Teacher: loaded from {os.path.join(output_dir, 'teacher')}" in config_gin
  assert "optimizers.adafactor" in open(os.path.join(output_dir, "teacher",
                                                     "config.gin")).read()
  for name in ("report.md", "report.json", "training_losses.png", "gradient_norms.png"):
    assert os.path.getsize(os.path.join(output_dir, name)) > 1000, name
  for name in ("training_losses.png", "gradient_norms.png"):
    with open(os.path.join(output_dir, name), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert "| model | objective | parameters |" in console  # the table, printed at the end


def test_every_student_lists_its_seeds_and_every_metric_an_interval(report):
  assert report["seeds"] == list(SEEDS)
  for model in STUDENTS:
    entry = report["models"][model]
    assert entry["seeds"] == list(SEEDS)
    assert set(entry["per_seed"]) == {"0", "1"}
    for key in HEADLINE:
      estimate = entry["metrics"][key]
      low, high = estimate["interval"]
      assert low <= estimate["mean"] <= high, (model, key, estimate)
      assert len(estimate["per_seed"]) == 2
      assert estimate["seed_interval"] is not None
      assert estimate["mean"] == pytest.approx(np.mean(
          [entry["per_seed"][str(s)][key] for s in SEEDS]))
  assert set(report["models"]["student_miniend_e"]["vs_scratch"]) == set(HEADLINE)
  teacher = report["models"]["teacher"]
  assert teacher["metrics"]["validation_loss"]["seed_interval"] is None  # one teacher
  assert len(teacher["metrics"]["score"]["per_seed"]) == 2  # finetuned under both seeds


def test_the_verdict_follows_from_the_intervals(report):
  versus = report["models"]["student_miniend_e"]["vs_scratch"]
  sentence = next(s for s in report["verdict"] if s.startswith("MiniEnD-E vs scratch"))
  for key, label, higher in (("validation_loss", "span-corruption loss", False),
                             ("score", "score", True)):
    difference = versus[key]
    expected = ("no significant difference" if not difference["significant"] else
                "significantly better" if (difference["mean"] > 0) == higher else
                "significantly worse")
    assert f"{label} {difference['mean']:+.3g}" in sentence
    assert expected in sentence.split(label)[1].split(";")[0], sentence
    low, high = difference["interval"]
    assert difference["significant"] == (low > 0 or high < 0)
  versus = report["teacher_vs_best_student"]
  sentence = next(s for s in report["verdict"] if s.startswith("The teacher's score"))
  expected = ("not significantly different" if not versus["significant"] else
              "significantly above" if versus["mean"] > 0 else "significantly below")
  assert expected in sentence, sentence
  assert versus["mean"] == pytest.approx(report["models"]["teacher"]["score"]
                                         - report["models"][versus["student"]]["score"])


def test_the_learning_rate_is_the_grid_point_with_the_lowest_validation_loss(report):
  for model in MODELS:
    entry = report["models"][model]
    losses = entry["learning_rate_validation_loss"]
    assert set(losses) == {pipeline.rate_name(r) for r in RATES}
    assert pipeline.rate_name(entry["finetune_learning_rate"]) == min(losses, key=losses.get)
    for seed in SEEDS:
      assert entry["per_seed"][str(seed)]["finetune_learning_rate"] == entry[
          "finetune_learning_rate"]


def test_report_numbers_are_the_metrics_files_numbers(miniature, report):
  output_dir, _ = miniature
  assert set(report["models"]) == set(MODELS)
  for model, entry in report["models"].items():
    rate = pipeline.rate_name(entry["finetune_learning_rate"])
    for seed in SEEDS:
      values = entry["per_seed"][str(seed)]
      eval_dir = os.path.join(output_dir, f"finetune_{model}.seed{seed}.lr{rate}", "eval")
      topic = read_jsonl(os.path.join(eval_dir,
                                      "embedded_topic_classification-metrics.jsonl"))
      summary = read_jsonl(os.path.join(eval_dir, "embedded_summarization-metrics.jsonl"))
      assert topic[-1]["step"] == summary[-1]["step"] == 20
      assert values["accuracy"] == topic[-1]["accuracy"]
      assert values["rougeL"] == summary[-1]["rougeL"]
      assert values["score"] == pytest.approx((topic[-1]["accuracy"]
                                               + summary[-1]["rougeL"]) / 2)
      # The per-example scores behind the intervals average to the logged metrics.
      predictions = read_jsonl(os.path.join(
          eval_dir, "embedded_topic_classification-000020.jsonl"))
      correct = [100.0 * (p["target"] == p["prediction"]) for p in predictions]
      assert np.mean(correct) == pytest.approx(topic[-1]["accuracy"])
    history = read_jsonl(os.path.join(output_dir, _pretrained(model), "metrics.jsonl"))
    assert history[-1]["step"] == entry["train_steps"]
  markdown = open(os.path.join(output_dir, "report.md")).read()
  for model, entry in report["models"].items():
    loss = entry["metrics"]["validation_loss"]
    low, high = loss["interval"]
    assert f"{loss['mean']:.3f} [{low:.3f}, {high:.3f}]" in markdown, model
  for sentence in report["verdict"]:
    assert f"- {sentence}" in markdown
  for model, values in report["stability"].items():
    history = read_jsonl(os.path.join(output_dir, _pretrained(model), "metrics.jsonl"))
    after = [r["grad_norm/encoder"] for r in history if r["step"] > 5]
    assert values["encoder_max"] == max(after)
    assert values["encoder_median"] == pytest.approx(float(np.median(after)))
  stages = report["stages"]
  assert report["stages_wall_seconds"] == pytest.approx(sum(stages.values()))
  assert report["models"]["teacher"]["parameters"] > report["models"]["student_scratch"][
      "parameters"]


def test_attention_health_is_reported_for_every_model(miniature, report):
  output_dir, _ = miniature
  for model, entry in report["models"].items():
    lowest = [min(v for k, v in values["attention_health"].items()
                  if k.startswith("attention_normalized_entropy/encoder_self_attention/"))
              for values in entry["per_seed"].values() if "attention_health" in values]
    assert len(lowest) == (1 if model == "teacher" else 2)  # one pretrained teacher
    assert entry["attention"]["encoder_self_attention_min"] == pytest.approx(np.mean(lowest))
    # The trainer logged the same kind of numbers at its last checkpoint.
    last = read_jsonl(os.path.join(output_dir, _pretrained(model), "metrics.jsonl"))[-1]
    assert 0 < last["attention_normalized_entropy/encoder_self_attention/0"] <= 1


def test_validation_loss_equals_an_independent_recomputation(miniature, report):
  """The report's span-corruption loss, recomputed here with NumPy from the models' logits
  on the same validation batches."""
  import tasks  # pylint: disable=g-import-not-at-top
  from miniend_jax.data.vocabulary import task_vocabulary  # pylint: disable=g-import-not-at-top
  output_dir, _ = miniature
  size = sizes.SIZES["miniature"]
  tasks.embedded.register()
  config = DatasetConfig(pipeline.PRETRAINING_TASK, size.pretrain_lengths, "validation",
                         batch_size=size.batch_size, shuffle=False, num_epochs=1,
                         vocabulary=task_vocabulary(
                             os.path.join(output_dir, "vocabulary", "spiece.model")))
  batches = [b for _, b in zip(range(size.validation_batches),
                               BatchIterator(config, shard_id=0, num_shards=1))]
  for model in ("teacher", "student_miniend_e"):
    model_config, params = load_model(os.path.join(output_dir, _pretrained(model)))
    total, count, example_nll = 0.0, 0, []
    for batch in batches:
      logits = np.asarray(jax.jit(Transformer(model_config).apply)(
          {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
          batch["decoder_target_tokens"]), np.float64)
      targets = batch["decoder_target_tokens"]
      log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1,
                                  keepdims=True)) - logits.max(-1, keepdims=True)
      nll = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
      total += float(np.sum(nll * (targets != 0)))
      count += int(np.sum(targets != 0))
      example_nll += list(np.sum(nll * (targets != 0), axis=1))
    assert report["models"][model]["per_seed"]["0"]["validation_loss"] == pytest.approx(
        total / count, rel=1e-5)
    # The per-example sums behind the loss's interval.
    with open(os.path.join(output_dir, "stages",
                           f"validation_{_pretrained(model)}.json")) as f:
      record = json.load(f)["result"]
    np.testing.assert_allclose(record["example_nll"], example_nll, rtol=1e-4)
    assert sum(record["example_tokens"]) == count


def test_exported_best_student_reloads_in_transformers(miniature, report):
  output_dir, _ = miniature
  export = report["export"]
  assert export["model"] == report["best"]
  assert export["output_dir"] == os.path.join(output_dir, "export",
                                              report["best"].removeprefix("student_"))
  assert export["max_logit_difference"] < 1e-3
  model = transformers.T5ForConditionalGeneration.from_pretrained(export["output_dir"]).eval()
  tokenizer = transformers.AutoTokenizer.from_pretrained(export["output_dir"])
  tokens = tokenizer(["Return the absolute value of a number."],
                     return_tensors="np")["input_ids"]
  decoder = np.array([[0, 5, 9]])
  with torch.no_grad():
    theirs = model(input_ids=torch.tensor(tokens),
                   decoder_input_ids=torch.tensor(decoder)).logits.numpy()
  config, params = load_model(os.path.join(output_dir, _pretrained(report["best"])))
  ours = np.asarray(Transformer(config).apply({"params": params}, tokens, decoder))
  np.testing.assert_allclose(theirs, ours, atol=1e-4)


def test_a_rerun_reuses_every_finished_stage(miniature):
  """Same settings, same directory: nothing is trained again, the report is rewritten."""
  output_dir, _ = miniature
  size = sizes.SIZES["miniature"]
  metrics_before = {m: os.path.getsize(os.path.join(output_dir, _pretrained(m),
                                                    "metrics.jsonl")) for m in MODELS}
  lines = []

  class Console:
    def write(self, text):
      lines.append(text)

    def flush(self):
      pass

  workspace = Workspace(output_dir,
                        pipeline.run_settings(size, seed=0, finetune_teacher=True),
                        stream=Console())
  results = pipeline.Pipeline(workspace, size, pipeline.DEFAULT_OBJECTIVES,
                              seeds=SEEDS).run()
  text = "".join(lines)
  assert text.count(": reused (finished earlier in") == STAGE_COUNT, text
  assert "done in" not in text
  assert results["best"] in ("student_scratch", "student_miniend_e")
  for model, size_before in metrics_before.items():
    assert os.path.getsize(os.path.join(output_dir, _pretrained(model),
                                        "metrics.jsonl")) == size_before


def test_other_settings_in_the_same_directory_are_refused(miniature):
  output_dir, _ = miniature
  settings_file = os.path.join(output_dir, "quickstart.json")
  before = open(settings_file).read()
  changed = sizes.size("miniature", student_steps=7)
  with pytest.raises(sizes.QuickstartError, match="student_steps: 20 there, 7 now"):
    Workspace(output_dir, pipeline.run_settings(changed, seed=0, finetune_teacher=True))
  assert open(settings_file).read() == before


def test_a_directory_that_is_not_a_quickstart_is_refused(tmp_path):
  (tmp_path / "notes.txt").write_text("keep")
  with pytest.raises(sizes.QuickstartError, match="not a quickstart directory"):
    Workspace(str(tmp_path), {"size": "miniature"})
  assert os.listdir(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize("text,expected", [
    ("miniend_e", ("scratch", "miniend_e")),
    ("miniend_d, mlmkd", ("scratch", "mlmkd", "miniend_d")),
    ("all", pipeline.PAPER_OBJECTIVES),
    ("hidden_mse", ("scratch", "hidden_mse")),
])
def test_objectives_flag(text, expected):
  assert pipeline.parse_objectives(text) == expected


def test_unknown_objective_and_size_name_the_flag():
  with pytest.raises(sizes.QuickstartError, match="--objectives names unknown objective "
                     "'miniend_x'"):
    pipeline.parse_objectives("miniend_x")
  with pytest.raises(sizes.QuickstartError, match="Did you mean 'miniature'"):
    sizes.size("minature")
  with pytest.raises(sizes.QuickstartError, match="--student_steps must be a positive"):
    sizes.size("miniature", student_steps=0)
  with pytest.raises(sizes.QuickstartError, match="relation_heads=3 must divide"):
    sizes.size("miniature", relation_heads=3)
  with pytest.raises(sizes.QuickstartError, match="--seeds must be a positive integer"):
    pipeline.seed_list(0, 0)
  with pytest.raises(sizes.QuickstartError, match="--finetune_learning_rates must be "
                     "numbers"):
    sizes.parse_rates(["1e-3", "fast"])
  with pytest.raises(sizes.QuickstartError, match="--finetune_learning_rates must be "
                     "positive"):
    sizes.size("miniature", finetune_learning_rates=[0.0])


def test_every_size_builds_valid_models_and_lengths():
  for size in sizes.SIZES.values():
    assert size.vocab_size % 128 == 0 and size.vocab_size >= size.vocab_pieces + 100
    assert size.teacher_config().emb_dim > size.student_config().emb_dim
    assert size.pretrain_lengths["targets"] < size.pretrain_inputs_length
  assert sizes.SIZES["small"].pretrain_lengths == {"inputs": 64, "targets": 14}


def test_distinct_rates_get_distinct_stage_names():
  names = [pipeline.rate_name(r) for r in (1e-3, 1.5e-3, 2e-3, 2.5e-3, 3e-3, 1e-2)]
  assert len(set(names)) == len(names)
  assert pipeline.rate_name(0.01) == "0.01"
