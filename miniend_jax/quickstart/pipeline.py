"""The whole MiniEnD pipeline, offline: vocabulary, teacher, students, finetuning, export.

Stages, in order (each reused when a rerun finds it finished, see workspace.py); every
student stage runs once per seed (--seeds), the teacher once:

1. vocabulary            a SentencePiece model trained on the embedded corpus
2. teacher               the teacher pretrained with span corruption, t5x's recipe
                         (runs/pretrain.gin: Adafactor, constant 1e-2 while warming up)
   assistant             only when an objective blends with an assistant
                         (miniend_d_interpolated_assistant): the teacher distilled with
                         MiniEnD-E into a model of the teacher's width and the student's
                         depth, which those students then read beside the teacher
3. student_<objective>.seed<s>
                         one student per objective and seed, all with the same
                         architecture, data and step budget (runs/distill.gin +
                         objectives/<objective>.gin); "scratch" has no teacher
4. validation_<model>.seed<s>
                         span-corruption loss on held-out documents and attention health
5. finetune_<model>.seed<s>.lr<rate>
                         every model finetuned on the embedded downstream tasks and
                         evaluated with seqio (runs/finetune.gin): at the first seed once
                         per rate of the size's grid, the rate with the lowest downstream
                         validation loss then for the other seeds
6. export_<objective>    the best student (by mean downstream score) as a Hugging Face model

The training stages go through the same gin files and `trainer.train` as
`python -m miniend_jax.train`; evaluation and export are the library's own.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from typing import Any

import gin
import numpy as np

from miniend_jax import gin_cli
from miniend_jax.convert.checkpoint_loading import load_model
from miniend_jax.convert.hf_export import export
from miniend_jax.data.dataset import BatchIterator, DatasetConfig
from miniend_jax.data.sentencepiece_training import train_sentencepiece, write_atomically
from miniend_jax.data.vocabulary import DeferredVocabulary, task_vocabulary
from miniend_jax.evaluation.attention_health import attention_health
from miniend_jax.evaluation.metrics_files import example_scores, latest_task_metrics, read_jsonl
from miniend_jax.evaluation.validation_loss import validation_loss
from miniend_jax.model.config import T5Config
from miniend_jax.quickstart import corpora, stage_gin
from miniend_jax.quickstart.sizes import QuickstartError, QuickstartSize
from miniend_jax.quickstart.workspace import Workspace
from miniend_jax.train import trainer

# The paper's table, in its order (docs/method.md, "Objectives").
PAPER_OBJECTIVES = ("scratch", "mlmkd", "minilm", "implicit", "miniend_d",
                    "miniend_d_nologit", "miniend_e", "miniend_e_nologit")
DEFAULT_OBJECTIVES = ("scratch", "miniend_e")
# The embedded corpus's tasks (corpora.py has every corpus's).
PRETRAINING_TASK = corpora.EMBEDDED.pretraining_task
DOWNSTREAM_MIXTURE = corpora.EMBEDDED.downstream_mixture
CONSOLE_INTERVAL_SECONDS = 10.0
# t5x's warm-up (runs/pretrain.gin): longer than any quickstart teacher run, so its rate is
# constant at BASE_LEARNING_RATE / sqrt(TEACHER_WARMUP_STEPS).
TEACHER_WARMUP_STEPS = 10_000
# The shortest checkpoint period of a stage (see Pipeline._common_macros).
MIN_CHECKPOINT_PERIOD = 50


def objective_gin_path(objective: str) -> str:
  return os.path.join(gin_cli.PACKAGE_GIN_DIR, "objectives", f"{objective}.gin")


def objective_text(objective: str) -> str:
  """An objective's gin file with the package objectives it includes, in order."""
  with open(objective_gin_path(objective), encoding="utf-8") as f:
    text = f.read()
  included = re.findall(r'^include "objectives/(\w+)\.gin"', text, flags=re.M)
  return "".join(objective_text(name) for name in included) + text


def blends_with_assistant(objective: str) -> bool:
  """Whether the objective's logit target blends with an assistant (the last
  BLEND_PARTNER binding of its gin file and includes)."""
  partners = re.findall(r'^BLEND_PARTNER = "(\w+)"', objective_text(objective), flags=re.M)
  return bool(partners) and partners[-1] == "assistant"


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


def downstream_score(metrics: dict[str, dict[str, float]],
                     headline: dict[str, str]) -> float:
  """Mean of the downstream headline metrics ({task: metric}), as the GLUE score is of
  GLUE's."""
  return float(np.mean([metrics[task][key] for task, key in headline.items()]))


def run_settings(size: QuickstartSize, *, seed: int, finetune_teacher: bool,
                 corpus: corpora.Corpus = corpora.EMBEDDED) -> dict[str, Any]:
  """What a quickstart directory is tied to (objectives and the number of seeds
  excluded: a rerun may add some)."""
  settings = {**size.to_dict(), "seed": seed, "finetune_teacher": finetune_teacher}
  if corpus.directory is not None:
    settings["corpus_dir"] = corpus.directory
  del settings["seeds"]
  return settings


def seed_list(first: int, count: int) -> tuple[int, ...]:
  """--seed and --seeds as the seeds every student runs under."""
  if count < 1:
    raise QuickstartError(f"--seeds must be a positive integer, got {count}.")
  return tuple(range(first, first + count))


def rate_name(rate: float) -> str:
  """A learning rate as stage and directory names write it (0.003 -> "0.003"): distinct
  rates get distinct names."""
  return f"{rate:g}"


def register_outside_stages(corpus: corpora.Corpus) -> None:
  """Registers the corpus's tasks in this process (for evaluation outside a gin-parsed
  stage), leaving gin's configuration empty before and after."""
  gin.clear_config()
  try:
    corpus.register()
  finally:
    gin.clear_config()


class Pipeline:
  """The stages of one quickstart run over one Workspace."""

  def __init__(self, workspace: Workspace, size: QuickstartSize,
               objectives: Sequence[str], *, seeds: Sequence[int] = (0,),
               finetune_teacher: bool = True, corpus: corpora.Corpus = corpora.EMBEDDED):
    self.workspace = workspace
    self.corpus = corpus
    self.size = size
    self.objectives = tuple(objectives)
    self.seeds = tuple(seeds)
    self.finetune_teacher = finetune_teacher
    self.teacher_config = size.teacher_config()
    self.student_config = size.student_config()
    self._index = 0

  # ------------------------------------------------------------------ layout

  @property
  def vocabulary_path(self) -> str:
    return self.workspace.path("vocabulary", "spiece.model")

  @property
  def vocabulary(self) -> DeferredVocabulary:
    """The vocabulary stage "vocabulary" trained, as the tasks read it."""
    return task_vocabulary(self.vocabulary_path)

  def models(self) -> list[str]:
    """"teacher" and "student_<objective>" for each objective."""
    return ["teacher"] + [f"student_{o}" for o in self.objectives]

  def config_of(self, model: str) -> T5Config:
    return self.teacher_config if model == "teacher" else self.student_config

  def pretrained_seeds(self, model: str) -> tuple[int, ...]:
    """The seeds a model was pretrained under: one teacher, every seed for a student."""
    return self.seeds[:1] if model == "teacher" else self.seeds

  def pretraining_stage(self, model: str, seed: int) -> str:
    return "teacher" if model == "teacher" else f"{model}.seed{seed}"

  def run_dir(self, stage: str) -> str:
    return self.workspace.path(stage)

  def pretrained_dir(self, model: str, seed: int) -> str:
    """The pretrained model a seed's finetuning starts from (the one teacher for all)."""
    return self.run_dir(self.pretraining_stage(model, seed))

  def finetune_stage(self, model: str, seed: int, rate: float) -> str:
    return f"finetune_{model}.seed{seed}.lr{rate_name(rate)}"

  def finetuned_models(self) -> list[str]:
    return [m for m in self.models() if m != "teacher" or self.finetune_teacher]

  @property
  def uses_assistant(self) -> bool:
    return any(blends_with_assistant(o) for o in self.objectives)

  def stage_count(self) -> int:
    pretraining = 1 + len(self.objectives) * len(self.seeds)
    assistant = 1 if self.uses_assistant else 0
    finetuning = len(self.finetuned_models()) * (
        len(self.size.finetune_learning_rates) + len(self.seeds) - 1)
    return 1 + 2 * pretraining + assistant + finetuning + 1

  def _stage(self, name: str, description: str, work) -> dict[str, Any]:
    self._index += 1
    return self.workspace.run_stage(name, description, work, index=self._index,
                                    count=self.stage_count())

  # ------------------------------------------------------------------ stages

  def run(self) -> dict[str, Any]:
    """Every stage; -> {"validation": {model: {seed: ...}}, "downstream": {model: {seed:
    ...}}, "learning_rates": {model: {"chosen", "validation_loss": {rate: loss}}},
    "best", "export"}."""
    self._index = 0
    self._stage("vocabulary", f"train a {self.size.vocab_pieces}-piece SentencePiece model "
                f"on the {self.corpus.name} corpus", self._train_vocabulary)
    self._stage("teacher", f"pretrain the teacher with span corruption for "
                f"{self.size.teacher_steps} steps", self._pretrain_teacher)
    if self.uses_assistant:
      self._stage("assistant", f"distil the teacher into the assistant with miniend_e for "
                  f"{self.size.student_steps} steps", self._train_assistant)
    for objective in self.objectives:
      what = ("train the student from scratch (no teacher)" if objective == "scratch" else
              f"distil the teacher into the student with {objective}")
      for seed in self.seeds:
        self._stage(f"student_{objective}.seed{seed}",
                    f"{what} for {self.size.student_steps} steps, seed {seed}",
                    lambda o=objective, s=seed: self._train_student(o, s))
    validation = {}
    for model in self.models():
      validation[model] = {
          seed: self._stage(
              f"validation_{self.pretraining_stage(model, seed)}",
              "span-corruption loss and attention health on the validation documents",
              lambda m=model, s=seed: self._validate(m, s))
          for seed in self.pretrained_seeds(model)}
    downstream, learning_rates = {}, {}
    for model in self.finetuned_models():
      downstream[model], learning_rates[model] = self._finetune_every_seed(model)
    students = [m for m in self.models() if m != "teacher"]
    best = max(students, key=lambda m: (
        np.mean([r["score"] for r in downstream[m].values()]),
        -np.mean([r["loss"] for r in validation[m].values()])))
    objective = best.removeprefix("student_")
    exported = self._stage(f"export_{objective}", f"export the best student ({objective}, "
                           f"seed {self.seeds[0]}) to Hugging Face format",
                           lambda: self._export(best))
    return {"validation": validation, "downstream": downstream,
            "learning_rates": learning_rates, "best": best, "export": exported}

  def _finetune_every_seed(self, model: str) -> tuple[dict[int, Any], dict[str, Any]]:
    """Finetune at every rate of the grid under the first seed, choose the rate with the
    lowest downstream validation loss, finetune the other seeds at it."""
    first = self.seeds[0]
    grid = {}
    for rate in self.size.finetune_learning_rates:
      grid[rate] = self._stage(
          self.finetune_stage(model, first, rate),
          f"finetune on {self.corpus.downstream_mixture} for {self.size.finetune_steps} steps at "
          f"learning rate {rate:g}, seed {first}, and evaluate",
          lambda r=rate: self._finetune(model, first, r, choosing_rate=True))
    chosen = min(grid, key=lambda r: grid[r]["validation_loss"])
    runs = {first: grid[chosen]}
    for seed in self.seeds[1:]:
      runs[seed] = self._stage(
          self.finetune_stage(model, seed, chosen),
          f"finetune on {self.corpus.downstream_mixture} for {self.size.finetune_steps} "
          f"steps at the chosen learning rate {chosen:g}, seed {seed}, and evaluate",
          lambda s=seed: self._finetune(model, s, chosen))
    return runs, {"chosen": chosen,
                  "validation_loss": {rate_name(r): grid[r]["validation_loss"] for r in grid}}

  def _train_vocabulary(self) -> dict[str, Any]:
    model = train_sentencepiece(self.corpus.sentencepiece_lines(),
                                vocab_size=self.size.vocab_pieces)
    write_atomically(self.vocabulary_path, model)
    return {"path": self.vocabulary_path, "pieces": self.size.vocab_pieces,
            "model_vocab_size": self.size.vocab_size}

  def _train(self, stage: str, title: str, includes: Sequence[str], macros: dict[str, Any],
             models: dict[str, T5Config], task_bindings: Sequence[str]) -> dict[str, Any]:
    """Write DIR/gin/<stage>.gin and train from it as the train CLI does;
    `task_bindings` register and name the stage's task (corpora.py)."""
    text = stage_gin.experiment_gin(
        title=title, includes=includes, macros={"MODEL_DIR": self.run_dir(stage), **macros},
        models=models, vocabulary=self.vocabulary_path,
        bindings=[*task_bindings,
                  f"trainer.train.console_interval_seconds = {CONSOLE_INTERVAL_SECONDS}"])
    gin_file = self.workspace.path("gin", f"{stage}.gin")
    write_atomically(gin_file, text.encode())
    gin_cli.call_configured(trainer.train, [gin_file],
                            operative_config=gin.operative_config_str)
    history = read_jsonl(os.path.join(self.run_dir(stage), "metrics.jsonl"))
    return {"run_dir": self.run_dir(stage), "gin_file": gin_file, "final": history[-1]}

  def _common_macros(self, steps: int, seed: int) -> dict[str, Any]:
    # A checkpoint every quarter of a stage, so an interrupted stage resumes from the last
    # one, but at most every MIN_CHECKPOINT_PERIOD steps: a stage that short restarts in
    # less time than its saves would take (the miniature's saves only at its end).
    return {"TRAIN_STEPS": steps, "BATCH_SIZE": self.size.batch_size, "SEED": seed,
            "CHECKPOINT_PERIOD": max(MIN_CHECKPOINT_PERIOD, steps // 4),
            "KEEP_CHECKPOINTS": 1}

  def _pretrain_teacher(self) -> dict[str, Any]:
    # t5x's pretraining recipe, as real T5 teachers were trained: Adafactor scales every
    # update by its parameter's RMS. AdamW at the students' 3e-3 collapsed the wider
    # teacher's attention (docs/method.md, "Attention collapse"). Warm-up is longer than
    # the run, so the rate stays at BASE_LEARNING_RATE / sqrt(WARMUP_STEPS).
    warmup = TEACHER_WARMUP_STEPS
    return self._train(
        "teacher", "Quickstart: pretrain the teacher with span corruption (t5x's recipe: "
        "Adafactor, constant rate during warm-up).", ["runs/pretrain.gin"],
        {"TASK_FEATURE_LENGTHS": self.size.pretrain_lengths,
         **self._common_macros(self.size.teacher_steps, self.seeds[0]),
         "WARMUP_STEPS": warmup,
         "BASE_LEARNING_RATE": self.size.teacher_learning_rate * warmup ** 0.5,
         "LOG_PERIOD": max(1, self.size.teacher_steps // 200)},
        {"STUDENT_CONFIG": self.teacher_config}, self.corpus.pretraining_bindings())

  def _train_assistant(self) -> dict[str, Any]:
    """The teacher distilled into the assistant (MiniEnD-E, the students' budget)."""
    return self._train(
        "assistant", "Quickstart: the assistant (the teacher's width, the student's depth) "
        "distilled from the teacher with miniend_e, for the students that blend with it.",
        ["runs/distill.gin", "objectives/miniend_e.gin"],
        {**self._student_macros(self.seeds[0]), "TEACHER_CHECKPOINT": self.run_dir("teacher"),
         "RELATION_HEADS": self.size.relation_heads},
        {"STUDENT_CONFIG": self.size.assistant_config()}, self.corpus.pretraining_bindings())

  def _student_macros(self, seed: int) -> dict[str, Any]:
    return {"TASK_FEATURE_LENGTHS": self.size.pretrain_lengths,
            **self._common_macros(self.size.student_steps, seed),
            "LEARNING_RATE": self.size.student_learning_rate,
            "WARMUP_STEPS": self.size.warmup_steps,
            "LOG_PERIOD": 1}  # every step: the gradient-norm (stability) figure

  def _train_student(self, objective: str, seed: int) -> dict[str, Any]:
    text = objective_text(objective)
    macros = self._student_macros(seed)
    if objective != "scratch":
      macros["TEACHER_CHECKPOINT"] = self.run_dir("teacher")
    if "RELATION_HEADS" in text:
      macros["RELATION_HEADS"] = self.size.relation_heads
    if "BLEND_STEPS" in text:
      macros["BLEND_STEPS"] = self.size.student_steps
    if blends_with_assistant(objective):
      macros["ASSISTANT_CHECKPOINT"] = self.run_dir("assistant")
    return self._train(
        f"student_{objective}.seed{seed}", f"Quickstart: the student, objective "
        f"{objective}, seed {seed} (same architecture, data and steps for every objective).",
        ["runs/distill.gin", f"objectives/{objective}.gin"], macros,
        {"STUDENT_CONFIG": self.student_config}, self.corpus.pretraining_bindings())

  def _validate(self, model: str, seed: int) -> dict[str, Any]:
    # module="tasks" registers the tasks as the stages' gin files do (`import tasks`).
    config = DatasetConfig(self.corpus.pretraining_task, self.size.pretrain_lengths,
                           "validation", batch_size=self.size.batch_size, shuffle=False,
                           seed=self.seeds[0], module="tasks", vocabulary=self.vocabulary)
    register_outside_stages(self.corpus)
    model_config, params = load_model(self.pretrained_dir(model, seed))
    result = validation_loss(model_config, params, config,
                             max_batches=self.size.validation_batches, per_example=True)
    first_batch = next(iter(BatchIterator(dataclasses.replace(config, num_epochs=1),
                                          shard_id=0, num_shards=1)))
    result["attention_health"] = attention_health(model_config, params, first_batch)
    return result

  def _finetune(self, model: str, seed: int, rate: float, *, choosing_rate: bool = False
                ) -> dict[str, Any]:
    """Finetune and evaluate; a grid run (`choosing_rate`) also measures the downstream
    validation loss the rate is chosen by."""
    stage = self.finetune_stage(model, seed, rate)
    trained = self._train(
        stage, f"Quickstart: finetune {model} (seed {seed}) on the {self.corpus.name} "
        f"corpus's downstream tasks at learning rate {rate:g}, evaluated with seqio at the "
        "end.", ["runs/finetune.gin"],
        {"TASK_FEATURE_LENGTHS": self.size.downstream_feature_lengths,
         **self._common_macros(self.size.finetune_steps, seed),
         "LEARNING_RATE": rate,
         "INITIAL_CHECKPOINT_PATH": self.pretrained_dir(model, seed),
         "LOG_PERIOD": max(1, self.size.finetune_steps // 100),
         "EVAL_BATCH_SIZE": 32, "EVAL_NUM_EXAMPLES": self.size.eval_examples},
        {"STUDENT_CONFIG": self.config_of(model)}, self.corpus.downstream_bindings())
    eval_dir = os.path.join(trained["run_dir"], "eval")
    metrics, examples = {}, {}
    for task, metric in self.corpus.downstream_metrics.items():
      latest = latest_task_metrics(eval_dir, task)
      metrics[task] = {k: v for k, v in latest.items() if k != "step"}
      examples[task] = example_scores(eval_dir, task, latest["step"], metric)
    result = {**trained, "eval_dir": eval_dir, "learning_rate": rate, "metrics": metrics,
              "example_scores": examples,
              "score": downstream_score(metrics, self.corpus.downstream_metrics)}
    if choosing_rate:
      result["validation_loss"] = self._downstream_validation_loss(model, trained["run_dir"])
    return result

  def _downstream_validation_loss(self, model: str, run_dir: str) -> float:
    """Teacher-forced loss on each downstream task's validation split, averaged over the
    tasks: what the finetuning rate is chosen by."""
    losses = []
    register_outside_stages(self.corpus)
    model_config, params = load_model(run_dir, self.config_of(model))
    for task in self.corpus.downstream_metrics:
      config = DatasetConfig(task, self.size.downstream_feature_lengths, "validation",
                             batch_size=min(32, self.size.batch_size), shuffle=False,
                             seed=self.seeds[0], module="tasks", vocabulary=self.vocabulary)
      losses.append(validation_loss(model_config, params, config)["loss"])
    return float(np.mean(losses))

  def _export(self, model: str) -> dict[str, Any]:
    output_dir = self.workspace.path("export", model.removeprefix("student_"))
    result = export(self.pretrained_dir(model, self.seeds[0]), output_dir,
                    vocabulary=self.vocabulary_path)
    return {"model": model, "seed": self.seeds[0], "output_dir": result["output_dir"],
            "max_logit_difference": result["max_logit_difference"]}
