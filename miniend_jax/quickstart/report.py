"""DIR/report.md and DIR/report.json: the quickstart's results in the paper's shape.

Every number is read from this run's files: the stage records (DIR/stages/*.json), the
training runs' metrics.jsonl and the seqio evaluation files (<task>-metrics.jsonl);
sizes and FLOPs are computed from the models' configurations.
"""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Any

import jax
import numpy as np

from miniend_jax.data.sentencepiece_training import write_atomically
from miniend_jax.evaluation import confidence
from miniend_jax.evaluation.attention_health import COLLAPSE_THRESHOLD, collapsed_layers
from miniend_jax.evaluation.metrics_files import read_jsonl
from miniend_jax.model.flops import forward_flops, training_flops
from miniend_jax.model.network import parameter_count
from miniend_jax.quickstart import plots
from miniend_jax.quickstart.pipeline import Pipeline, rate_name
from miniend_jax.quickstart.workspace import format_duration

OBJECTIVE_NAMES = {"scratch": "scratch (no teacher)", "mlmkd": "MlmKD", "minilm": "MiniLM",
                   "implicit": "MlmKD+MiniLM", "miniend_d": "MiniEnD-D",
                   "miniend_d_nologit": "MiniEnD-D w/o logit", "miniend_e": "MiniEnD-E",
                   "miniend_e_nologit": "MiniEnD-E w/o logit", "hidden_mse": "hidden MSE",
                   "miniend_d_interpolated": "MiniEnD-D interpolated"}
LOSSES_PNG = "training_losses.png"
GRADIENTS_PNG = "gradient_norms.png"


def _objective(model: str) -> str:
  if model == "teacher":
    return "pretraining (span corruption)"
  objective = model.removeprefix("student_")
  return OBJECTIVE_NAMES.get(objective, objective)


def _machine() -> dict[str, Any]:
  device = jax.devices()[0]
  return {"platform": device.platform, "device_kind": device.device_kind,
          "device_count": jax.device_count(), "cpu_count": os.cpu_count(),
          "python": platform.python_version(), "jax": jax.__version__}


def _stability(history: list[dict[str, float]], warmup_steps: int) -> dict[str, float]:
  """Median and maximum gradient norms per stack, after warmup (all steps if shorter)."""
  after = [r for r in history if r["step"] > warmup_steps] or history
  result = {}
  for stack in ("encoder", "decoder"):
    values = np.array([r[f"grad_norm/{stack}"] for r in after])
    result[f"{stack}_median"] = float(np.median(values))
    result[f"{stack}_max"] = float(np.max(values))
  return result


# The headline metrics, in the table's order: (key, label, higher is better).
HEADLINE = (("validation_loss", "span-corruption loss", False),
            ("accuracy", "accuracy", True),
            ("rougeL", "ROUGE-L", True),
            ("score", "score", True))


def _example_parts(pipeline: Pipeline, results: dict[str, Any], model: str, metric: str
                   ) -> list[list[list[float]]]:
  """Per-example scores behind `metric`: parts of [seeds, examples] (see confidence.py)."""
  if metric == "validation_loss":
    rows = []
    for record in results["validation"][model].values():
      nll = np.asarray(record["example_nll"])
      # Scaled so that their mean is the loss per token (tokens summed over examples).
      rows.append((nll * len(nll) / record["tokens"]).tolist())
    return [rows]
  runs = results["downstream"][model].values()
  corpus = pipeline.corpus
  accuracy = [r["example_scores"][corpus.classification_task] for r in runs]
  summary = [r["example_scores"][corpus.summarization_task] for r in runs]
  return {"accuracy": [accuracy], "rougeL": [summary], "score": [accuracy, summary]}[metric]


def _per_seed(pipeline: Pipeline, results: dict[str, Any], model: str
              ) -> dict[str, dict[str, Any]]:
  corpus = pipeline.corpus
  per_seed = {}
  for seed, record in results["validation"][model].items():
    per_seed[str(seed)] = {"validation_loss": record["loss"],
                           "validation_accuracy": record["accuracy"],
                           "attention_health": record["attention_health"]}
  for seed, run in results["downstream"].get(model, {}).items():
    metrics = run["metrics"]
    per_seed.setdefault(str(seed), {}).update(
        accuracy=metrics[corpus.classification_task]["accuracy"],
        rouge1=metrics[corpus.summarization_task]["rouge1"],
        rougeL=metrics[corpus.summarization_task]["rougeL"],
        score=run["score"], finetune_learning_rate=run["learning_rate"])
  return per_seed


def _attention_summary(per_seed: dict[str, dict[str, Any]]) -> dict[str, float]:
  """Mean over seeds of the lowest normalized entropy of each attention type, and of the
  encoder-output cosine (the teacher has one pretrained seed)."""
  per_seed = {s: v for s, v in per_seed.items() if "attention_health" in v}
  summary = {}
  for kind in ("encoder_self_attention", "decoder_self_attention", "decoder_cross_attention"):
    summary[f"{kind}_min"] = float(np.mean([
        min(v for k, v in seed["attention_health"].items()
            if k.startswith(f"attention_normalized_entropy/{kind}/"))
        for seed in per_seed.values()]))
  summary["encoder_output_cosine"] = float(np.mean(
      [seed["attention_health"]["encoder_output_cosine"] for seed in per_seed.values()]))
  summary["collapsed_layers"] = sorted({layer for seed in per_seed.values()
                                        for layer in collapsed_layers(seed["attention_health"])})
  return summary


def collect(pipeline: Pipeline, results: dict[str, Any],
            histories: dict[str, list[dict[str, float]]], *,
            invocation_seconds: float) -> dict[str, Any]:
  """The report's numbers as one JSON-able dict (written to report.json); `histories`
  are the first seed's training metrics.jsonl records, by model."""
  size = pipeline.size
  records = pipeline.workspace.records()
  lengths = size.pretrain_lengths
  tokens_per_example = lengths["inputs"] + lengths["targets"]
  teacher_forward = forward_flops(pipeline.teacher_config, inputs_length=lengths["inputs"],
                                  targets_length=lengths["targets"]).total
  models = {}
  for model in pipeline.models():
    config = pipeline.config_of(model)
    forward = forward_flops(config, inputs_length=lengths["inputs"],
                            targets_length=lengths["targets"])
    steps = size.teacher_steps if model == "teacher" else size.student_steps
    examples = steps * size.batch_size
    per_example = training_flops(config, inputs_length=lengths["inputs"],
                                 targets_length=lengths["targets"])
    if model not in ("teacher", "student_scratch"):
      per_example += teacher_forward  # the frozen teacher's forward pass on every batch
    per_seed = _per_seed(pipeline, results, model)
    entry = {"objective": _objective(model), "parameters": parameter_count(config),
             "forward_gflops_per_example": forward.total / 1e9,
             "forward_flops_per_token": forward.per_token,
             "train_steps": steps, "train_tokens": examples * tokens_per_example,
             "train_flops": examples * per_example,
             "train_wall_seconds": float(np.mean(
                 [records[pipeline.pretraining_stage(model, s)]["wall_seconds"]
                  for s in pipeline.pretrained_seeds(model)])),
             "seeds": [int(s) for s in per_seed], "per_seed": per_seed,
             "attention": _attention_summary(per_seed), "metrics": {}}
    finetuned = model in results["downstream"]
    for key, _, _ in HEADLINE:
      if key != "validation_loss" and not finetuned:
        continue
      values = [seed[key] for seed in per_seed.values() if key in seed]
      entry["metrics"][key] = confidence.estimate(
          values, _example_parts(pipeline, results, model, key)).to_dict()
      entry[key] = entry["metrics"][key]["mean"]
    entry["validation_accuracy"] = float(np.mean(
        [seed["validation_accuracy"] for seed in per_seed.values()
         if "validation_accuracy" in seed]))
    if finetuned:
      entry["rouge1"] = float(np.mean([seed["rouge1"] for seed in per_seed.values()]))
      rates = results["learning_rates"][model]
      entry["finetune_learning_rate"] = rates["chosen"]
      entry["learning_rate_validation_loss"] = rates["validation_loss"]
      entry["finetune_wall_seconds"] = float(np.mean(
          [records[pipeline.finetune_stage(model, s, r["learning_rate"])]["wall_seconds"]
           for s, r in results["downstream"][model].items()]))
    models[model] = entry
  _compare(pipeline, results, models)
  stability = {model: _stability(history, size.warmup_steps)
               for model, history in histories.items() if model != "teacher"}
  stages = {name: record["wall_seconds"] for name, record in records.items()
            if name in _reported_stages(pipeline, results)}
  first_run = next(iter(results["downstream"].values()), {})
  eval_examples = {kind: len(run["example_scores"][task])
                   for run in list(first_run.values())[:1]
                   for kind, task in (("classification", pipeline.corpus.classification_task),
                                      ("summarization", pipeline.corpus.summarization_task))}
  report = {"size": size.name, "settings": size.to_dict(), "seeds": list(pipeline.seeds),
            "corpus": pipeline.corpus.name,
            "tasks": {"pretraining": pipeline.corpus.pretraining_task,
                      "classification": pipeline.corpus.classification_task,
                      "summarization": pipeline.corpus.summarization_task,
                      "downstream": pipeline.corpus.downstream_mixture},
            "machine": _machine(), "written": time.strftime("%Y-%m-%d %H:%M:%S"),
            "output_dir": pipeline.workspace.root,
            "pretrain_lengths": lengths, "downstream_lengths": size.downstream_feature_lengths,
            "eval_examples": eval_examples,
            "models": models, "stability": stability, "best": results["best"],
            "export": results["export"],
            "stages": stages, "stages_wall_seconds": sum(stages.values()),
            "invocation_wall_seconds": invocation_seconds}
  if "classification" in eval_examples:
    report["accuracy_half_width"] = confidence.half_width_for_accuracy(
        eval_examples["classification"])
  finetuned_students = [m for m in models if m != "teacher" and "score" in models[m]]
  if "score" in models.get("teacher", {}) and finetuned_students:
    best = max(finetuned_students, key=lambda m: models[m]["score"])
    report["teacher_vs_best_student"] = {"student": best, **confidence.difference(
        _example_parts(pipeline, results, "teacher", "score"),
        _example_parts(pipeline, results, best, "score")).to_dict()}
  report["verdict"] = verdict(report)
  return report


def _compare(pipeline: Pipeline, results: dict[str, Any], models: dict[str, Any]) -> None:
  """Adds "vs_scratch" (every other model minus the scratch student) to each entry."""
  if "student_scratch" not in models:
    return
  for model, entry in models.items():
    if model == "student_scratch":
      continue
    entry["vs_scratch"] = {}
    for key in entry["metrics"]:
      if key not in models["student_scratch"]["metrics"]:
        continue
      entry["vs_scratch"][key] = confidence.difference(
          _example_parts(pipeline, results, model, key),
          _example_parts(pipeline, results, "student_scratch", key)).to_dict()


def _reported_stages(pipeline: Pipeline, results: dict[str, Any]) -> set[str]:
  names = {"vocabulary", f"export_{results['best'].removeprefix('student_')}"}
  for model in pipeline.models():
    for seed in pipeline.pretrained_seeds(model):
      names |= {pipeline.pretraining_stage(model, seed),
                f"validation_{pipeline.pretraining_stage(model, seed)}"}
  for model, rates in results["learning_rates"].items():
    for rate in pipeline.size.finetune_learning_rates:
      names.add(pipeline.finetune_stage(model, pipeline.seeds[0], rate))
    for seed in pipeline.seeds[1:]:
      names.add(pipeline.finetune_stage(model, seed, rates["chosen"]))
  return names


def _judge(difference: dict[str, Any], higher_is_better: bool) -> str:
  if not difference["significant"]:
    return "no significant difference"
  better = (difference["mean"] > 0) == higher_is_better
  return "significantly better" if better else "significantly worse"


def verdict(report: dict[str, Any]) -> list[str]:
  """Sentences computed from the intervals: each distilled student against scratch on
  held-out span corruption and downstream, then whether the teacher is a ceiling."""
  models = report["models"]
  sentences = []
  if "student_scratch" not in models:
    return ["No scratch student was trained, so nothing is compared with it."]
  labels = dict((key, label) for key, label, _ in HEADLINE)
  better = dict((key, higher) for key, _, higher in HEADLINE)
  for model, entry in models.items():
    if model in ("teacher", "student_scratch") or "vs_scratch" not in entry:
      continue
    parts = []
    for key in ("validation_loss", "score"):
      if key in entry["vs_scratch"]:
        d = entry["vs_scratch"][key]
        parts.append(f"{labels[key]} {d['mean']:+.3g} [{d['interval'][0]:+.3g}, "
                     f"{d['interval'][1]:+.3g}]: {_judge(d, better[key])}")
    sentences.append(f"{entry['objective']} vs scratch: " + "; ".join(parts) + ".")
  versus = report.get("teacher_vs_best_student")
  if versus is not None:
    teacher, best = models["teacher"], models[versus["student"]]
    low, high = versus["interval"]
    if not versus["significant"]:
      standing = "not significantly different from it"
    elif versus["mean"] > 0:
      standing = "significantly above it: the ceiling it should be"
    else:
      standing = "significantly below it: no ceiling at this budget"
    sentence = (f"The teacher's score, {teacher['score']:.1f}, is {versus['mean']:+.1f} "
                f"[{low:+.1f}, {high:+.1f}] from the best student's ({best['objective']}, "
                f"{best['score']:.1f}): {standing}.")
    collapsed = teacher["attention"]["collapsed_layers"]
    if collapsed:
      sentence += (f" Its attention has collapsed in {', '.join(collapsed)} "
                   f"(normalized entropy below {COLLAPSE_THRESHOLD}): see docs/method.md, "
                   "'Attention collapse'.")
    sentences.append(sentence)
  if "accuracy_half_width" in report:
    examples = report["eval_examples"]["classification"]
    sentences.append(
        f"The classification task has {examples} validation examples: an accuracy near 50% "
        "is known "
        f"to within +/-{report['accuracy_half_width']:.1f} points from them alone, so "
        "smaller downstream differences cannot be resolved here whatever the seeds.")
  return sentences


def _count(value: float) -> str:
  for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
    if abs(value) >= scale:
      return f"{value / scale:.2f}{unit}"
  return f"{value:.0f}"


def _interval(estimate: dict[str, Any], digits: int) -> str:
  """"mean [low, high]" with the combined 95% interval (seeds and examples)."""
  low, high = estimate["interval"] or (estimate["mean"], estimate["mean"])
  return f"{estimate['mean']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _difference(difference: dict[str, Any] | None, digits: int) -> str:
  if difference is None:
    return "-"
  low, high = difference["interval"]
  mark = " *" if difference["significant"] else ""
  return f"{difference['mean']:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]{mark}"


def _results_table(report: dict[str, Any]) -> list[str]:
  header = ["model", "objective", "parameters", "GFLOPs / example",
            "span-corruption loss", "accuracy", "ROUGE-L", "score",
            "loss vs scratch", "score vs scratch", "finetuning rate"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for model, entry in report["models"].items():
    metrics = entry["metrics"]
    cells = [model.split("_")[0], entry["objective"], _count(entry["parameters"]),
             f"{entry['forward_gflops_per_example']:.4f}",
             _interval(metrics["validation_loss"], 3)]
    cells += [_interval(metrics[k], 1) if k in metrics else "-"
              for k in ("accuracy", "rougeL", "score")]
    versus = entry.get("vs_scratch", {})
    cells += [_difference(versus.get("validation_loss"), 3),
              _difference(versus.get("score"), 1),
              f"{entry['finetune_learning_rate']:g}" if "finetune_learning_rate" in entry
              else "-"]
    lines.append("| " + " | ".join(cells) + " |")
  return lines


def _per_seed_table(report: dict[str, Any]) -> list[str]:
  lines = ["| model | seed | span-corruption loss | token accuracy | accuracy | "
           "ROUGE-L | score |", "|---|---|---|---|---|---|---|"]
  for model, entry in report["models"].items():
    for seed, values in entry["per_seed"].items():
      downstream = [f"{values[k]:.1f}" if k in values else "-"
                    for k in ("accuracy", "rougeL", "score")]
      pretraining = ([f"{values['validation_loss']:.4f}",
                      f"{100 * values['validation_accuracy']:.1f}"]
                     if "validation_loss" in values else ["(pretrained once)", "-"])
      lines.append(f"| {model} | {seed} | " + " | ".join(pretraining + downstream) + " |")
  return lines


def _attention_table(report: dict[str, Any]) -> list[str]:
  lines = ["| model | encoder self-attention | decoder self-attention | cross-attention | "
           "encoder-output cosine | collapsed layers |", "|---|---|---|---|---|---|"]
  for model, entry in report["models"].items():
    a = entry["attention"]
    lines.append(f"| {model} | {a['encoder_self_attention_min']:.2f} | "
                 f"{a['decoder_self_attention_min']:.2f} | "
                 f"{a['decoder_cross_attention_min']:.2f} | {a['encoder_output_cosine']:.3f} | "
                 f"{', '.join(a['collapsed_layers']) or 'none'} |")
  return lines


def _learning_rate_table(report: dict[str, Any]) -> list[str]:
  rates = report["settings"]["finetune_learning_rates"]
  lines = ["| model | " + " | ".join(f"loss at {r:g}" for r in rates) + " | chosen |",
           "|---|" + "---|" * (len(rates) + 1)]
  for model, entry in report["models"].items():
    if "learning_rate_validation_loss" not in entry:
      continue
    losses = entry["learning_rate_validation_loss"]
    lines.append(f"| {model} | " + " | ".join(f"{losses[rate_name(r)]:.4f}" for r in rates)
                 + f" | {entry['finetune_learning_rate']:g} |")
  return lines


def _corpus_words(report: dict[str, Any]) -> str:
  if report["corpus"] == "embedded":
    return "the embedded corpus (Python's own documentation)"
  return f"the corpus in `{report['corpus']}`"


def markdown(report: dict[str, Any]) -> str:
  size, lengths = report["settings"], report["pretrain_lengths"]
  machine = report["machine"]
  downstream = report["downstream_lengths"]
  lines = [
      "# MiniEnD quickstart report", "",
      f"Size `{report['size']}`, written {report['written']} on {machine['cpu_count']} CPU "
      f"cores / {machine['device_count']} {machine['platform']} device(s) "
      f"(JAX {machine['jax']}). Every number below was measured in this run, in "
      f"`{report['output_dir']}`.", "",
      "## Results", "",
      f"Teacher and students are pretrained on {_corpus_words(report)} with span corruption "
      f"at {lengths['inputs']}/{lengths['targets']} tokens, then each is finetuned for "
      f"{size['finetune_steps']} steps on `{report['tasks']['downstream']}` "
      f"(`{report['tasks']['classification']}`, scored by accuracy, and "
      f"`{report['tasks']['summarization']}`, by ROUGE-L, at "
      f"{downstream['inputs']}/{downstream['targets']} tokens) and evaluated on the "
      "validation split with seqio. Every student has the same architecture and sees the "
      f"same {size['student_steps']} x {size['batch_size']} examples; each student and "
      f"each finetuning ran under {len(report['seeds'])} seed(s) "
      f"({', '.join(map(str, report['seeds']))}), the teacher was pretrained once.", "",
      *[f"- {sentence}" for sentence in report["verdict"]], "",
      *_results_table(report), "",
      "- Each cell: the mean over seeds [95% interval over seeds and evaluation examples: "
      "a hierarchical bootstrap, evaluation/confidence.py]. \"vs scratch\": the "
      "difference from the scratch student on the same examples, * where its interval "
      "excludes 0.",
      "- span-corruption loss: cross-entropy per target token on held-out documents "
      "before finetuning (lower is better).",
      "- accuracy (%, classification) and ROUGE-L (F-measure x 100, summarization) after "
      "finetuning; score: their "
      "mean, as the GLUE score is a mean of headline metrics.",
      "- finetuning rate: chosen for each model from the grid "
      f"{', '.join(f'{r:g}' for r in size['finetune_learning_rates'])} by downstream "
      "validation loss at the first seed (table below).",
      "- GFLOPs / example: one forward pass at the pretraining lengths (matrix "
      "multiplications, miniend_jax/model/flops.py).", "",
      "### Per seed", "", *_per_seed_table(report), "",
      "### Finetuning learning rate", "",
      "Teacher-forced loss on the downstream validation splits (mean of the two tasks) "
      "after finetuning at each rate, first seed; the lowest is chosen.", "",
      *_learning_rate_table(report), "",
      "### Attention health before finetuning", "",
      "Lowest normalized attention entropy over each model's layers (1: uniform over the "
      "keys a query may see; 0: one key; an encoder self-attention or cross-attention "
      f"layer below {COLLAPSE_THRESHOLD} counts as collapsed) and the mean cosine between "
      "different "
      "inputs' mean-pooled encoder outputs, on the first validation batch "
      "(evaluation/attention_health.py).", "",
      *_attention_table(report), "",
      "## Stability", "",
      f"![gradient norms]({GRADIENTS_PNG})", "",
      "Global gradient norm of the encoder's and the decoder's parameters, after the "
      f"{size['warmup_steps']} warmup steps (the paper's argument: implicit objectives make "
      "the encoder's norm spike).", "",
      "| student | encoder median | encoder max | decoder median | decoder max |",
      "|---|---|---|---|---|"]
  for model, values in report["stability"].items():
    lines.append(f"| {report['models'][model]['objective']} | "
                 f"{values['encoder_median']:.4g} | {values['encoder_max']:.4g} | "
                 f"{values['decoder_median']:.4g} | {values['decoder_max']:.4g} |")
  lines += ["", "## Training", "", f"![training losses]({LOSSES_PNG})", "",
            "| model | objective | steps | tokens | training FLOPs | pretraining time | "
            "finetuning time |", "|---|---|---|---|---|---|---|"]
  # Times are per run, the mean over seeds.
  for model, entry in report["models"].items():
    finetune = format_duration(entry["finetune_wall_seconds"]) if "score" in entry else "-"
    lines.append(f"| {model} | {entry['objective']} | {entry['train_steps']} | "
                 f"{_count(entry['train_tokens'])} | {entry['train_flops']:.3g} | "
                 f"{format_duration(entry['train_wall_seconds'])} | {finetune} |")
  export = report["export"]
  check = ("reloaded with transformers, logits within "
           f"{export['max_logit_difference']:.1e} of ours"
           if export["max_logit_difference"] is not None
           else "not verified (install torch to reload it with transformers)")
  lines += [
      "", f"Training FLOPs count the student's forward and backward passes (3 x forward) "
      "and, when distilling, the teacher's forward pass. All stages together took "
      f"{format_duration(report['stages_wall_seconds'])}; this invocation "
      f"{format_duration(report['invocation_wall_seconds'])} (including start-up and reused "
      "stages).", "",
      "## Export", "",
      f"Best student: {report['models'][report['best']]['objective']} (highest mean "
      f"score), seed {export['seed']}, before finetuning, as a Hugging Face T5 in `{export['output_dir']}`: {check}.", "",
      "```python",
      "from transformers import AutoTokenizer, T5ForConditionalGeneration",
      f"model = T5ForConditionalGeneration.from_pretrained({export['output_dir']!r})",
      f"tokenizer = AutoTokenizer.from_pretrained({export['output_dir']!r})",
      "```", "",
      "## Reproduce a stage", "",
      "Each training stage is an ordinary experiment file; rerun one (into a new MODEL_DIR) "
      "with", "",
      "```bash",
      f"python -m miniend_jax.train --gin_file={report['output_dir']}/gin/<stage>.gin "
      "--gin.MODEL_DIR=\\\"/tmp/rerun\\\"",
      "```", ""]
  return "\n".join(lines)


def write(pipeline: Pipeline, results: dict[str, Any], *, invocation_seconds: float
          ) -> dict[str, Any]:
  """Writes report.json, report.md and the two figures into DIR; -> the report dict."""
  workspace = pipeline.workspace
  histories = {m: read_jsonl(os.path.join(
      pipeline.pretrained_dir(m, pipeline.seeds[0]), "metrics.jsonl")) for m in pipeline.models()}
  report = collect(pipeline, results, histories, invocation_seconds=invocation_seconds)
  legend = {m: "teacher" if m == "teacher" else f"student, {_objective(m)}" for m in histories}
  plots.training_losses({legend[m]: h for m, h in histories.items()},
                        workspace.path(LOSSES_PNG))
  plots.gradient_norms({legend[m]: h for m, h in histories.items() if m != "teacher"},
                       workspace.path(GRADIENTS_PNG))
  write_atomically(workspace.path("report.json"), json.dumps(report, indent=2).encode())
  write_atomically(workspace.path("report.md"), markdown(report).encode())
  return report
