"""The whole MiniEnD pipeline, offline: vocabulary, teacher, students, finetuning, export.

Stages, in order (each reused when a rerun finds it finished, see workspace.py):

1. vocabulary          a SentencePiece model trained on the embedded corpus
2. teacher             the teacher pretrained with span corruption (runs/distill.gin with
                       objectives/scratch.gin: no teacher of its own)
3. student_<objective> one student per objective, all with the same architecture, data
                       and step budget (runs/distill.gin + objectives/<objective>.gin);
                       "scratch" is the student trained without a teacher
4. validation_<model>  span-corruption loss on held-out documents, every model
5. finetune_<model>    every model finetuned on the embedded downstream tasks and
                       evaluated with seqio (runs/finetune.gin)
6. export_<objective>  the best student (by downstream score) as a Hugging Face model

The training stages go through the same gin files and `trainer.train` as
`python -m miniend_jax.train`; evaluation and export are the library's own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import gin
import numpy as np

from miniend_jax import gin_cli
from miniend_jax.convert.checkpoint_loading import load_model
from miniend_jax.convert.hf_export import export
from miniend_jax.data import embedded_corpus
from miniend_jax.data.dataset import DatasetConfig
from miniend_jax.data.sentencepiece_training import train_sentencepiece, write_atomically
from miniend_jax.evaluation.metrics_files import latest_task_metrics, read_jsonl
from miniend_jax.evaluation.validation_loss import validation_loss
from miniend_jax.model.config import T5Config
from miniend_jax.quickstart import stage_gin
from miniend_jax.quickstart.sizes import QuickstartError, QuickstartSize
from miniend_jax.quickstart.workspace import Workspace
from miniend_jax.train import trainer

# The paper's table, in its order (METHOD.md 1).
PAPER_OBJECTIVES = ("scratch", "mlmkd", "minilm", "implicit", "miniend_d",
                    "miniend_d_nologit", "miniend_e", "miniend_e_nologit")
DEFAULT_OBJECTIVES = ("scratch", "miniend_e")
PRETRAINING_TASK = "embedded_span_corruption"
DOWNSTREAM_MIXTURE = "embedded_downstream"
# The downstream tasks and the headline metric of each; their mean is the score.
DOWNSTREAM_METRICS = {"embedded_topic_classification": "accuracy",
                      "embedded_summarization": "rougeL"}
VOCABULARY_TASK_BINDING = "tasks.vocabulary.sentencepiece_model_path.path"
CONSOLE_INTERVAL_SECONDS = 10.0


def objective_gin_path(objective: str) -> str:
  return os.path.join(gin_cli.PACKAGE_GIN_DIR, "objectives", f"{objective}.gin")


def parse_objectives(text: str) -> tuple[str, ...]:
  """"all" (the paper's eight rows) or a comma-separated list of objectives/*.gin names;
  scratch, the baseline every row is compared with, is always included."""
  names = PAPER_OBJECTIVES if text.strip() == "all" else tuple(
      name.strip() for name in text.split(",") if name.strip())
  known = sorted(name[:-len(".gin")] for name in
                 os.listdir(os.path.join(gin_cli.PACKAGE_GIN_DIR, "objectives")))
  for name in names:
    if name not in known:
      raise QuickstartError(f"--objectives names unknown objective {name!r}; choose 'all' or "
                            f"from {', '.join(known)}.")
  ordered = [n for n in PAPER_OBJECTIVES if n in names or n == "scratch"]
  return tuple(ordered + [n for n in names if n not in PAPER_OBJECTIVES])


def downstream_score(metrics: dict[str, dict[str, float]]) -> float:
  """Mean of the downstream headline metrics (as the GLUE score is of GLUE's)."""
  return float(np.mean([metrics[task][key] for task, key in DOWNSTREAM_METRICS.items()]))


def run_settings(size: QuickstartSize, *, seed: int, finetune_teacher: bool
                 ) -> dict[str, Any]:
  """What a quickstart directory is tied to (objectives excluded: a rerun may add some)."""
  return {**size.to_dict(), "seed": seed, "finetune_teacher": finetune_teacher}


@contextlib.contextmanager
def tasks_vocabulary(path: str) -> Iterator[None]:
  """Every task reads `path` while evaluation runs outside a gin-parsed stage."""
  gin.clear_config()
  with gin.unlock_config():
    gin.bind_parameter(VOCABULARY_TASK_BINDING, path)
  try:
    yield
  finally:
    gin.clear_config()


class Pipeline:
  """The stages of one quickstart run over one Workspace."""

  def __init__(self, workspace: Workspace, size: QuickstartSize,
               objectives: Sequence[str], *, seed: int = 0, finetune_teacher: bool = True):
    self.workspace = workspace
    self.size = size
    self.objectives = tuple(objectives)
    self.seed = seed
    self.finetune_teacher = finetune_teacher
    self.teacher_config = size.teacher_config()
    self.student_config = size.student_config()
    self._index = 0

  # ------------------------------------------------------------------ layout

  @property
  def vocabulary_path(self) -> str:
    return self.workspace.path("vocabulary", "spiece.model")

  def models(self) -> list[str]:
    """"teacher" and "student_<objective>" for each objective."""
    return ["teacher"] + [f"student_{o}" for o in self.objectives]

  def config_of(self, model: str) -> T5Config:
    return self.teacher_config if model == "teacher" else self.student_config

  def run_dir(self, model: str) -> str:
    return self.workspace.path(model)

  def finetuned_models(self) -> list[str]:
    return [m for m in self.models() if m != "teacher" or self.finetune_teacher]

  def stage_count(self) -> int:
    return 2 + len(self.objectives) + len(self.models()) + len(self.finetuned_models()) + 1

  def _stage(self, name: str, description: str, work) -> dict[str, Any]:
    self._index += 1
    return self.workspace.run_stage(name, description, work, index=self._index,
                                    count=self.stage_count())

  # ------------------------------------------------------------------ stages

  def run(self) -> dict[str, Any]:
    """Every stage; -> {"validation": {model: ...}, "downstream": {model: ...}, "best",
    "export"}."""
    self._index = 0
    self._stage("vocabulary", f"train a {self.size.vocab_pieces}-piece SentencePiece model "
                "on the embedded corpus", self._train_vocabulary)
    self._stage("teacher", f"pretrain the teacher with span corruption for "
                f"{self.size.teacher_steps} steps", self._pretrain_teacher)
    for objective in self.objectives:
      what = ("train the student from scratch (no teacher)" if objective == "scratch" else
              f"distil the teacher into the student with {objective}")
      self._stage(f"student_{objective}", f"{what} for {self.size.student_steps} steps",
                  lambda o=objective: self._train_student(o))
    validation = {}
    for model in self.models():
      validation[model] = self._stage(
          f"validation_{model}", "span-corruption loss on the validation documents",
          lambda m=model: self._validation_loss(m))
    downstream = {}
    for model in self.finetuned_models():
      downstream[model] = self._stage(
          f"finetune_{model}", f"finetune on {DOWNSTREAM_MIXTURE} for "
          f"{self.size.finetune_steps} steps and evaluate", lambda m=model: self._finetune(m))
    students = [m for m in self.models() if m != "teacher"]
    best = max(students, key=lambda m: (downstream[m]["score"], -validation[m]["loss"]))
    objective = best.removeprefix("student_")
    exported = self._stage(f"export_{objective}", f"export the best student ({objective}) "
                           "to Hugging Face format", lambda: self._export(best))
    return {"validation": validation, "downstream": downstream, "best": best,
            "export": exported}

  def _train_vocabulary(self) -> dict[str, Any]:
    model = train_sentencepiece(embedded_corpus.sentencepiece_lines(),
                                vocab_size=self.size.vocab_pieces)
    write_atomically(self.vocabulary_path, model)
    return {"path": self.vocabulary_path, "pieces": self.size.vocab_pieces,
            "model_vocab_size": self.size.vocab_size}

  def _train(self, stage: str, title: str, includes: Sequence[str], macros: dict[str, Any],
             models: dict[str, T5Config]) -> dict[str, Any]:
    """Write DIR/gin/<stage>.gin and train from it as the train CLI does."""
    text = stage_gin.experiment_gin(
        title=title, includes=includes, macros={"MODEL_DIR": self.run_dir(stage), **macros},
        models=models, vocabulary=self.vocabulary_path,
        bindings=[f"trainer.train.console_interval_seconds = {CONSOLE_INTERVAL_SECONDS}"])
    gin_file = self.workspace.path("gin", f"{stage}.gin")
    write_atomically(gin_file, text.encode())
    gin_cli.call_configured(trainer.train, [gin_file],
                            operative_config=gin.operative_config_str)
    history = read_jsonl(os.path.join(self.run_dir(stage), "metrics.jsonl"))
    return {"run_dir": self.run_dir(stage), "gin_file": gin_file, "final": history[-1]}

  def _common_macros(self, steps: int) -> dict[str, Any]:
    # Four checkpoints per stage: an interrupted stage resumes from the last one.
    return {"TRAIN_STEPS": steps, "BATCH_SIZE": self.size.batch_size, "SEED": self.seed,
            "CHECKPOINT_PERIOD": max(1, steps // 4), "KEEP_CHECKPOINTS": 1}

  def _pretrain_teacher(self) -> dict[str, Any]:
    # The scratch student's recipe (AdamW, cosine decay), bigger and longer: t5x's
    # pretraining schedule (runs/pretrain.gin, rsqrt decay after 10k warmup steps) is made
    # for runs a hundred times longer than these.
    return self._train(
        "teacher", "Quickstart: pretrain the teacher with span corruption (the scratch "
        "recipe, larger and longer).", ["runs/distill.gin", "objectives/scratch.gin"],
        {"MIXTURE_OR_TASK_NAME": PRETRAINING_TASK,
         "TASK_FEATURE_LENGTHS": self.size.pretrain_lengths,
         **self._common_macros(self.size.teacher_steps),
         "LEARNING_RATE": self.size.teacher_learning_rate,
         "WARMUP_STEPS": self.size.warmup_steps,
         "LOG_PERIOD": max(1, self.size.teacher_steps // 200)},
        {"STUDENT_CONFIG": self.teacher_config})

  def _train_student(self, objective: str) -> dict[str, Any]:
    with open(objective_gin_path(objective), encoding="utf-8") as f:
      objective_text = f.read()
    macros = {"MIXTURE_OR_TASK_NAME": PRETRAINING_TASK,
              "TASK_FEATURE_LENGTHS": self.size.pretrain_lengths,
              **self._common_macros(self.size.student_steps),
              "LEARNING_RATE": self.size.student_learning_rate,
              "WARMUP_STEPS": self.size.warmup_steps,
              "LOG_PERIOD": 1}  # every step: the gradient-norm (stability) figure
    if objective != "scratch":
      macros["TEACHER_CHECKPOINT"] = self.run_dir("teacher")
    if "RELATION_HEADS" in objective_text:
      macros["RELATION_HEADS"] = self.size.relation_heads
    if "BLEND_STEPS" in objective_text:
      macros["BLEND_STEPS"] = self.size.student_steps
    return self._train(
        f"student_{objective}", f"Quickstart: the student, objective {objective} "
        "(same architecture, data and steps for every objective).",
        ["runs/distill.gin", f"objectives/{objective}.gin"], macros,
        {"STUDENT_CONFIG": self.student_config})

  def _validation_loss(self, model: str) -> dict[str, Any]:
    # module="tasks" registers the tasks as the stages' gin files do (`import tasks`).
    config = DatasetConfig(PRETRAINING_TASK, self.size.pretrain_lengths, "validation",
                           batch_size=self.size.batch_size, shuffle=False, seed=self.seed,
                           module="tasks")
    with tasks_vocabulary(self.vocabulary_path):
      model_config, params = load_model(self.run_dir(model))
      return validation_loss(model_config, params, config,
                             max_batches=self.size.validation_batches)

  def _finetune(self, model: str) -> dict[str, Any]:
    stage = f"finetune_{model}"
    trained = self._train(
        stage, f"Quickstart: finetune {model} on the embedded downstream tasks, evaluated "
        "with seqio at the end.", ["runs/finetune.gin"],
        {"MIXTURE_OR_TASK_NAME": DOWNSTREAM_MIXTURE,
         "TASK_FEATURE_LENGTHS": self.size.downstream_feature_lengths,
         **self._common_macros(self.size.finetune_steps),
         "LEARNING_RATE": self.size.finetune_learning_rate,
         "INITIAL_CHECKPOINT_PATH": self.run_dir(model),
         "LOG_PERIOD": max(1, self.size.finetune_steps // 100),
         "EVAL_BATCH_SIZE": 32, "EVAL_NUM_EXAMPLES": self.size.eval_examples},
        {"STUDENT_CONFIG": self.config_of(model)})
    eval_dir = os.path.join(trained["run_dir"], "eval")
    metrics = {task: {k: v for k, v in latest_task_metrics(eval_dir, task).items()
                      if k != "step"} for task in DOWNSTREAM_METRICS}
    return {**trained, "eval_dir": eval_dir, "metrics": metrics,
            "score": downstream_score(metrics)}

  def _export(self, model: str) -> dict[str, Any]:
    output_dir = self.workspace.path("export", model.removeprefix("student_"))
    result = export(self.run_dir(model), output_dir, vocabulary=self.vocabulary_path)
    return {"model": model, "output_dir": result["output_dir"],
            "max_logit_difference": result["max_logit_difference"]}
