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
from miniend_jax.evaluation.metrics_files import read_jsonl
from miniend_jax.model.flops import forward_flops, training_flops
from miniend_jax.model.network import parameter_count
from miniend_jax.quickstart import plots
from miniend_jax.quickstart.pipeline import DOWNSTREAM_MIXTURE, Pipeline
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


def collect(pipeline: Pipeline, results: dict[str, Any],
            histories: dict[str, list[dict[str, float]]], *,
            invocation_seconds: float) -> dict[str, Any]:
  """The report's numbers as one JSON-able dict (written to report.json); `histories`
  are the training runs' metrics.jsonl records, by model."""
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
    validation = results["validation"][model]
    entry = {"objective": _objective(model), "parameters": parameter_count(config),
             "forward_gflops_per_example": forward.total / 1e9,
             "forward_flops_per_token": forward.per_token,
             "validation_loss": validation["loss"],
             "validation_accuracy": validation["accuracy"],
             "train_steps": steps, "train_tokens": examples * tokens_per_example,
             "train_flops": examples * per_example,
             "train_wall_seconds": records[model]["wall_seconds"]}
    downstream = results["downstream"].get(model)
    if downstream is not None:
      metrics = downstream["metrics"]
      entry.update(topic_accuracy=metrics["embedded_topic_classification"]["accuracy"],
                   rouge1=metrics["embedded_summarization"]["rouge1"],
                   rougeL=metrics["embedded_summarization"]["rougeL"],
                   score=downstream["score"],
                   finetune_wall_seconds=records[f"finetune_{model}"]["wall_seconds"])
    models[model] = entry
  stability = {model: _stability(history, size.warmup_steps)
               for model, history in histories.items() if model != "teacher"}
  reported = {f"validation_{m}" for m in models} | {m for m in models} | {
      f"finetune_{m}" for m in results["downstream"]} | {"vocabulary"} | {
      f"export_{results['best'].removeprefix('student_')}"}
  stages = {name: record["wall_seconds"] for name, record in records.items()
            if name in reported}
  return {"size": size.name, "settings": size.to_dict(), "machine": _machine(),
          "written": time.strftime("%Y-%m-%d %H:%M:%S"), "output_dir": pipeline.workspace.root,
          "pretrain_lengths": lengths, "downstream_lengths": size.downstream_feature_lengths,
          "models": models, "stability": stability, "best": results["best"],
          "export": results["export"],
          "stages": stages, "stages_wall_seconds": sum(stages.values()),
          "invocation_wall_seconds": invocation_seconds}


def _count(value: float) -> str:
  for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
    if abs(value) >= scale:
      return f"{value / scale:.2f}{unit}"
  return f"{value:.0f}"


def _results_table(report: dict[str, Any]) -> list[str]:
  scratch = report["models"].get("student_scratch", {}).get("score")
  header = ["model", "objective", "parameters", "GFLOPs / example", "FLOPs / token",
            "span-corruption loss", "token accuracy", "topic accuracy", "ROUGE-1",
            "ROUGE-L", "score", "vs scratch"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for model, entry in report["models"].items():
    downstream = ([f"{entry[k]:.1f}" for k in ("topic_accuracy", "rouge1", "rougeL", "score")]
                  if "score" in entry else ["-"] * 4)
    delta = ("-" if "score" not in entry or scratch is None or model == "teacher"
             else f"{entry['score'] - scratch:+.1f}")
    cells = [model.split("_")[0], entry["objective"], _count(entry["parameters"]),
             f"{entry['forward_gflops_per_example']:.4f}",
             _count(entry["forward_flops_per_token"]), f"{entry['validation_loss']:.4f}",
             f"{100 * entry['validation_accuracy']:.1f}", *downstream, delta]
    lines.append("| " + " | ".join(cells) + " |")
  return lines


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
      f"Teacher and students are pretrained on the embedded corpus (Python's own "
      f"documentation) with span corruption at {lengths['inputs']}/{lengths['targets']} "
      f"tokens, then each is finetuned for {size['finetune_steps']} steps on "
      f"`{DOWNSTREAM_MIXTURE}` (topic classification and summarization at "
      f"{downstream['inputs']}/{downstream['targets']} tokens) and evaluated on the "
      "validation split with seqio. Every student has the same architecture and sees the "
      f"same {size['student_steps']} x {size['batch_size']} examples.", "",
      *_results_table(report), "",
      "- span-corruption loss: cross-entropy per target token on held-out documents "
      "before finetuning (lower is better); token accuracy: its argmax accuracy (%).",
      "- topic accuracy (%), ROUGE-1 and ROUGE-L (F-measure x 100) after finetuning; score: "
      "the mean of topic accuracy and ROUGE-L, as the GLUE score is a mean of headline "
      "metrics.",
      "- GFLOPs / example: one forward pass at the pretraining lengths (matrix "
      "multiplications, miniend_jax/model/flops.py); FLOPs / token divides it by "
      "inputs + targets.", "",
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
      f"Best student: {report['models'][report['best']]['objective']} (highest score), "
      f"before finetuning, as a Hugging Face T5 in `{export['output_dir']}`: {check}.", "",
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
  histories = {m: read_jsonl(os.path.join(pipeline.run_dir(m), "metrics.jsonl"))
               for m in pipeline.models()}
  report = collect(pipeline, results, histories, invocation_seconds=invocation_seconds)
  legend = {m: "teacher" if m == "teacher" else f"student, {_objective(m)}" for m in histories}
  plots.training_losses({legend[m]: h for m, h in histories.items()},
                        workspace.path(LOSSES_PNG))
  plots.gradient_norms({legend[m]: h for m, h in histories.items() if m != "teacher"},
                       workspace.path(GRADIENTS_PNG))
  write_atomically(workspace.path("report.json"), json.dumps(report, indent=2).encode())
  write_atomically(workspace.path("report.md"), markdown(report).encode())
  return report
