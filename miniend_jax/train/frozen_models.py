"""The frozen models of a run: read, never trained (the teacher).

A frozen model is loaded on the host before anything is compiled or written (so a bad
checkpoint refuses the run early), then placed on the mesh with the same logical-axis
shardings a trained model of its architecture would have. It has no optimizer state and
travels to the jitted step as its own argument, never as a constant.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from miniend_jax.convert.checkpoint_loading import load_model
from miniend_jax.distill.objectives import Objective
from miniend_jax.distill.student_init import init_student
from miniend_jax.errors import MiniendError
from miniend_jax.model.config import T5Config
from miniend_jax.model.network import logical_axes
from miniend_jax.train import partitioning


class FrozenModelError(MiniendError, ValueError):
  """A frozen model (the teacher) cannot be set up as configured."""


@dataclasses.dataclass(frozen=True)
class FrozenModel:
  """A model read from a checkpoint (or randomly initialised) and kept fixed.

  Attributes:
    role: "teacher" (names it in messages).
    config: its architecture, with the dtype it runs in.
    weights: host (NumPy) parameters, or None for a random initialisation on the mesh.
    origin: one sentence saying where the weights come from (logged, and written at the top
      of MODEL_DIR/config.gin).
  """

  role: str
  config: T5Config
  weights: Any
  origin: str

  def place(self, mesh: jax.sharding.Mesh, rules: partitioning.LogicalRules, seed: int
            ) -> tuple[Any, Any]:
    """(parameters on the mesh, their shardings); call under `partitioning.activate`."""
    shardings = partitioning.logical_to_sharding(mesh, logical_axes(self.config), rules)
    weights = self.weights
    if weights is None:
      weights = jax.jit(lambda rng: init_student(self.config, rng, method="random"),
                        out_shardings=shardings)(jax.random.key(seed))
    dtype = self.config.parameter_dtype
    params = jax.device_put(jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), weights),
                            shardings)
    return params, shardings


def load_teacher(objective: Objective, checkpoint: str | None, config: T5Config | None,
                 dtype: str | None) -> FrozenModel | None:
  """The teacher the objective distils from (None when it has no teacher term).

  `checkpoint`: TEACHER_CHECKPOINT (Hugging Face, t5x or one of our runs; ours are
  fingerprint-verified as they are read). `config`: TEACHER_CONFIG (required for t5x and
  for a random teacher, checked against the weights otherwise). `dtype`: TEACHER_DTYPE,
  e.g. "bfloat16" to hold and run the teacher in lower precision.
  """
  if not objective.uses_teacher:
    return None
  if checkpoint:
    config, weights = load_model(checkpoint, config)
    origin = f"loaded from {checkpoint}"
  elif config is not None:
    weights = None
    origin = ("RANDOMLY INITIALISED (no TEACHER_CHECKPOINT given): the student learns "
              "from an untrained teacher")
  else:
    raise FrozenModelError(
        "The objective distils from a teacher: set TEACHER_CHECKPOINT (or TEACHER_CONFIG "
        "for a randomly initialised teacher).")
  if dtype:
    config = config.replace(dtype=dtype, param_dtype=dtype)
  return FrozenModel(role="teacher", config=config, weights=weights, origin=origin)
