"""Distillation losses as pure functions on arrays (METHOD.md 1.1, 1.2).

Every loss casts its inputs to float32 and returns a float32 scalar. Means are taken over
valid positions of the whole batch (token-level means, as t5x normalises its losses), so
a padded position never changes a value.

- `relation_kl`: MiniLMv2 self-attention relation KL(teacher || student) for one pair.
- `logit_kl`, `blended_logit_kl`: tau^2 * KL over the vocabulary against the teacher's
  distribution, or against a blend of two target distributions (METHOD.md 1.4).
- `cross_entropy`: on the targets, with t5x's optional z-loss.
- `hidden_mse`: TinyBERT-style hidden-state MSE through a learned projection.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

# Added to masked relation scores: finite, so a row without any valid key stays finite
# (such rows are excluded from the mean anyway).
_MASK_SCORE = -1e9
# Sequence positions per chunk of the vocabulary-sized KL computation (see `logit_kl`).
DEFAULT_CHUNK_LENGTH = 16


class LossInputError(ValueError):
  """Inputs to a loss have shapes or settings it cannot work with."""


def _float32(x: Array) -> Array:
  return jnp.asarray(x).astype(jnp.float32)


# ----------------------------------------------------------------------------- relations


def _log_relations(a: Array, b: Array, num_relation_heads: int, allowed: Array) -> Array:
  """log Rel: a [batch, q, width], b [batch, k, width] -> [batch, heads, q, k]."""
  batch, q_length, width = a.shape
  k_length = b.shape[1]
  head_width = width // num_relation_heads
  a = a.reshape(batch, q_length, num_relation_heads, head_width)
  b = b.reshape(batch, k_length, num_relation_heads, head_width)
  scores = jnp.einsum("bqrd,bkrd->brqk", a, b, precision=lax.Precision.HIGHEST,
                      preferred_element_type=jnp.float32)
  scores = scores / math.sqrt(head_width)
  scores = jnp.where(allowed[:, None], scores, _MASK_SCORE)
  return jax.nn.log_softmax(scores, axis=-1)


def relation_allowed(key_mask: Array, query_length: int, *, causal: bool = False,
                     query_segment_ids: Array | None = None,
                     key_segment_ids: Array | None = None) -> Array:
  """Which (query i, key j) entries of a relation exist: bool [batch, q, k]."""
  allowed = jnp.broadcast_to(jnp.asarray(key_mask, bool)[:, None, :],
                             (key_mask.shape[0], query_length, key_mask.shape[1]))
  if causal:
    if query_length != key_mask.shape[1]:
      raise LossInputError(
          f"causal=True needs queries and keys over the same positions, got query length "
          f"{query_length} and key length {key_mask.shape[1]}.")
    positions = jnp.arange(query_length)
    allowed = allowed & (positions[None, :] <= positions[:, None])[None]
  if (query_segment_ids is None) != (key_segment_ids is None):
    raise LossInputError("Pass both query_segment_ids and key_segment_ids, or neither.")
  if query_segment_ids is not None:
    allowed = allowed & (query_segment_ids[:, :, None] == key_segment_ids[:, None, :])
  return allowed


def relation_kl(teacher_a: Array, teacher_b: Array, student_a: Array, student_b: Array, *,
                num_relation_heads: int, key_mask: Array, query_mask: Array | None = None,
                causal: bool = False, query_segment_ids: Array | None = None,
                key_segment_ids: Array | None = None) -> Array:
  """MiniLMv2 relation KL(teacher || student) for one pair (A, B), METHOD.md 1.1.

  Rel_r[i, j] = softmax_j(A_r[i] . B_r[j] / sqrt(width / R) + mask[i, j]), where A_r is
  the r-th of R equal chunks of A's width. The loss is the mean over relation heads and
  valid query rows of sum_j Rel^T_r[i, j] * (log Rel^T_r[i, j] - log Rel^S_r[i, j]).
  The teacher side carries no gradient.

  Args:
    teacher_a: [batch, len_q, width_t] teacher projections A (e.g. queries).
    teacher_b: [batch, len_k, width_t] teacher projections B (e.g. keys).
    student_a: [batch, len_q, width_s].
    student_b: [batch, len_k, width_s]. Teacher and student widths may differ.
    num_relation_heads: R; must divide width_t and width_s.
    key_mask: [batch, len_k], true (or 1) for valid key positions.
    query_mask: [batch, len_q], the query rows that count; None counts every row.
    causal: also mask keys j > i (for relations between decoder positions).
    query_segment_ids, key_segment_ids: [batch, len_q], [batch, len_k] for packed
      examples: a query sees only keys of its own segment.

  Returns:
    float32 scalar. Rows without any allowed key do not count.
  """
  for name, x in (("teacher_a", teacher_a), ("teacher_b", teacher_b),
                  ("student_a", student_a), ("student_b", student_b)):
    if jnp.ndim(x) != 3:
      raise LossInputError(f"relation_kl: {name} must be [batch, length, width], got "
                           f"shape {jnp.shape(x)}.")
  if teacher_a.shape[:2] != student_a.shape[:2] or teacher_b.shape[:2] != student_b.shape[:2]:
    raise LossInputError(
        "relation_kl: teacher and student must agree on batch and lengths; got A "
        f"{teacher_a.shape} vs {student_a.shape}, B {teacher_b.shape} vs {student_b.shape}.")
  if teacher_a.shape[0] != teacher_b.shape[0]:
    raise LossInputError("relation_kl: A and B must have the same batch size.")
  if teacher_a.shape[2] != teacher_b.shape[2] or student_a.shape[2] != student_b.shape[2]:
    raise LossInputError("relation_kl: A and B of one model must have the same width.")
  if not isinstance(num_relation_heads, int) or num_relation_heads < 1:
    raise LossInputError(
        f"num_relation_heads must be a positive integer, got {num_relation_heads!r}.")
  for side, width in (("teacher", teacher_a.shape[2]), ("student", student_a.shape[2])):
    if width % num_relation_heads:
      raise LossInputError(
          f"num_relation_heads={num_relation_heads} does not divide the {side} width "
          f"{width} (heads * head_dim of the tapped attention); set num_relation_heads to "
          "a common divisor of the teacher and student widths.")
  batch, q_length = teacher_a.shape[:2]
  key_mask = jnp.asarray(key_mask)
  if key_mask.shape != teacher_b.shape[:2]:
    raise LossInputError(
        f"relation_kl: key_mask must be [batch, len_k] = {teacher_b.shape[:2]}, got "
        f"{key_mask.shape}.")
  query_mask = jnp.ones((batch, q_length), bool) if query_mask is None else jnp.asarray(
      query_mask)
  if query_mask.shape != (batch, q_length):
    raise LossInputError(
        f"relation_kl: query_mask must be [batch, len_q] = {(batch, q_length)}, got "
        f"{query_mask.shape}.")
  allowed = relation_allowed(key_mask, q_length, causal=causal,
                             query_segment_ids=query_segment_ids,
                             key_segment_ids=key_segment_ids)  # [batch, q, k]
  teacher_log = _log_relations(lax.stop_gradient(_float32(teacher_a)),
                               lax.stop_gradient(_float32(teacher_b)),
                               num_relation_heads, allowed)  # [batch, heads, q, k]
  student_log = _log_relations(_float32(student_a), _float32(student_b),
                               num_relation_heads, allowed)
  pointwise = jnp.where(allowed[:, None],
                        jnp.exp(teacher_log) * (teacher_log - student_log), 0.0)
  row_kl = jnp.sum(pointwise, axis=-1)  # [batch, heads, q]
  rows = jnp.logical_and(jnp.asarray(query_mask, bool), jnp.any(allowed, axis=-1))
  rows = rows.astype(jnp.float32)  # [batch, q]
  total = jnp.sum(row_kl * rows[:, None])
  count = jnp.sum(rows) * num_relation_heads
  return total / jnp.maximum(count, 1.0)


# ----------------------------------------------------------------------------- logits
#
# Memory: the teacher's and the student's logits, [batch, length, vocab] each, are the
# largest activations of a T5 step (vocabulary 32128). Written plainly, the KL and its
# gradient keep float32 log-softmaxes of both as residuals: two more full copies. Here
# the forward pass walks over the sequence in chunks of `chunk_length` positions and
# keeps only one KL value per position; the backward pass (a custom VJP) walks again and
# writes d loss / d student logits = tau * w / sum(w) * (softmax(z_S / tau) - p_target)
# chunk by chunk. Float32 temporaries exist for one chunk at a time, and a bfloat16
# teacher's logits are upcast chunk by chunk (XLA's CPU backend, which lacks bfloat16
# arithmetic, still converts them whole). Chunks cut the length axis, not the batch, so a
# batch-sharded (and vocab-sharded) layout is kept. tools/logit_kl_memory.py measures the
# compiled scratch memory of both ways.


def _over_length_chunks(fn, arrays: tuple[Array, ...], chunk_length: int,
                        out: Array) -> Array:
  """out[:, s] = fn(*(a[:, s] for a in arrays)) for consecutive length slices s."""
  length = arrays[0].shape[1]
  chunk_length = max(1, min(chunk_length, length))
  full = length // chunk_length

  def body(index, out):
    start = index * chunk_length
    pieces = tuple(lax.dynamic_slice_in_dim(a, start, chunk_length, axis=1) for a in arrays)
    return lax.dynamic_update_slice_in_dim(out, fn(*pieces).astype(out.dtype), start, axis=1)

  out = lax.fori_loop(0, full, body, out)
  if length % chunk_length:
    start = full * chunk_length
    out = lax.dynamic_update_slice_in_dim(
        out, fn(*(a[:, start:] for a in arrays)).astype(out.dtype), start, axis=1)
  return out


def _target_log_probs(targets: tuple[Array, ...], log_mix: Array, temperature: float) -> Array:
  """log sum_k mix_k softmax(targets_k / tau): [batch, c, vocab]."""
  parts = [jax.nn.log_softmax(_float32(t) / temperature, axis=-1) for t in targets]
  if len(parts) == 1:
    return parts[0]
  stacked = jnp.stack([lm + p for lm, p in zip(log_mix, parts)])
  return jax.nn.logsumexp(stacked, axis=0)


def _row_kl(targets, log_mix, student, temperature):
  """KL(p_target || softmax(student / tau)) per position: [batch, c]."""
  log_p = _target_log_probs(targets, log_mix, temperature)
  log_q = jax.nn.log_softmax(_float32(student) / temperature, axis=-1)
  p = jnp.exp(log_p)
  return jnp.sum(jnp.where(p > 0, p * (log_p - log_q), 0.0), axis=-1)


def _weight_sum(weights: Array) -> Array:
  total = jnp.sum(weights)
  return jnp.where(total > 0, total, 1.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _chunked_kl(targets, log_mix, student, weights, temperature, chunk_length):
  return _chunked_kl_forward(targets, log_mix, student, weights, temperature,
                             chunk_length)[0]


def _chunked_kl_forward(targets, log_mix, student, weights, temperature, chunk_length):
  weights = _float32(weights)
  rows = _over_length_chunks(
      lambda s, *t: _row_kl(t, log_mix, s, temperature), (student,) + tuple(targets),
      chunk_length, jnp.zeros(weights.shape, jnp.float32))  # [batch, length]
  total_weight = _weight_sum(weights)
  value = temperature ** 2 * jnp.sum(rows * weights) / total_weight
  return value, (targets, log_mix, student, weights, rows, total_weight, value)


def _chunked_kl_backward(temperature, chunk_length, residuals, g):
  targets, log_mix, student, weights, rows, total_weight, value = residuals
  scale = g * temperature * weights / total_weight  # [batch, length]

  def student_gradient(s, w, *t):
    p = jnp.exp(_target_log_probs(t, log_mix, temperature))
    q = jax.nn.softmax(_float32(s) / temperature, axis=-1)
    return w[..., None] * (q - p)

  grad_student = _over_length_chunks(student_gradient, (student, scale) + tuple(targets),
                                     chunk_length, jnp.zeros(student.shape, student.dtype))
  # d/dw_i of tau^2 sum_j w_j kl_j / sum_j w_j.
  grad_weights = g * (temperature ** 2 * rows - value) / total_weight
  # Targets are constants: the teacher (and a detached blend partner) get no gradient.
  return None, None, grad_student, grad_weights.astype(weights.dtype)


_chunked_kl.defvjp(_chunked_kl_forward, _chunked_kl_backward)


def _check_logits(name: str, logits: Array, student_logits: Array, weights: Array) -> None:
  if jnp.ndim(logits) != 3:
    raise LossInputError(f"{name} must be [batch, length, vocab], got {jnp.shape(logits)}.")
  if logits.shape != student_logits.shape:
    raise LossInputError(
        f"{name} {logits.shape} and student logits {student_logits.shape} differ in shape; "
        "logit distillation needs the same vocabulary (vocab_size) in both models.")
  if weights.shape != logits.shape[:2]:
    raise LossInputError(
        f"weights must be [batch, length] = {logits.shape[:2]}, got {weights.shape}.")


def _check_temperature(temperature: float) -> None:
  if not isinstance(temperature, (int, float)) or temperature <= 0:
    raise LossInputError(f"temperature must be a positive number, got {temperature!r}.")


def logit_kl(teacher_logits: Array, student_logits: Array, weights: Array, *,
             temperature: float = 1.0,
             chunk_length: int = DEFAULT_CHUNK_LENGTH) -> Array:
  """tau^2 * mean over weighted tokens of KL(softmax(z_T / tau) || softmax(z_S / tau)).

  Args:
    teacher_logits: [batch, length, vocab] (any float dtype; no gradient flows to it).
    student_logits: [batch, length, vocab].
    weights: [batch, length] token weights (0 for padding); the mean is
      sum(w * kl) / sum(w), and 0 when every weight is 0.
    temperature: tau > 0. The tau^2 factor keeps gradient magnitudes comparable across
      temperatures (Hinton et al. 2015).
    chunk_length: sequence positions per chunk (memory note above); any value gives the
      same result.
  """
  _check_temperature(temperature)
  _check_logits("teacher_logits", teacher_logits, student_logits, weights)
  return _chunked_kl((teacher_logits,), jnp.zeros((1,), jnp.float32), student_logits,
                     weights, float(temperature), int(chunk_length))


def blended_logit_kl(teacher_logits: Array, partner_logits: Array, student_logits: Array,
                     weights: Array, *, teacher_fraction: Array | float,
                     temperature: float = 1.0,
                     chunk_length: int = DEFAULT_CHUNK_LENGTH) -> Array:
  """`logit_kl` against p_target = (1 - a) softmax(z_P / tau) + a softmax(z_T / tau).

  The interpolated-distillation target of METHOD.md 1.4 (our interpretation): the partner
  P is a teacher assistant or the student itself (pass it detached); a =
  `teacher_fraction` in [0, 1], e.g. from `interpolation.BlendSchedule`. Neither the
  teacher nor the partner receives a gradient.
  """
  _check_temperature(temperature)
  _check_logits("teacher_logits", teacher_logits, student_logits, weights)
  _check_logits("partner_logits", partner_logits, student_logits, weights)
  a = jnp.clip(_float32(teacher_fraction), 0.0, 1.0)
  # log 0 = -inf is fine here: logsumexp then ignores that part of the mixture.
  log_mix = jnp.log(jnp.stack([1.0 - a, a]))
  return _chunked_kl((partner_logits, teacher_logits), lax.stop_gradient(log_mix),
                     student_logits, weights, float(temperature), int(chunk_length))


# ----------------------------------------------------------------------------- targets


def cross_entropy(logits: Array, targets: Array, weights: Array, *,
                  z_loss: float = 0.0) -> tuple[Array, Array]:
  """Mean over weighted tokens of -log softmax(logits)[target] + z_loss * logsumexp^2.

  The z-loss term (t5x, from Mesh TensorFlow) pulls log Z towards 0 and keeps bfloat16
  logits well-conditioned.

  Args:
    logits: [batch, length, vocab].
    targets: [batch, length] int token ids.
    weights: [batch, length] (0 for padding).
    z_loss: coefficient of logsumexp(logits)^2 (t5x uses 1e-4 in pretraining).

  Returns:
    (loss including the z-loss, the z-loss part alone): float32 scalars.
  """
  if jnp.ndim(logits) != 3 or logits.shape[:2] != targets.shape:
    raise LossInputError(
        f"cross_entropy: logits [batch, length, vocab] and targets [batch, length] must "
        f"agree, got {jnp.shape(logits)} and {jnp.shape(targets)}.")
  if weights.shape != targets.shape:
    raise LossInputError(f"cross_entropy: weights must be {targets.shape}, got "
                         f"{weights.shape}.")
  logits = _float32(logits)
  weights = _float32(weights)
  log_z = jax.nn.logsumexp(logits, axis=-1)  # [batch, length]
  target_logit = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32),
                                     axis=-1)[..., 0]
  total_weight = _weight_sum(weights)
  z_part = z_loss * jnp.sum(jnp.square(log_z) * weights) / total_weight
  nll = jnp.sum((log_z - target_logit) * weights) / total_weight
  return nll + z_part, z_part


# ----------------------------------------------------------------------------- hidden


def hidden_mse(teacher_hidden: Array, student_hidden: Array, weights: Array,
               projection: Array | None = None) -> Array:
  """TinyBERT-style MSE(student_hidden @ projection, teacher_hidden).

  Mean over weighted positions and over the teacher's width. `projection` [width_s,
  width_t] is a trainable parameter of the objective (not of the student); None needs
  equal widths. The teacher side carries no gradient.
  """
  if jnp.ndim(teacher_hidden) != 3 or teacher_hidden.shape[:2] != student_hidden.shape[:2]:
    raise LossInputError(
        f"hidden_mse: hidden states must be [batch, length, width] with the same batch and "
        f"length, got {jnp.shape(teacher_hidden)} and {jnp.shape(student_hidden)}.")
  student = _float32(student_hidden)
  if projection is not None:
    expected = (student_hidden.shape[-1], teacher_hidden.shape[-1])
    if projection.shape != expected:
      raise LossInputError(f"hidden_mse: projection must be {expected}, got "
                           f"{projection.shape}.")
    student = jnp.dot(student, _float32(projection), precision=lax.Precision.HIGHEST)
  elif student.shape[-1] != teacher_hidden.shape[-1]:
    raise LossInputError(
        f"hidden_mse: student width {student.shape[-1]} differs from teacher width "
        f"{teacher_hidden.shape[-1]}: pass a projection.")
  teacher = lax.stop_gradient(_float32(teacher_hidden))
  weights = _float32(weights)
  squared = jnp.mean(jnp.square(student - teacher), axis=-1)  # [batch, length]
  return jnp.sum(squared * weights) / _weight_sum(weights)
