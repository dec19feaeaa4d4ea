"""Distillation objectives: weighted sets of terms over the taps of teacher and student.

An `Objective` holds terms (docs/method.md, "Objectives"): `CrossEntropy` (scratch),
`LogitKL` (MlmKD), `AttentionRelations` (MiniLM's L_dec_self, MiniEnD's L_cross and
L_enc_self) and `HiddenMSE` (a TinyBERT-style extra baseline). It tells the trainer
which taps each model must sow and turns the two models' tap dictionaries into the loss:

    teacher_taps = objective.teacher_taps(teacher_config)   # sow only these
    student_taps = objective.student_taps(student_config)
    total, terms = objective(teacher_sites, student_sites, batch, params=..., step=...)

`total` = sum of weight * value; `terms` maps each term's name to its unweighted value.
`distillation_loss` (in `forward`) runs both models and calls the objective, for use
inside one jitted train step. Gin presets for every row of the table in
docs/method.md, "Objectives", live in gin_configs/objectives/.

The batch uses t5x feature names: encoder_input_tokens, decoder_input_tokens,
decoder_target_tokens [batch, length] (token 0 is padding), optional decoder_loss_weights
(default: target != 0) and optional encoder_segment_ids / decoder_segment_ids (packing).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from miniend_jax.distill import losses
from miniend_jax.distill.interpolation import TargetBlend
from miniend_jax.errors import MiniendError
from miniend_jax.model.config import T5Config
from miniend_jax.taps import Tap, TapError

Array = jax.Array
Sites = Mapping[Tap, Array]
PAD_ID = 0
RELATION_LETTERS = "QKV"
# What the logit terms read: the logits left factored (hidden @ kernel), so that the
# losses compute them chunk by chunk and the step never holds them whole.
OUTPUT_LAYER = Tap("decoder", -1, "output_layer")


class ObjectiveError(MiniendError, ValueError):
  """An objective's settings do not fit the models or the batch."""


@dataclasses.dataclass(frozen=True)
class BatchView:
  """Masks and weights the terms read from a t5x-style batch."""

  targets: Array            # [batch, target_length] int
  loss_weights: Array       # [batch, target_length] float32
  encoder_mask: Array       # [batch, input_length] bool
  decoder_mask: Array       # [batch, target_length] bool
  encoder_segment_ids: Array | None
  decoder_segment_ids: Array | None

  @classmethod
  def from_batch(cls, batch: Mapping[str, Array]) -> BatchView:
    for key in ("encoder_input_tokens", "decoder_target_tokens"):
      if key not in batch:
        raise ObjectiveError(f"The batch lacks {key!r} (t5x feature names are expected).")
    targets = jnp.asarray(batch["decoder_target_tokens"])
    weights = batch.get("decoder_loss_weights")
    weights = (targets != PAD_ID) if weights is None else weights
    return cls(targets=targets, loss_weights=jnp.asarray(weights, jnp.float32),
               encoder_mask=jnp.asarray(batch["encoder_input_tokens"]) != PAD_ID,
               decoder_mask=targets != PAD_ID,
               encoder_segment_ids=batch.get("encoder_segment_ids"),
               decoder_segment_ids=batch.get("decoder_segment_ids"))

  def mask(self, stack: str) -> Array:
    return self.encoder_mask if stack == "encoder" else self.decoder_mask

  def segments(self, stack: str) -> Array | None:
    return self.encoder_segment_ids if stack == "encoder" else self.decoder_segment_ids


def _site(sites: Sites, tap: Tap, model: str) -> Array:
  if tap not in sites:
    raise ObjectiveError(
        f"The {model} sites lack tap {tap}: run the {model} with "
        f"taps=objective.{model}_taps(config) and pass collect()'s result.")
  return sites[tap]


def _check_tap(tap: Tap, config: T5Config, where: str) -> None:
  try:
    tap.resolve(config)
  except TapError as error:
    raise ObjectiveError(f"{where}: {error}") from None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Term:
  """One weighted loss term. `name` (default per kind) labels it in logs."""

  weight: float = 1.0
  name: str | None = None
  uses_teacher: ClassVar[bool] = True

  def __post_init__(self):
    if not isinstance(self.weight, (int, float)) or self.weight < 0:
      raise ObjectiveError(
          f"{type(self).__name__}.weight must be a non-negative number, got {self.weight!r}.")
    if self.name is None:
      object.__setattr__(self, "name", self.default_name())

  def default_name(self) -> str:
    raise NotImplementedError

  def teacher_taps(self) -> tuple[Tap, ...]:
    return ()

  def student_taps(self) -> tuple[Tap, ...]:
    return ()

  def assistant_taps(self) -> tuple[Tap, ...]:
    return ()

  def check(self, teacher_config: T5Config | None, student_config: T5Config) -> None:
    """Raise ObjectiveError when the term cannot work with these models."""
    if self.uses_teacher and teacher_config is None:
      raise ObjectiveError(f"Term {self.name!r} needs a teacher; none was given.")
    for taps, config, model in ((self.teacher_taps(), teacher_config, "teacher"),
                                (self.student_taps(), student_config, "student")):
      for tap in taps:
        _check_tap(tap, config, f"Term {self.name!r} ({model})")

  def init_params(self, rng: jax.Array, teacher_config: T5Config | None,
                  student_config: T5Config) -> Any:
    """Trainable parameters of the term itself (None for most terms)."""
    del rng, teacher_config, student_config
    return None

  def loss(self, teacher_sites: Sites, student_sites: Sites, view: BatchView, *,
           params: Any, step: Array | None, assistant_sites: Sites | None) -> Array:
    raise NotImplementedError


@dataclasses.dataclass(frozen=True, kw_only=True)
class CrossEntropy(Term):
  """Student cross-entropy on the targets (the "scratch" objective), optional z-loss."""

  z_loss: float = 0.0
  chunk_length: int = losses.DEFAULT_CHUNK_LENGTH
  uses_teacher: ClassVar[bool] = False

  def default_name(self) -> str:
    return "cross_entropy"

  def student_taps(self):
    return (OUTPUT_LAYER,)

  def loss(self, teacher_sites, student_sites, view, *, params, step, assistant_sites):
    value, _ = losses.cross_entropy(_site(student_sites, OUTPUT_LAYER, "student"),
                                    view.targets, view.loss_weights, z_loss=self.z_loss,
                                    chunk_length=self.chunk_length)
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class LogitKL(Term):
  """L_logit: tau^2 KL(teacher || student) over the vocabulary (docs/method.md, "Logit KL").

  With `blend`, the target is the interpolated one (our reading, see interpolation.py and
  docs/method.md, "Interpolated distillation"); `step` must then be passed to the objective.
  """

  temperature: float = 1.0
  blend: TargetBlend | None = None
  chunk_length: int = losses.DEFAULT_CHUNK_LENGTH

  def __post_init__(self):
    super().__post_init__()
    if not isinstance(self.temperature, (int, float)) or self.temperature <= 0:
      raise ObjectiveError(
          f"LogitKL.temperature must be positive, got {self.temperature!r}.")

  def default_name(self) -> str:
    return "logit_kl"

  def teacher_taps(self):
    return (OUTPUT_LAYER,)

  def student_taps(self):
    return (OUTPUT_LAYER,)

  def assistant_taps(self):
    if self.blend is not None and self.blend.partner == "assistant":
      return (OUTPUT_LAYER,)
    return ()

  def check(self, teacher_config, student_config):
    super().check(teacher_config, student_config)
    if teacher_config.vocab_size != student_config.vocab_size:
      raise ObjectiveError(
          f"Term {self.name!r} distils logits, which needs one vocabulary: the teacher has "
          f"vocab_size {teacher_config.vocab_size}, the student {student_config.vocab_size}. "
          "Give the student the teacher's vocab_size, or drop the logit term (use a "
          "*_nologit objective).")

  def loss(self, teacher_sites, student_sites, view, *, params, step, assistant_sites):
    teacher = _site(teacher_sites, OUTPUT_LAYER, "teacher")
    student = _site(student_sites, OUTPUT_LAYER, "student")
    if self.blend is None:
      return losses.logit_kl(teacher, student, view.loss_weights,
                             temperature=self.temperature, chunk_length=self.chunk_length)
    if step is None:
      raise ObjectiveError(
          f"Term {self.name!r} blends targets on a schedule: pass step= to the objective.")
    if self.blend.partner == "assistant":
      if assistant_sites is None:
        raise ObjectiveError(
            f"Term {self.name!r} blends with an assistant: pass assistant_sites= (run the "
            "assistant with taps=objective.assistant_taps(config)).")
      partner = _site(assistant_sites, OUTPUT_LAYER, "assistant")
    else:
      partner = jax.tree_util.tree_map(lax.stop_gradient, student)
    return losses.blended_logit_kl(
        teacher, partner, student, view.loss_weights,
        teacher_fraction=self.blend.schedule(step), temperature=self.temperature,
        chunk_length=self.chunk_length)


def _normalise_pairs(pairs) -> tuple[str, ...]:
  if isinstance(pairs, str):
    pairs = (pairs,)
  normalised = []
  for pair in pairs:
    text = pair.upper() if isinstance(pair, str) else pair
    if (not isinstance(text, str) or len(text) != 2
        or any(letter not in RELATION_LETTERS for letter in text)):
      raise ObjectiveError(
          f"Unknown relation pair {pair!r} in AttentionRelations.pairs: a pair is two of "
          "Q, K, V, e.g. 'QQ', 'KK', 'VV' or 'QK'.")
    normalised.append(text)
  if not normalised:
    raise ObjectiveError("AttentionRelations.pairs must name at least one pair.")
  return tuple(normalised)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttentionRelations(Term):
  """MiniLMv2 relation KL of one attention module (docs/method.md, "Relation KL").

  Attributes:
    stack: "encoder" or "decoder".
    attention: "self" or "cross" (cross-attention lives in the decoder). In
      cross-attention Q holds decoder positions, K and V encoder positions, so QK relates
      decoder to encoder positions and VV encoder to encoder positions.
    pairs: relation pairs (A, B), each two of Q, K, V. Defaults: QQ, KK, VV (self); set
      ("QK", "VV") for cross-attention, as the presets do.
    pair_weights: weight of each pair; None gives 1 / len(pairs) each (a mean).
    num_relation_heads: R; must divide heads * head_dim of teacher and student.
    teacher_layer, student_layer: tapped layers (negative counts from the top).
    causal: mask keys after the query in relations between decoder positions (decoder
      self-attention pairs and the cross-attention QQ pair); no effect on encoder ones.
    chunk_length: query positions computed at a time (memory only; see losses).
  """

  stack: str = "decoder"
  attention: str = "self"
  pairs: tuple[str, ...] = ("QQ", "KK", "VV")
  pair_weights: tuple[float, ...] | None = None
  num_relation_heads: int = 32
  teacher_layer: int = -1
  student_layer: int = -1
  causal: bool = True
  chunk_length: int = losses.DEFAULT_RELATION_CHUNK_LENGTH

  def __post_init__(self):
    if self.stack not in ("encoder", "decoder"):
      raise ObjectiveError(
          f"AttentionRelations.stack must be 'encoder' or 'decoder', got {self.stack!r}.")
    if self.attention not in ("self", "cross"):
      raise ObjectiveError(
          f"AttentionRelations.attention must be 'self' or 'cross', got {self.attention!r}.")
    if self.attention == "cross" and self.stack != "decoder":
      raise ObjectiveError(
          "AttentionRelations: cross-attention exists only in the decoder; set "
          "stack='decoder'.")
    object.__setattr__(self, "pairs", _normalise_pairs(self.pairs))
    if self.pair_weights is not None:
      object.__setattr__(self, "pair_weights", tuple(float(w) for w in self.pair_weights))
      if len(self.pair_weights) != len(self.pairs):
        raise ObjectiveError(
            f"AttentionRelations.pair_weights has {len(self.pair_weights)} entries for "
            f"{len(self.pairs)} pairs {self.pairs}.")
    if not isinstance(self.num_relation_heads, int) or self.num_relation_heads < 1:
      raise ObjectiveError(
          "AttentionRelations.num_relation_heads must be a positive integer, got "
          f"{self.num_relation_heads!r}.")
    super().__post_init__()

  def default_name(self) -> str:
    return "cross_relations" if self.attention == "cross" else f"{self.stack}_self_relations"

  def _tap(self, layer: int, letter: str) -> Tap:
    return Tap(self.stack, layer, f"{self.attention}_attention_{letter.lower()}")

  def _letters(self) -> list[str]:
    return sorted({letter for pair in self.pairs for letter in pair})

  def teacher_taps(self):
    return tuple(self._tap(self.teacher_layer, letter) for letter in self._letters())

  def student_taps(self):
    return tuple(self._tap(self.student_layer, letter) for letter in self._letters())

  def side(self, letter: str) -> str:
    """The stack whose positions a projection runs over."""
    if self.attention == "cross":
      return "decoder" if letter == "Q" else "encoder"
    return self.stack

  def check(self, teacher_config, student_config):
    super().check(teacher_config, student_config)
    for model, config in (("teacher", teacher_config), ("student", student_config)):
      width = config.joined_kv_dim
      if width % self.num_relation_heads:
        raise ObjectiveError(
            f"Term {self.name!r}: num_relation_heads={self.num_relation_heads} does not "
            f"divide the {model}'s attention width {width} (num_heads {config.num_heads} * "
            f"head_dim {config.head_dim}); set AttentionRelations.num_relation_heads to a "
            f"common divisor of {teacher_config.joined_kv_dim} and "
            f"{student_config.joined_kv_dim}.")

  def loss(self, teacher_sites, student_sites, view, *, params, step, assistant_sites):
    weights = self.pair_weights or (1.0 / len(self.pairs),) * len(self.pairs)
    total = jnp.zeros((), jnp.float32)
    for (a, b), weight in zip(self.pairs, weights):
      query_side, key_side = self.side(a), self.side(b)
      value = losses.relation_kl(
          _site(teacher_sites, self._tap(self.teacher_layer, a), "teacher"),
          _site(teacher_sites, self._tap(self.teacher_layer, b), "teacher"),
          _site(student_sites, self._tap(self.student_layer, a), "student"),
          _site(student_sites, self._tap(self.student_layer, b), "student"),
          num_relation_heads=self.num_relation_heads, key_mask=view.mask(key_side),
          query_mask=view.mask(query_side),
          causal=self.causal and query_side == key_side == "decoder",
          query_segment_ids=view.segments(query_side),
          key_segment_ids=view.segments(key_side), chunk_length=self.chunk_length)
      total = total + weight * value
    return total


@dataclasses.dataclass(frozen=True, kw_only=True)
class HiddenMSE(Term):
  """TinyBERT-style MSE between a student layer's output, projected to the teacher's
  width by a learned matrix, and a teacher layer's output (a baseline beyond the paper).

  The projection [student emb_dim, teacher emb_dim] is this term's parameter (see
  `Objective.init_params`), trained with the student. It starts as the identity when
  the widths are equal, else with a fan-in scaled normal.
  """

  stack: str = "decoder"
  teacher_layer: int = -1
  student_layer: int = -1
  project: bool = True

  def __post_init__(self):
    if self.stack not in ("encoder", "decoder"):
      raise ObjectiveError(
          f"HiddenMSE.stack must be 'encoder' or 'decoder', got {self.stack!r}.")
    super().__post_init__()

  def default_name(self) -> str:
    return f"{self.stack}_hidden_mse"

  def teacher_taps(self):
    return (Tap(self.stack, self.teacher_layer, "hidden"),)

  def student_taps(self):
    return (Tap(self.stack, self.student_layer, "hidden"),)

  def check(self, teacher_config, student_config):
    super().check(teacher_config, student_config)
    if not self.project and teacher_config.emb_dim != student_config.emb_dim:
      raise ObjectiveError(
          f"Term {self.name!r}: teacher emb_dim {teacher_config.emb_dim} != student "
          f"emb_dim {student_config.emb_dim}; set HiddenMSE.project=True.")

  def init_params(self, rng, teacher_config, student_config):
    if not self.project:
      return None
    shape = (student_config.emb_dim, teacher_config.emb_dim)
    if shape[0] == shape[1]:
      kernel = jnp.eye(shape[0], dtype=jnp.float32)
    else:
      kernel = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")(
          rng, shape, jnp.float32)
    return {"kernel": kernel}

  def loss(self, teacher_sites, student_sites, view, *, params, step, assistant_sites):
    projection = None
    if self.project:
      if not params or "kernel" not in params:
        raise ObjectiveError(
            f"Term {self.name!r} needs its projection: pass params=objective.init_params("
            "...) (trained with the student) to the objective.")
      projection = params["kernel"]
    return losses.hidden_mse(
        _site(teacher_sites, Tap(self.stack, self.teacher_layer, "hidden"), "teacher"),
        _site(student_sites, Tap(self.stack, self.student_layer, "hidden"), "student"),
        view.mask(self.stack).astype(jnp.float32), projection)


@dataclasses.dataclass(frozen=True)
class Objective:
  """A weighted set of terms; hashable, so it can be a static argument of jit."""

  terms: tuple[Term, ...] = ()

  def __post_init__(self):
    terms = tuple(self.terms)
    object.__setattr__(self, "terms", terms)
    if not terms:
      raise ObjectiveError("Objective.terms is empty: give at least one term.")
    for term in terms:
      if not isinstance(term, Term):
        raise ObjectiveError(f"Objective.terms holds {term!r}, which is not a Term.")
    names = [term.name for term in terms]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
      raise ObjectiveError(
          f"Objective has several terms named {duplicates[0]!r}; give each a distinct "
          "`name`.")

  @property
  def uses_teacher(self) -> bool:
    return any(term.uses_teacher for term in self.terms)

  @property
  def uses_assistant(self) -> bool:
    return any(term.assistant_taps() for term in self.terms)

  @staticmethod
  def _gather(taps_per_term, config: T5Config, model: str) -> tuple[Tap, ...]:
    taps = sorted({tap for taps in taps_per_term for tap in taps})
    for tap in taps:
      _check_tap(tap, config, f"Objective ({model})")
    return tuple(taps)

  def teacher_taps(self, teacher_config: T5Config) -> tuple[Tap, ...]:
    """The taps the teacher must sow (checked against its depth)."""
    return self._gather((t.teacher_taps() for t in self.terms), teacher_config, "teacher")

  def student_taps(self, student_config: T5Config) -> tuple[Tap, ...]:
    return self._gather((t.student_taps() for t in self.terms), student_config, "student")

  def assistant_taps(self, assistant_config: T5Config) -> tuple[Tap, ...]:
    return self._gather((t.assistant_taps() for t in self.terms), assistant_config,
                        "assistant")

  def check(self, teacher_config: T5Config | None, student_config: T5Config,
            assistant_config: T5Config | None = None) -> None:
    """Raise ObjectiveError if any term cannot work with these models."""
    for term in self.terms:
      term.check(teacher_config, student_config)
    if self.uses_assistant:
      if assistant_config is None:
        raise ObjectiveError("The objective blends with an assistant: give its config.")
      if assistant_config.vocab_size != student_config.vocab_size:
        raise ObjectiveError(
            f"The assistant's vocab_size {assistant_config.vocab_size} differs from the "
            f"student's {student_config.vocab_size}; logits can only be blended over one "
            "vocabulary.")

  def init_params(self, rng: jax.Array, teacher_config: T5Config | None,
                  student_config: T5Config) -> dict[str, Any]:
    """Trainable parameters of the objective itself, {term name: params} (may be {})."""
    params = {}
    for term, term_rng in zip(self.terms, jax.random.split(rng, len(self.terms))):
      term_params = term.init_params(term_rng, teacher_config, student_config)
      if term_params is not None:
        params[term.name] = term_params
    return params

  def __call__(self, teacher_sites: Sites, student_sites: Sites,
               batch: Mapping[str, Array], *, params: Mapping[str, Any] | None = None,
               step: Array | int | None = None,
               assistant_sites: Sites | None = None) -> tuple[Array, dict[str, Array]]:
    """-> (sum of weight * value, {term name: unweighted value}), float32 scalars."""
    view = BatchView.from_batch(batch)
    params = params or {}
    values = {}
    total = jnp.zeros((), jnp.float32)
    for term in self.terms:
      value = term.loss(teacher_sites, student_sites, view, params=params.get(term.name),
                        step=step, assistant_sites=assistant_sites)
      values[term.name] = value
      total = total + term.weight * value
    return total, values
