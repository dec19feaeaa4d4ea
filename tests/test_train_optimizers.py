"""Schedules against their formulas; optimizers' defaults and clipping; bad settings."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from miniend_jax.train import optimizers


def values(schedule, steps):
  return np.array([float(schedule(jnp.asarray(s))) for s in steps])


def test_rsqrt_decay_is_t5x_constant_times_rsqrt_decay():
  steps = [0, 1, 9_999, 10_000, 40_000]
  expected = [1.0 / np.sqrt(max(s, 10_000)) for s in steps]
  np.testing.assert_allclose(values(optimizers.rsqrt_decay(1.0, 10_000), steps), expected,
                             rtol=1e-6)


def test_warmup_then_decay_reach_peak_and_end():
  linear = optimizers.linear_decay(1e-3, total_steps=100, warmup_steps=10)
  np.testing.assert_allclose(values(linear, [0, 5, 10, 55, 100]),
                             [0.0, 5e-4, 1e-3, 5e-4, 0.0], atol=1e-9)
  cosine = optimizers.cosine_decay(1e-3, total_steps=100, warmup_steps=10)
  middle = 1e-3 * 0.5 * (1 + np.cos(np.pi * 45 / 90))
  np.testing.assert_allclose(values(cosine, [0, 10, 55, 100]), [0.0, 1e-3, middle, 0.0],
                             atol=1e-9)
  constant = optimizers.constant(2e-3, warmup_steps=4)
  np.testing.assert_allclose(values(constant, [0, 3, 4, 100]), [5e-4, 2e-3, 2e-3, 2e-3],
                             rtol=1e-6)


def test_adamw_skips_weight_decay_on_norm_scales_and_clips():
  params = {"kernel": jnp.ones((3, 3)), "scale": jnp.ones((3,))}
  zero = jax.tree_util.tree_map(jnp.zeros_like, params)
  tx = optimizers.adamw(0.1, weight_decay=0.5, clip_global_norm=None)
  updates, _ = tx.update(zero, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5 * np.ones((3, 3)), rtol=1e-6)
  np.testing.assert_array_equal(updates["scale"], np.zeros(3))
  clipped = optimizers.adamw(1.0, weight_decay=0.0, clip_global_norm=1e-3)
  huge = jax.tree_util.tree_map(lambda p: 1e6 * jnp.ones_like(p), params)
  state = clipped.init(params)
  # Clipping before Adam leaves the direction; the first Adam step is lr * sign(g).
  updates, _ = clipped.update(huge, state, params)
  assert np.all(np.isfinite(updates["kernel"]))


def test_adafactor_factors_large_matrices():
  params = {"big": jnp.ones((256, 256)), "small": jnp.ones((4,))}
  tx = optimizers.adafactor(1e-2)
  state = tx.init(params)
  factored = [x for x in jax.tree_util.tree_leaves(state) if x.shape in ((256,),)]
  assert factored, "a 256x256 matrix keeps row and column statistics"
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  updates, _ = tx.update(grads, state, params)
  assert optax.global_norm(updates) > 0


@pytest.mark.parametrize("make,message", [
    (lambda: optimizers.cosine_decay(1e-3, total_steps=10, warmup_steps=10), "warmup_steps"),
    (lambda: optimizers.linear_decay(0.0), "peak_learning_rate"),
    (lambda: optimizers.rsqrt_decay(1.0, warmup_steps=0), "warmup_steps"),
    (lambda: optimizers.adamw(1e-3, weight_decay=-1), "weight_decay"),
    (lambda: optimizers.adafactor(1e-3, clip_global_norm=0.0), "clip_global_norm"),
])
def test_bad_settings_are_named(make, message):
  with pytest.raises(optimizers.OptimizerError, match=message):
    make()
