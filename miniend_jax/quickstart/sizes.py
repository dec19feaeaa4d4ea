"""The quickstart's sizes: the models, lengths and step budgets of each stage.

`miniature` runs every stage at toy size in about 2 minutes (tests, smoke checks);
`small` (the default) is sized to finish within 15 minutes on a 2-core CPU; `medium` is
for a machine with a GPU. Every stage of one size trains on the same batch size; the
students all get the same step budget, so scratch and distilled students see the same
number of tokens.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from miniend_jax.data.span_corruption import random_spans_helper
from miniend_jax.errors import MiniendError
from miniend_jax.model.config import T5Config, preset


class QuickstartError(MiniendError, ValueError):
  """A quickstart setting cannot work; the message names the flag to change."""


@dataclasses.dataclass(frozen=True)
class ModelShape:
  """A T5 1.1-style architecture (gated GELU, untied output layer), vocabulary aside."""

  emb_dim: int
  num_heads: int
  head_dim: int
  mlp_dim: int
  num_encoder_layers: int
  num_decoder_layers: int

  def config(self, vocab_size: int) -> T5Config:
    return preset("t5_1_1_small", vocab_size=vocab_size, dropout_rate=0.0,
                  **dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class QuickstartSize:
  """Everything a quickstart run's stages are built from.

  Attributes:
    name: the --size name.
    vocab_pieces: SentencePiece pieces trained on the embedded corpus (T5's 100 sentinels
      are added on top).
    teacher, student: the two architectures.
    pretrain_inputs_length: span-corruption encoder length; the targets length follows
      from T5's noise density and span length (docs/data.md, "Span corruption").
    downstream_lengths: (inputs, targets) of the finetuning tasks.
    batch_size: the global batch of every training stage.
    teacher_steps: pretraining steps of the teacher.
    student_steps: distillation (and scratch) steps of every student.
    finetune_steps: finetuning steps of every model.
    teacher_learning_rate: the teacher's Adafactor rate (runs/pretrain.gin, t5x's recipe,
      constant during its 10k-step warm-up).
    student_learning_rate: peak LEARNING_RATE of runs/distill.gin (AdamW, cosine decay)
      for every student.
    finetune_learning_rates: the grid of runs/finetune.gin's LEARNING_RATE (Adafactor,
      constant) that each model's rate is chosen from, by downstream validation loss.
    warmup_steps: warmup of the students' schedules.
    seeds: how many seeds every student (and every finetuning) runs under by default.
    relation_heads: RELATION_HEADS of the relation terms (divides both models' widths).
    eval_examples: downstream validation examples per task (None: all of them).
    validation_batches: span-corruption validation batches per model (None: all).
  """

  name: str
  vocab_pieces: int
  teacher: ModelShape
  student: ModelShape
  pretrain_inputs_length: int
  downstream_lengths: tuple[int, int]
  batch_size: int
  teacher_steps: int
  student_steps: int
  finetune_steps: int
  teacher_learning_rate: float
  student_learning_rate: float
  finetune_learning_rates: tuple[float, ...]
  warmup_steps: int
  seeds: int
  relation_heads: int
  eval_examples: int | None
  validation_batches: int | None

  def __post_init__(self):
    for name in ("vocab_pieces", "pretrain_inputs_length", "batch_size", "teacher_steps",
                 "student_steps", "finetune_steps", "relation_heads", "seeds"):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise QuickstartError(f"--{name} must be a positive integer, got {value!r}.")
    rates = self.finetune_learning_rates
    if not rates or any(not isinstance(r, (int, float)) or r <= 0 for r in rates):
      raise QuickstartError(f"--finetune_learning_rates must be positive numbers, got "
                            f"{rates!r}.")
    for model in ("teacher", "student"):
      width = getattr(self, model).num_heads * getattr(self, model).head_dim
      if width % self.relation_heads:
        raise QuickstartError(
            f"relation_heads={self.relation_heads} must divide the {model}'s attention "
            f"width {width} (num_heads x head_dim).")

  @property
  def vocab_size(self) -> int:
    """Model vocabulary: pieces + 100 sentinels, rounded up to a multiple of 128 (as
    T5's 32000 + 100 -> 32128)."""
    return -(-(self.vocab_pieces + 100) // 128) * 128

  @property
  def pretrain_lengths(self) -> dict[str, int]:
    _, targets = random_spans_helper(self.pretrain_inputs_length)
    return {"inputs": self.pretrain_inputs_length, "targets": targets}

  @property
  def downstream_feature_lengths(self) -> dict[str, int]:
    return {"inputs": self.downstream_lengths[0], "targets": self.downstream_lengths[1]}

  def teacher_config(self) -> T5Config:
    return self.teacher.config(self.vocab_size)

  def student_config(self) -> T5Config:
    return self.student.config(self.vocab_size)

  @property
  def assistant(self) -> ModelShape:
    """The assistant of an interpolated objective: the teacher's width, the student's
    depth (between the two in size)."""
    return dataclasses.replace(self.teacher, num_encoder_layers=self.student.num_encoder_layers,
                               num_decoder_layers=self.student.num_decoder_layers)

  def assistant_config(self) -> T5Config:
    return self.assistant.config(self.vocab_size)

  def to_dict(self) -> dict[str, Any]:
    values = dataclasses.asdict(self)
    values["downstream_lengths"] = list(self.downstream_lengths)
    values["finetune_learning_rates"] = list(self.finetune_learning_rates)
    return values


SIZES: dict[str, QuickstartSize] = {
    "miniature": QuickstartSize(
        name="miniature", vocab_pieces=1000,
        teacher=ModelShape(emb_dim=32, num_heads=4, head_dim=8, mlp_dim=64,
                           num_encoder_layers=2, num_decoder_layers=2),
        student=ModelShape(emb_dim=16, num_heads=2, head_dim=8, mlp_dim=32,
                           num_encoder_layers=1, num_decoder_layers=1),
        pretrain_inputs_length=32, downstream_lengths=(48, 12), batch_size=8,
        teacher_steps=30, student_steps=20, finetune_steps=20,
        teacher_learning_rate=1e-2, student_learning_rate=3e-3,
        finetune_learning_rates=(3e-3, 1e-2), warmup_steps=5, seeds=1, relation_heads=4,
        eval_examples=16, validation_batches=4),
    "small": QuickstartSize(
        name="small", vocab_pieces=2000,
        teacher=ModelShape(emb_dim=128, num_heads=4, head_dim=32, mlp_dim=384,
                           num_encoder_layers=3, num_decoder_layers=3),
        student=ModelShape(emb_dim=64, num_heads=4, head_dim=16, mlp_dim=256,
                           num_encoder_layers=2, num_decoder_layers=2),
        pretrain_inputs_length=64, downstream_lengths=(96, 24), batch_size=32,
        teacher_steps=600, student_steps=300, finetune_steps=150,
        teacher_learning_rate=1e-2, student_learning_rate=3e-3,
        finetune_learning_rates=(3e-3, 1e-2), warmup_steps=100, seeds=2, relation_heads=8,
        eval_examples=None, validation_batches=None),
    "medium": QuickstartSize(
        name="medium", vocab_pieces=4000,
        teacher=ModelShape(emb_dim=256, num_heads=4, head_dim=64, mlp_dim=1024,
                           num_encoder_layers=6, num_decoder_layers=6),
        student=ModelShape(emb_dim=128, num_heads=4, head_dim=32, mlp_dim=512,
                           num_encoder_layers=3, num_decoder_layers=3),
        pretrain_inputs_length=128, downstream_lengths=(256, 32), batch_size=64,
        teacher_steps=3000, student_steps=1500, finetune_steps=1000,
        teacher_learning_rate=1e-2, student_learning_rate=2e-3,
        finetune_learning_rates=(1e-3, 3e-3, 1e-2), warmup_steps=300, seeds=3,
        relation_heads=16, eval_examples=None, validation_batches=None),
}
DEFAULT_SIZE = "small"


def parse_rates(texts: list[str]) -> tuple[float, ...]:
  """--finetune_learning_rates=3e-3,1e-2 as numbers."""
  try:
    return tuple(float(text) for text in texts)
  except ValueError:
    raise QuickstartError(f"--finetune_learning_rates must be numbers, got "
                          f"{','.join(texts)!r}.") from None


def size(name: str, **overrides) -> QuickstartSize:
  """The named size, with step budgets (or other fields) overridden."""
  if name not in SIZES:
    close = difflib.get_close_matches(name, SIZES, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise QuickstartError(f"Unknown --size={name!r}.{hint} Choose from {', '.join(SIZES)}.")
  changes = {key: value for key, value in overrides.items() if value is not None}
  if isinstance(changes.get("finetune_learning_rates"), list):
    changes["finetune_learning_rates"] = tuple(changes["finetune_learning_rates"])
  return dataclasses.replace(SIZES[name], **changes) if changes else SIZES[name]
