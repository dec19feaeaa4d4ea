"""Rematerialised layers (T5Config.remat_policy) compute the same loss, taps and gradients
as stored activations, and really rematerialise: the traced step holds a checkpoint per
layer. (How much memory that saves is the backend's business; tools/bench.py reports it.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from miniend_jax.distill import objectives
from miniend_jax.distill.forward import distillation_loss
from miniend_jax.model import init_params, preset
from miniend_jax.model.config import ConfigError

TEACHER = preset("tiny", num_encoder_layers=3, num_decoder_layers=3, dropout_rate=0.0)
OBJECTIVE = objectives.Objective(terms=(
    objectives.LogitKL(),
    objectives.AttentionRelations(stack="encoder", num_relation_heads=4),
    objectives.AttentionRelations(stack="decoder", attention="cross", pairs=("QK", "VV"),
                                  num_relation_heads=4)))


def _batch(batch=2, inputs=24, targets=12):
  rng = np.random.default_rng(0)
  tokens = lambda length: jnp.asarray(rng.integers(2, 128, (batch, length)), jnp.int32)
  targets_tokens = tokens(targets)
  return {"encoder_input_tokens": tokens(inputs),
          "decoder_input_tokens": jnp.pad(targets_tokens[:, :-1], ((0, 0), (1, 0))),
          "decoder_target_tokens": targets_tokens}


def _loss_function(policy):
  student = preset("tiny", dropout_rate=0.1, remat_policy=policy)
  params = nn.unbox(init_params(student, jax.random.key(0)))
  teacher_params = nn.unbox(init_params(TEACHER, jax.random.key(1)))

  def loss(p, batch):
    return distillation_loss(OBJECTIVE, p, batch, student_config=student,
                             teacher_config=TEACHER, teacher_params=teacher_params,
                             dropout_rng=jax.random.key(2))[0]
  return loss, params


def _loss_and_grads(policy, batch):
  loss, params = _loss_function(policy)
  return jax.jit(jax.value_and_grad(loss))(params, batch)


@pytest.fixture(scope="module")
def stored():
  return _loss_and_grads("none", _batch())


@pytest.mark.parametrize("policy", ["minimal", "full"])
def test_remat_gives_the_same_loss_and_gradients(stored, policy):
  value, grads = _loss_and_grads(policy, _batch())
  expected, expected_grads = stored
  np.testing.assert_allclose(value, expected, rtol=1e-6)
  for grad, expected_grad in zip(jax.tree_util.tree_leaves(grads),
                                 jax.tree_util.tree_leaves(expected_grads)):
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("policy, checkpoints", [("none", 0), ("minimal", 4), ("full", 4)])
def test_each_student_layer_is_a_checkpoint(policy, checkpoints):
  # tiny: 2 encoder + 2 decoder layers; the teacher has no remat policy. Layers are
  # counted as top-level checkpoint (remat) equations of the traced loss.
  loss, params = _loss_function(policy)
  jaxpr = jax.make_jaxpr(loss)(params, _batch())
  found = sum(1 for eqn in jaxpr.jaxpr.eqns if eqn.primitive.name.startswith(("checkpoint", "remat")))
  assert found == checkpoints


def test_unknown_remat_policy_names_the_choices():
  with pytest.raises(ConfigError, match="remat_policy must be one of"):
    preset("tiny", remat_policy="everything")
