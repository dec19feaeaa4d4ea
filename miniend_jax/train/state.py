"""The train state: what a checkpoint holds and what the step updates."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class TrainState:
  """step, trainable params {"student": ..., "objective": ...} and the optimizer state.

  The teacher is deliberately absent: it is frozen, has no optimizer state and is passed
  to the step as its own argument.
  """

  step: jax.Array
  params: Any
  opt_state: Any

  @classmethod
  def create(cls, params: Any, optimizer: optax.GradientTransformation) -> TrainState:
    return cls(step=jnp.zeros((), jnp.int32), params=params,
               opt_state=optimizer.init(params))
