"""The losses against NumPy implementations of docs/method.md, "Relation KL" and "Logit KL"."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from miniend_jax.distill import losses

# Jitted once per shape: far faster on CPU than dispatching every operation eagerly.
relation_kl = jax.jit(losses.relation_kl, static_argnames=("num_relation_heads", "causal"))
logit_kl = jax.jit(losses.logit_kl, static_argnames=("temperature", "chunk_length"))
blended_logit_kl = jax.jit(losses.blended_logit_kl,
                           static_argnames=("temperature", "chunk_length"))


def _numpy_relation_kl(ta, tb, sa, sb, heads, key_mask, query_mask, causal,
                       query_segments=None, key_segments=None):
  """Row by row, in float64: the formula of docs/method.md, "Relation KL" read literally."""
  ta, tb, sa, sb = (np.asarray(x, np.float64) for x in (ta, tb, sa, sb))
  total, rows = 0.0, 0
  for b in range(ta.shape[0]):
    for i in range(ta.shape[1]):
      if not query_mask[b, i]:
        continue
      valid = np.asarray(key_mask[b], bool).copy()
      if causal:
        valid &= np.arange(tb.shape[1]) <= i
      if query_segments is not None:
        valid &= key_segments[b] == query_segments[b, i]
      if not valid.any():
        continue
      for r in range(heads):
        def relation(a, keys):
          width = a.shape[-1] // heads
          chunk = slice(r * width, (r + 1) * width)
          scores = keys[b][valid][:, chunk] @ a[b, i, chunk] / math.sqrt(width)
          p = np.exp(scores - scores.max())
          return p / p.sum()
        p_t, p_s = relation(ta, tb), relation(sa, sb)
        total += np.sum(p_t * np.log(p_t / p_s))
        rows += 1
  return total / rows


def _random(seed, *shapes):
  rng = np.random.default_rng(seed)
  return [jnp.asarray(rng.standard_normal(s), jnp.float32) for s in shapes]


# [batch=3, len_q=5, len_k=6]; teacher width 12, student width 8, R = 4.
KEY_MASK = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], bool)
QUERY_MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], bool)


@pytest.fixture(scope="module")
def cross_inputs():
  return _random(0, (3, 5, 12), (3, 6, 12), (3, 5, 8), (3, 6, 8))


@pytest.fixture(scope="module")
def self_inputs():
  ta, tb, sa, sb = _random(1, (3, 6, 12), (3, 6, 12), (3, 6, 8), (3, 6, 8))
  return ta, tb, sa, sb


def test_relation_kl_matches_numpy_with_padding(cross_inputs):
  ours = relation_kl(*cross_inputs, num_relation_heads=4, key_mask=KEY_MASK,
                            query_mask=QUERY_MASK)
  expected = _numpy_relation_kl(*cross_inputs, 4, KEY_MASK, QUERY_MASK, causal=False)
  np.testing.assert_allclose(ours, expected, rtol=1e-5)


def test_relation_kl_matches_numpy_causal(self_inputs):
  ours = relation_kl(*self_inputs, num_relation_heads=2, key_mask=KEY_MASK,
                            query_mask=KEY_MASK, causal=True)
  expected = _numpy_relation_kl(*self_inputs, 2, KEY_MASK, KEY_MASK, causal=True)
  np.testing.assert_allclose(ours, expected, rtol=1e-5)
  non_causal = relation_kl(*self_inputs, num_relation_heads=2, key_mask=KEY_MASK,
                                  query_mask=KEY_MASK)
  assert abs(float(non_causal) - float(ours)) > 1e-3


def test_relation_kl_matches_numpy_packed(self_inputs):
  segments = np.array([[1, 1, 1, 2, 2, 2], [1, 1, 2, 0, 0, 0], [1, 2, 2, 2, 3, 0]])
  ours = relation_kl(*self_inputs, num_relation_heads=4, key_mask=KEY_MASK,
                            query_mask=KEY_MASK, causal=True, query_segment_ids=segments,
                            key_segment_ids=segments)
  expected = _numpy_relation_kl(*self_inputs, 4, KEY_MASK, KEY_MASK, True, segments,
                                segments)
  np.testing.assert_allclose(ours, expected, rtol=1e-5)


def test_relation_kl_zero_for_identical_and_positive_otherwise(self_inputs):
  ta, tb, sa, sb = self_inputs
  same = relation_kl(ta, tb, ta, tb, num_relation_heads=4, key_mask=KEY_MASK,
                            query_mask=KEY_MASK, causal=True)
  assert abs(float(same)) < 1e-7
  different = relation_kl(ta, tb, sa, sb, num_relation_heads=4, key_mask=KEY_MASK,
                                 query_mask=KEY_MASK, causal=True)
  assert float(different) > 1e-3


def test_relation_kl_ignores_padded_positions(cross_inputs):
  kwargs = dict(num_relation_heads=4, key_mask=KEY_MASK, query_mask=QUERY_MASK)
  reference = relation_kl(*cross_inputs, **kwargs)
  garbage = _random(7, *(x.shape for x in cross_inputs))
  changed = []
  for x, g, mask in zip(cross_inputs, garbage, (QUERY_MASK, KEY_MASK, QUERY_MASK, KEY_MASK)):
    changed.append(jnp.where(mask[..., None], x, 100.0 * g))
  np.testing.assert_allclose(relation_kl(*changed, **kwargs), reference, rtol=1e-6)
  # One example alone, padding cut off, gives its own rows' mean.
  second = [x[1:2, :2] if i % 2 == 0 else x[1:2, :3] for i, x in enumerate(cross_inputs)]
  alone = relation_kl(*second, num_relation_heads=4,
                             key_mask=np.ones((1, 3), bool))
  expected = _numpy_relation_kl(*cross_inputs, 4, KEY_MASK,
                                QUERY_MASK & (np.arange(3) == 1)[:, None], causal=False)
  np.testing.assert_allclose(alone, expected, rtol=1e-5)


def test_relation_kl_teacher_gets_no_gradient(cross_inputs):
  grads = jax.grad(lambda *x: relation_kl(
      *x, num_relation_heads=4, key_mask=KEY_MASK, query_mask=QUERY_MASK),
                   argnums=(0, 1, 2, 3))(*cross_inputs)
  assert float(jnp.abs(grads[0]).max()) == 0.0 and float(jnp.abs(grads[1]).max()) == 0.0
  assert float(jnp.abs(grads[2]).max()) > 0.0 and float(jnp.abs(grads[3]).max()) > 0.0


@pytest.mark.parametrize("chunk_length", [1, 4])
def test_relation_kl_chunks_give_autodiff_values_and_gradients(self_inputs, chunk_length):
  """Query chunks (with a remainder for 4 of 6) and the gradient written in the forward
  walk equal autodiff through the whole relation matrices, written plainly."""
  ta, tb, sa, sb = self_inputs

  def plain(sa, sb):
    allowed = losses.relation_allowed(jnp.asarray(KEY_MASK), 6, causal=True)
    log_rel = lambda a, b, heads: losses._log_relations(a, b, heads, allowed)
    log_t, log_s = log_rel(ta, tb, 2), log_rel(sa, sb, 2)
    row = jnp.sum(jnp.where(allowed[:, None], jnp.exp(log_t) * (log_t - log_s), 0.0), -1)
    rows = (jnp.asarray(KEY_MASK, bool) & allowed.any(-1)).astype(jnp.float32)
    return jnp.sum(row * rows[:, None]) / (jnp.sum(rows) * 2)

  def chunked(sa, sb):
    return losses.relation_kl(ta, tb, sa, sb, num_relation_heads=2, key_mask=KEY_MASK,
                              query_mask=KEY_MASK, causal=True, chunk_length=chunk_length)

  value, grads = jax.value_and_grad(chunked, argnums=(0, 1))(sa, sb)
  expected, expected_grads = jax.value_and_grad(plain, argnums=(0, 1))(sa, sb)
  np.testing.assert_allclose(value, expected, rtol=1e-5)
  for grad, expected_grad in zip(grads, expected_grads):
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-7)


def test_relation_kl_rejects_heads_that_do_not_divide(cross_inputs):
  with pytest.raises(losses.LossInputError, match="num_relation_heads=3 does not divide"):
    relation_kl(*cross_inputs, num_relation_heads=3, key_mask=KEY_MASK)
  with pytest.raises(losses.LossInputError, match="causal=True"):
    relation_kl(*cross_inputs, num_relation_heads=4, key_mask=KEY_MASK, causal=True)


# ----------------------------------------------------------------------------- logits

WEIGHTS = np.array([[1, 1, 0.5, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]], np.float32)


@pytest.fixture(scope="module")
def logits():
  teacher, student = _random(2, (2, 7, 11), (2, 7, 11))
  return 3.0 * teacher, 2.0 * student


def _numpy_logit_kl(teacher, student, weights, tau, partner=None, fraction=1.0):
  def softmax(z):
    z = np.asarray(z, np.float64) / tau
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
  p = softmax(teacher)
  if partner is not None:
    p = fraction * p + (1 - fraction) * softmax(partner)
  q = softmax(student)
  kl = np.sum(p * np.log(p / q), axis=-1)
  return tau ** 2 * np.sum(kl * weights) / np.sum(weights)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_logit_kl_matches_textbook_formula(logits, temperature):
  expected = _numpy_logit_kl(*logits, WEIGHTS, temperature)
  # Any chunking, with a remainder chunk or without, gives the same value.
  for chunk_length in ((1, 3, 64) if temperature == 1.0 else (7,)):
    ours = logit_kl(*logits, WEIGHTS, temperature=temperature,
                           chunk_length=chunk_length)
    np.testing.assert_allclose(ours, expected, rtol=1e-5)


def test_logit_kl_temperature_scaling(logits):
  teacher, student = logits
  # Scaling both logits by tau and dividing by tau inside cancel; tau^2 remains.
  scaled = logit_kl(2.0 * teacher, 2.0 * student, WEIGHTS, temperature=2.0)
  plain = logit_kl(teacher, student, WEIGHTS)
  np.testing.assert_allclose(scaled, 4.0 * plain, rtol=1e-5)
  with pytest.raises(losses.LossInputError, match="temperature"):
    logit_kl(teacher, student, WEIGHTS, temperature=0.0)


def test_logit_kl_gradient_matches_finite_differences(logits):
  teacher, student = logits
  weights = jnp.asarray(WEIGHTS)

  def f(s, w):
    return logit_kl(teacher, s, w, temperature=2.0, chunk_length=3)

  grad_s, grad_w = jax.grad(f, argnums=(0, 1))(student, weights)
  direction = _random(3, student.shape)[0]
  h = 1e-2
  numeric = (f(student + h * direction, weights) - f(student - h * direction, weights)) / (2 * h)
  np.testing.assert_allclose(jnp.vdot(grad_s, direction), numeric, rtol=2e-3)
  for index in [(0, 1, 4), (1, 6, 0), (0, 3, 9)]:
    bump = jnp.zeros_like(student).at[index].set(h)
    numeric = (f(student + bump, weights) - f(student - bump, weights)) / (2 * h)
    np.testing.assert_allclose(grad_s[index], numeric, rtol=5e-3, atol=1e-5)
  assert float(jnp.abs(grad_s[0, 4:]).max()) == 0.0  # zero-weight positions
  bump = jnp.zeros_like(weights).at[1, 2].set(h)
  numeric = (f(student, weights + bump) - f(student, weights - bump)) / (2 * h)
  np.testing.assert_allclose(grad_w[1, 2], numeric, rtol=2e-3)
  grad_teacher = jax.grad(lambda t: logit_kl(t, student, weights))(teacher)
  assert float(jnp.abs(grad_teacher).max()) == 0.0


def test_logit_kl_accepts_bfloat16_teacher_and_all_zero_weights(logits):
  teacher, student = logits
  low = teacher.astype(jnp.bfloat16)
  expected = _numpy_logit_kl(np.asarray(low.astype(jnp.float32)), student, WEIGHTS, 1.0)
  np.testing.assert_allclose(logit_kl(low, student, WEIGHTS), expected, rtol=1e-5)
  assert float(logit_kl(teacher, student, np.zeros_like(WEIGHTS))) == 0.0


def test_logit_kl_rejects_vocabulary_mismatch(logits):
  with pytest.raises(losses.LossInputError, match="vocab"):
    logit_kl(logits[0][..., :10], logits[1], WEIGHTS)


@pytest.mark.parametrize("fraction", [0.0, 0.3, 1.0])
def test_blended_logit_kl_matches_mixture_formula(logits, fraction):
  teacher, student = logits
  partner = _random(4, teacher.shape)[0]
  ours = blended_logit_kl(teacher, partner, student, WEIGHTS,
                                 teacher_fraction=fraction, temperature=2.0, chunk_length=4)
  expected = _numpy_logit_kl(teacher, student, WEIGHTS, 2.0, partner, fraction)
  np.testing.assert_allclose(ours, expected, rtol=1e-5)
  # Blending with the student's own distribution at a = 0 leaves nothing to learn.
  own = jax.value_and_grad(lambda s: blended_logit_kl(
      teacher, jax.lax.stop_gradient(s), s, WEIGHTS, teacher_fraction=0.0))(student)
  assert abs(float(own[0])) < 1e-6 and float(jnp.abs(own[1]).max()) < 1e-7


# ----------------------------------------------------------------------------- others


def test_cross_entropy_with_z_loss_matches_numpy(logits):
  _, student = logits
  targets = np.array([[3, 1, 4, 1, 5, 9, 2], [6, 5, 3, 5, 8, 9, 7]])
  z = np.asarray(student, np.float64)
  log_z = np.log(np.exp(z).sum(-1))
  nll = log_z - np.take_along_axis(z, targets[..., None], -1)[..., 0]
  expected = np.sum((nll + 1e-2 * log_z ** 2) * WEIGHTS) / WEIGHTS.sum()
  loss, z_part = losses.cross_entropy(student, targets, WEIGHTS, z_loss=1e-2)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(z_part, 1e-2 * np.sum(log_z ** 2 * WEIGHTS) / WEIGHTS.sum(),
                             rtol=1e-5)
  plain, zero = losses.cross_entropy(student, targets, WEIGHTS)
  np.testing.assert_allclose(plain, np.sum(nll * WEIGHTS) / WEIGHTS.sum(), rtol=1e-5)
  assert float(zero) == 0.0


def _plain_losses(teacher, student, targets, weights):
  """The three logit losses written plainly on whole logits (autodiff does the rest)."""
  log_p = jax.nn.log_softmax(teacher / 2.0)
  log_q = jax.nn.log_softmax(student / 2.0)
  w = weights / weights.sum()
  kl = 4.0 * jnp.sum(jnp.sum(jnp.exp(log_p) * (log_p - log_q), -1) * w)
  log_z = jax.nn.logsumexp(student, -1)
  nll = log_z - jnp.take_along_axis(student, targets[..., None], -1)[..., 0]
  return kl, jnp.sum((nll + 1e-2 * log_z ** 2) * w)


def test_factored_output_layer_gives_the_values_and_gradients_of_whole_logits():
  """An OutputLayer (hidden @ kernel, computed chunk by chunk, gradient written in the
  forward walk) equals autodiff through the materialised logits, for every logit loss."""
  from miniend_jax.taps import OutputLayer
  t_hidden, s_hidden = _random(5, (2, 7, 6), (2, 7, 4))
  t_kernel, s_kernel = _random(6, (6, 11), (4, 11))
  targets = jnp.array([[3, 1, 4, 1, 5, 9, 2], [6, 5, 3, 5, 8, 9, 7]])
  weights = jnp.asarray(WEIGHTS)

  def ours(s_hidden, s_kernel):
    teacher, student = OutputLayer(t_hidden, t_kernel), OutputLayer(s_hidden, s_kernel)
    kl = losses.logit_kl(teacher, student, weights, temperature=2.0, chunk_length=3)
    ce, _ = losses.cross_entropy(student, targets, weights, z_loss=1e-2, chunk_length=3)
    return kl, ce

  def plain(s_hidden, s_kernel):
    return _plain_losses(t_hidden @ t_kernel, s_hidden @ s_kernel, targets, weights)

  for index in range(2):
    value, grads = jax.value_and_grad(lambda *a: ours(*a)[index], argnums=(0, 1))(
        s_hidden, s_kernel)
    expected, expected_grads = jax.value_and_grad(lambda *a: plain(*a)[index],
                                                  argnums=(0, 1))(s_hidden, s_kernel)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    for grad, expected_grad in zip(grads, expected_grads):
      np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)
  # The teacher's factors get no gradient.
  teacher_grads = jax.grad(lambda h, k: losses.logit_kl(
      OutputLayer(h, k), OutputLayer(s_hidden, s_kernel), weights), argnums=(0, 1))(
          t_hidden, t_kernel)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in teacher_grads)


def test_token_statistics_count_correct_tokens_and_their_loss(logits):
  _, student = logits
  targets = np.array(jnp.argmax(student, -1))
  targets[0, 0] = (targets[0, 0] + 1) % 11  # one wrong prediction, weight 1
  stats = losses.token_statistics(student, targets, WEIGHTS, chunk_length=2)
  correct = (np.argmax(np.asarray(student), -1) == targets) * WEIGHTS
  assert float(stats["correct_sum"]) == pytest.approx(correct.sum())
  assert float(stats["weight_sum"]) == pytest.approx(WEIGHTS.sum())
  nll_mean, _ = losses.cross_entropy(student, targets, WEIGHTS)
  np.testing.assert_allclose(stats["cross_ent_sum"] / WEIGHTS.sum(), nll_mean, rtol=1e-5)


def test_hidden_mse_with_projection_matches_numpy():
  teacher, student, projection = _random(5, (2, 7, 6), (2, 7, 4), (4, 6))
  projected = np.asarray(student, np.float64) @ np.asarray(projection, np.float64)
  squared = np.mean((projected - np.asarray(teacher, np.float64)) ** 2, -1)
  expected = np.sum(squared * WEIGHTS) / WEIGHTS.sum()
  np.testing.assert_allclose(losses.hidden_mse(teacher, student, WEIGHTS, projection),
                             expected, rtol=1e-5)
  with pytest.raises(losses.LossInputError, match="projection"):
    losses.hidden_mse(teacher, student, WEIGHTS)
  grad = jax.grad(lambda t: losses.hidden_mse(t, student, WEIGHTS, projection))(teacher)
  assert float(jnp.abs(grad).max()) == 0.0
