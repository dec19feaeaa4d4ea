"""Distillation losses as pure functions on arrays (docs/method.md, "Relation KL" and "Logit KL").

The logit losses also take the output layer left factored (`OutputLayer`), so the step
never holds a whole [batch, length, vocab] tensor (memory note in the logits section).

Every loss casts its inputs to float32 and returns a float32 scalar. Means are taken over
valid positions of the whole batch (token-level means, as t5x normalises its losses), so
a padded position never changes a value.

- `relation_kl`: MiniLMv2 self-attention relation KL(teacher || student) for one pair.
- `logit_kl`, `blended_logit_kl`: tau^2 * KL over the vocabulary against the teacher's
  distribution, or against a blend of two targets (docs/method.md, "Interpolated distillation").
- `cross_entropy`: on the targets, with t5x's optional z-loss; `token_statistics`: the
  sums behind accuracy and cross-entropy metrics.
- `hidden_mse`: TinyBERT-style hidden-state MSE through a learned projection.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from miniend_jax.errors import MiniendError
from miniend_jax.taps import OutputLayer

Array = jax.Array

# Added to masked relation scores: finite, so a row without any valid key stays finite
# (such rows are excluded from the mean anyway).
_MASK_SCORE = -1e9
# Sequence positions per chunk of the vocabulary-sized KL computation (see `logit_kl`).
DEFAULT_CHUNK_LENGTH = 16
# Query positions per chunk of the relation computation (see `relation_kl`).
DEFAULT_RELATION_CHUNK_LENGTH = 64


class LossInputError(MiniendError, ValueError):
  """Inputs to a loss have shapes or settings it cannot work with."""


def _float32(x: Array) -> Array:
  return jnp.asarray(x).astype(jnp.float32)


def _over_chunks(length: int, chunk_length: int, fn, carry):
  """carry = fn(start, size, carry) for consecutive slices [start, start + size)."""
  chunk_length = max(1, min(chunk_length, length))
  full = length // chunk_length
  carry = lax.fori_loop(0, full, lambda i, c: fn(i * chunk_length, chunk_length, c), carry)
  if length % chunk_length:
    carry = fn(full * chunk_length, length % chunk_length, carry)
  return carry


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
                key_segment_ids: Array | None = None,
                chunk_length: int = DEFAULT_RELATION_CHUNK_LENGTH) -> Array:
  """MiniLMv2 relation KL(teacher || student) for one pair (A, B), docs/method.md, "Relation KL".

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
    chunk_length: query positions computed at a time (memory note below); any value
      gives the same result.

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
  rows = jnp.logical_and(jnp.asarray(query_mask, bool), jnp.any(allowed, axis=-1))
  rows = rows.astype(jnp.float32)  # [batch, q]: the query rows that count
  return _chunked_relation_kl(
      lax.stop_gradient(_float32(teacher_a)), lax.stop_gradient(_float32(teacher_b)),
      _float32(student_a), _float32(student_b), allowed, rows, num_relation_heads,
      int(chunk_length))


# Memory: relations are [batch, heads, q, k] per model (32 relation heads over 512
# encoder positions: 64 MiB per example pair in float32), and written plainly their
# log-softmaxes stay alive for the backward pass. As for the logit losses below, the
# rows are computed `chunk_length` queries at a time, and the gradient with respect to
# the student's A and B (d row / d scores = softmax(S) - Rel^T, masked) is written in
# the same walk; only [batch, length, width]-sized results are kept.


def _relation_walk(teacher_a, teacher_b, student_a, student_b, allowed, rows, heads,
                   chunk_length, with_gradient):
  batch, q_length, _ = student_a.shape
  count = jnp.maximum(jnp.sum(rows) * heads, 1.0)
  split = lambda x: x.reshape(x.shape[:2] + (heads, x.shape[-1] // heads))

  def chunk(start, size, carry):
    total, grad_a, grad_b = carry
    allowed_c = lax.dynamic_slice_in_dim(allowed, start, size, axis=1)  # [batch, c, k]
    rows_c = lax.dynamic_slice_in_dim(rows, start, size, axis=1)
    log_t = _log_relations(lax.dynamic_slice_in_dim(teacher_a, start, size, axis=1),
                           teacher_b, heads, allowed_c)
    student_a_c = lax.dynamic_slice_in_dim(student_a, start, size, axis=1)
    log_s = _log_relations(student_a_c, student_b, heads, allowed_c)
    p = jnp.exp(log_t)
    row_kl = jnp.sum(jnp.where(allowed_c[:, None], p * (log_t - log_s), 0.0), axis=-1)
    total = total + jnp.sum(row_kl * rows_c[:, None])
    if with_gradient:
      scale = rows_c[:, None, :, None] / (count * math.sqrt(split(student_a).shape[-1]))
      d_scores = jnp.where(allowed_c[:, None], jnp.exp(log_s) - p, 0.0) * scale
      d_a = jnp.einsum("brqk,bkrd->bqrd", d_scores, split(student_b),
                       precision=lax.Precision.HIGHEST)
      grad_a = lax.dynamic_update_slice_in_dim(grad_a, d_a.reshape(d_a.shape[:2] + (-1,)),
                                               start, axis=1)
      d_b = jnp.einsum("brqk,bqrd->bkrd", d_scores, split(student_a_c),
                       precision=lax.Precision.HIGHEST)
      grad_b = grad_b + d_b.reshape(grad_b.shape)
    return total, grad_a, grad_b

  initial = (jnp.zeros((), jnp.float32),
             jnp.zeros_like(student_a) if with_gradient else None,
             jnp.zeros_like(student_b) if with_gradient else None)
  total, grad_a, grad_b = _over_chunks(q_length, chunk_length, chunk, initial)
  return total / count, grad_a, grad_b


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def _chunked_relation_kl(teacher_a, teacher_b, student_a, student_b, allowed, rows, heads,
                         chunk_length):
  return _relation_walk(teacher_a, teacher_b, student_a, student_b, allowed, rows, heads,
                        chunk_length, with_gradient=False)[0]


def _chunked_relation_kl_forward(teacher_a, teacher_b, student_a, student_b, allowed, rows,
                                 heads, chunk_length):
  value, grad_a, grad_b = _relation_walk(teacher_a, teacher_b, student_a, student_b,
                                         allowed, rows, heads, chunk_length,
                                         with_gradient=True)
  return value, (grad_a, grad_b)


def _chunked_relation_kl_backward(heads, chunk_length, residuals, g):
  grad_a, grad_b = residuals
  return None, None, g * grad_a, g * grad_b, None, None


_chunked_relation_kl.defvjp(_chunked_relation_kl_forward, _chunked_relation_kl_backward)


# ----------------------------------------------------------------------------- logits
#
# Memory: the teacher's and the student's logits, [batch, length, vocab] each, are the
# largest activations of a T5 step (vocabulary 32128). Written plainly, a logit loss and
# its gradient keep both tensors and float32 log-softmaxes of them as residuals. Here
# every logit loss walks over the sequence in chunks of `chunk_length` positions, and in
# the same walk writes its gradient: d loss / d student logits is known in closed form
# (tau * w / sum(w) * (softmax(z_S / tau) - p_target) for the KL, softmax - one-hot for
# cross-entropy), so nothing is recomputed in the backward pass (a custom VJP that only
# scales the stored gradient). Float32 temporaries exist for one chunk at a time.
#
# The logits can be given whole (an array) or factored (`OutputLayer`, the decoder's
# "output_layer" tap: logits = hidden @ kernel). Factored, each chunk's logits are
# computed from the hidden states, the gradient goes straight to the hidden states and
# the kernel, and no [batch, length, vocab] tensor ever exists: this is what the train
# step uses. Chunks cut the length axis, not the batch, so a batch-sharded (and
# vocab-sharded) layout is kept. tools/bench.py measures the step's memory both ways.

Logits = Array | OutputLayer  # whole [batch, length, vocab] logits, or factored


def _logits_shape(source: Logits) -> tuple[int, ...]:
  if isinstance(source, OutputLayer):
    return tuple(source.hidden.shape[:-1]) + (source.kernel.shape[-1],)
  return tuple(jnp.shape(source))


def _chunk_logits(source: Logits, start, size: int) -> Array:
  """float32 logits of positions [start, start + size): [batch, size, vocab]."""
  if isinstance(source, OutputLayer):
    hidden = lax.dynamic_slice_in_dim(source.hidden, start, size, axis=1)
    return jnp.dot(_float32(hidden), _float32(source.kernel))
  return _float32(lax.dynamic_slice_in_dim(source, start, size, axis=1))


def _zero_gradient(source: Logits) -> Logits:
  return jax.tree_util.tree_map(jnp.zeros_like, source)


def _add_chunk_gradient(source: Logits, start, size: int, d_logits: Array,
                        gradient: Logits) -> Logits:
  """gradient + d loss / d source, given d loss / d logits of one chunk."""
  if isinstance(source, OutputLayer):
    hidden = _float32(lax.dynamic_slice_in_dim(source.hidden, start, size, axis=1))
    d_hidden = jnp.dot(d_logits, _float32(source.kernel).T)
    d_kernel = jnp.einsum("bld,blv->dv", hidden, d_logits)
    return OutputLayer(
        lax.dynamic_update_slice_in_dim(gradient.hidden,
                                        d_hidden.astype(gradient.hidden.dtype), start, 1),
        gradient.kernel + d_kernel.astype(gradient.kernel.dtype))
  return lax.dynamic_update_slice_in_dim(gradient, d_logits.astype(gradient.dtype), start, 1)


def _target_log_probs(targets: tuple[Array, ...], log_mix: Array, temperature: float) -> Array:
  """log sum_k mix_k softmax(targets_k / tau): [batch, c, vocab]."""
  parts = [jax.nn.log_softmax(t / temperature, axis=-1) for t in targets]
  if len(parts) == 1:
    return parts[0]
  stacked = jnp.stack([lm + p for lm, p in zip(log_mix, parts)])
  return jax.nn.logsumexp(stacked, axis=0)


def _rows(kind: str, setting: float, targets: tuple[Array, ...], log_mix: Array,
          student: Array, tokens: Array | None) -> tuple[Array, Array]:
  """Per position of one chunk: (loss value [batch, c], d value / d student logits)."""
  if kind == "kl":
    temperature = setting
    log_p = _target_log_probs(targets, log_mix, temperature)
    log_q = jax.nn.log_softmax(student / temperature, axis=-1)
    p = jnp.exp(log_p)
    values = temperature ** 2 * jnp.sum(jnp.where(p > 0, p * (log_p - log_q), 0.0), axis=-1)
    return values, temperature * (jnp.exp(log_q) - p)
  z_loss = setting  # cross-entropy with t5x's z-loss
  log_z = jax.nn.logsumexp(student, axis=-1)
  target_logit = jnp.take_along_axis(student, tokens[..., None], axis=-1)[..., 0]
  softmax = jnp.exp(student - log_z[..., None])
  one_hot = jax.nn.one_hot(tokens, student.shape[-1], dtype=jnp.float32)
  direction = softmax * (1.0 + 2.0 * z_loss * log_z)[..., None] - one_hot
  return log_z - target_logit + z_loss * jnp.square(log_z), direction


def _weight_sum(weights: Array) -> Array:
  total = jnp.sum(weights)
  return jnp.where(total > 0, total, 1.0)


def _walk(kind, setting, chunk_length, targets, log_mix, student, weights, tokens,
          with_gradient: bool):
  """One pass over the chunks: the weighted mean, per-position values and (optionally)
  d mean / d student."""
  weights = _float32(weights)
  total_weight = _weight_sum(weights)

  def chunk(start, size, carry):
    values, gradient = carry
    target_chunks = tuple(_chunk_logits(t, start, size) for t in targets)
    token_chunk = (None if tokens is None
                   else lax.dynamic_slice_in_dim(tokens, start, size, axis=1))
    rows, direction = _rows(kind, setting, target_chunks, log_mix,
                            _chunk_logits(student, start, size), token_chunk)
    values = lax.dynamic_update_slice_in_dim(values, rows, start, axis=1)
    if with_gradient:
      scale = lax.dynamic_slice_in_dim(weights, start, size, axis=1) / total_weight
      gradient = _add_chunk_gradient(student, start, size, scale[..., None] * direction,
                                     gradient)
    return values, gradient

  initial = (jnp.zeros(weights.shape, jnp.float32),
             _zero_gradient(student) if with_gradient else None)
  values, gradient = _over_chunks(weights.shape[1], chunk_length, chunk, initial)
  mean = jnp.sum(values * weights) / total_weight
  return mean, values, total_weight, gradient


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _chunked_mean(kind, setting, chunk_length, targets, log_mix, student, weights, tokens):
  return _walk(kind, setting, chunk_length, targets, log_mix, student, weights, tokens,
               with_gradient=False)[0]


def _chunked_mean_forward(kind, setting, chunk_length, targets, log_mix, student, weights,
                          tokens):
  mean, values, total_weight, gradient = _walk(kind, setting, chunk_length, targets,
                                               log_mix, student, weights, tokens,
                                               with_gradient=True)
  return mean, (values, total_weight, mean, gradient, weights)


def _chunked_mean_backward(kind, setting, chunk_length, residuals, g):
  values, total_weight, mean, gradient, weights = residuals
  grad_student = jax.tree_util.tree_map(lambda x: (g * x).astype(x.dtype), gradient)
  grad_weights = None  # integer or boolean weights have no tangent space
  if jnp.issubdtype(weights.dtype, jnp.floating):
    # d/dw_i of sum_j w_j v_j / sum_j w_j.
    grad_weights = (g * (values - mean) / total_weight).astype(weights.dtype)
  # Targets are constants: the teacher (and a detached blend partner) get no gradient.
  return None, None, grad_student, grad_weights, None


_chunked_mean.defvjp(_chunked_mean_forward, _chunked_mean_backward)


def _check_logits(name: str, logits: Logits, student_logits: Logits, weights: Array) -> None:
  shape, student_shape = _logits_shape(logits), _logits_shape(student_logits)
  if len(shape) != 3:
    raise LossInputError(f"{name} must be [batch, length, vocab], got {shape}.")
  if shape != student_shape:
    raise LossInputError(
        f"{name} {shape} and student logits {student_shape} differ in shape; "
        "logit distillation needs the same vocabulary (vocab_size) in both models.")
  if weights.shape != shape[:2]:
    raise LossInputError(
        f"weights must be [batch, length] = {shape[:2]}, got {weights.shape}.")


def _check_temperature(temperature: float) -> None:
  if not isinstance(temperature, (int, float)) or temperature <= 0:
    raise LossInputError(f"temperature must be a positive number, got {temperature!r}.")


def logit_kl(teacher_logits: Logits, student_logits: Logits, weights: Array, *,
             temperature: float = 1.0,
             chunk_length: int = DEFAULT_CHUNK_LENGTH) -> Array:
  """tau^2 * mean over weighted tokens of KL(softmax(z_T / tau) || softmax(z_S / tau)).

  Args:
    teacher_logits: [batch, length, vocab] (any float dtype; no gradient flows to it), or
      an OutputLayer (memory note above).
    student_logits: [batch, length, vocab], or an OutputLayer.
    weights: [batch, length] token weights (0 for padding); the mean is
      sum(w * kl) / sum(w), and 0 when every weight is 0.
    temperature: tau > 0. The tau^2 factor keeps gradient magnitudes comparable across
      temperatures (Hinton et al. 2015).
    chunk_length: sequence positions per chunk (memory note above); any value gives the
      same result.
  """
  _check_temperature(temperature)
  _check_logits("teacher_logits", teacher_logits, student_logits, weights)
  return _chunked_mean("kl", float(temperature), int(chunk_length), (teacher_logits,),
                       jnp.zeros((1,), jnp.float32), student_logits, weights, None)


def blended_logit_kl(teacher_logits: Logits, partner_logits: Logits, student_logits: Logits,
                     weights: Array, *, teacher_fraction: Array | float,
                     temperature: float = 1.0,
                     chunk_length: int = DEFAULT_CHUNK_LENGTH) -> Array:
  """`logit_kl` against p_target = (1 - a) softmax(z_P / tau) + a softmax(z_T / tau).

  The target of docs/method.md, "Interpolated distillation" (our interpretation): the partner
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
  return _chunked_mean("kl", float(temperature), int(chunk_length),
                       (partner_logits, teacher_logits), lax.stop_gradient(log_mix),
                       student_logits, weights, None)


# ----------------------------------------------------------------------------- targets


def _check_targets(logits: Logits, targets: Array, weights: Array, name: str) -> None:
  shape = _logits_shape(logits)
  if len(shape) != 3 or shape[:2] != targets.shape:
    raise LossInputError(
        f"{name}: logits [batch, length, vocab] and targets [batch, length] must "
        f"agree, got {shape} and {jnp.shape(targets)}.")
  if weights.shape != targets.shape:
    raise LossInputError(f"{name}: weights must be {targets.shape}, got {weights.shape}.")


def cross_entropy(logits: Logits, targets: Array, weights: Array, *, z_loss: float = 0.0,
                  chunk_length: int = DEFAULT_CHUNK_LENGTH) -> tuple[Array, Array]:
  """Mean over weighted tokens of -log softmax(logits)[target] + z_loss * logsumexp^2.

  The z-loss term (t5x, from Mesh TensorFlow) pulls log Z towards 0 and keeps bfloat16
  logits well-conditioned.

  Args:
    logits: [batch, length, vocab], or an OutputLayer (memory note above).
    targets: [batch, length] int token ids.
    weights: [batch, length] (0 for padding).
    z_loss: coefficient of logsumexp(logits)^2 (t5x uses 1e-4 in pretraining).
    chunk_length: sequence positions per chunk; any value gives the same result.

  Returns:
    (loss including the z-loss, the z-loss part alone): float32 scalars.
  """
  _check_targets(logits, targets, weights, "cross_entropy")
  tokens = jnp.asarray(targets).astype(jnp.int32)
  loss = _chunked_mean("cross_entropy", float(z_loss), int(chunk_length), (),
                       jnp.zeros((1,), jnp.float32), logits, weights, tokens)
  z_part = jnp.zeros((), jnp.float32)
  if z_loss:
    z_part = z_loss * jnp.sum(
        jnp.square(_log_partition(logits, chunk_length)) * _float32(weights)
    ) / _weight_sum(_float32(weights))
  return loss, z_part


def _log_partition(logits: Logits, chunk_length: int) -> Array:
  """logsumexp over the vocabulary per position, [batch, length], chunk by chunk."""
  batch, length, _ = _logits_shape(logits)

  def chunk(start, size, out):
    log_z = jax.nn.logsumexp(_chunk_logits(logits, start, size), axis=-1)
    return lax.dynamic_update_slice_in_dim(out, log_z, start, axis=1)

  return _over_chunks(length, chunk_length, chunk, jnp.zeros((batch, length), jnp.float32))


def token_statistics(logits: Logits, targets: Array, weights: Array, *,
                     chunk_length: int = DEFAULT_CHUNK_LENGTH) -> dict[str, Array]:
  """Weighted sums for accuracy and cross-entropy metrics, without gradient:
  {"correct_sum", "cross_ent_sum", "weight_sum"} (argmax == target; -log p[target])."""
  _check_targets(logits, targets, weights, "token_statistics")
  logits = jax.tree_util.tree_map(lax.stop_gradient, logits)
  weights = _float32(weights)
  tokens = jnp.asarray(targets).astype(jnp.int32)
  batch, length, _ = _logits_shape(logits)

  def chunk(start, size, carry):
    correct, nll = carry
    z = _chunk_logits(logits, start, size)
    t = lax.dynamic_slice_in_dim(tokens, start, size, axis=1)
    target_logit = jnp.take_along_axis(z, t[..., None], axis=-1)[..., 0]
    correct = lax.dynamic_update_slice_in_dim(
        correct, (jnp.argmax(z, axis=-1) == t).astype(jnp.float32), start, axis=1)
    nll = lax.dynamic_update_slice_in_dim(
        nll, jax.nn.logsumexp(z, axis=-1) - target_logit, start, axis=1)
    return correct, nll

  zeros = jnp.zeros((batch, length), jnp.float32)
  correct, nll = _over_chunks(length, chunk_length, chunk, (zeros, zeros))
  return {"correct_sum": jnp.sum(correct * weights), "cross_ent_sum": jnp.sum(nll * weights),
          "weight_sum": jnp.sum(weights)}


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
