"""The train state's starting point: abstract state -> shardings -> restore, or init.

As in t5x's `TrainStateInitializer.from_checkpoint_or_scratch` and MaxText's
`get_abstract_state`, the state's shapes are worked out without computing anything
(`jax.eval_shape`), its shardings follow from them (the logical axes of the student's
parameters; `optax.tree_map_params` lays out the optimizer moments like the parameters they
track), and then exactly one of two things happens: the newest intact checkpoint is read
straight into those shardings, or the state is initialised on the mesh. A resumed run
never builds a random state it would throw away.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from absl import logging

from miniend_jax.distill.objectives import Objective
from miniend_jax.distill.student_init import init_student
from miniend_jax.model.config import T5Config
from miniend_jax.model.network import logical_axes
from miniend_jax.train import partitioning
from miniend_jax.train.checkpoints import Checkpointer
from miniend_jax.train.state import TrainState


@dataclasses.dataclass(frozen=True)
class StateInitializer:
  """How a run's TrainState is laid out and where it starts from.

  Attributes:
    student_config: the trained model.
    objective: its `init_params` adds trainable objective parameters (e.g. projections).
    optimizer: the optax transformation whose state the TrainState holds.
    mesh, rules: the device mesh and logical-axis rules the state is sharded with.
    student_init: "random" or "teacher_layers" (copy maximally spaced teacher layers).
    teacher_config: needed by the objective's parameters and by "teacher_layers".
    seed: the initialisation's random seed.
  """

  student_config: T5Config
  objective: Objective
  optimizer: optax.GradientTransformation
  mesh: jax.sharding.Mesh
  rules: partitioning.LogicalRules
  student_init: str = "random"
  teacher_config: T5Config | None = None
  seed: int = 0

  def _init_trainable(self, rng, initial_student, teacher_params) -> dict:
    """{"student": ..., "objective": ...}; weights travel as arguments, never constants."""
    student_rng, objective_rng = jax.random.split(rng)
    config = self.student_config
    if initial_student is not None:
      student = jax.tree_util.tree_map(lambda x: jnp.asarray(x, config.parameter_dtype),
                                       initial_student)
    elif self.student_init == "teacher_layers":
      student = init_student(config, student_rng, method="teacher_layers",
                             teacher_config=self.teacher_config,
                             teacher_params=teacher_params)
    else:
      student = init_student(config, student_rng, method="random")
    trainable = {"student": student}
    objective_params = self.objective.init_params(objective_rng, self.teacher_config, config)
    if objective_params is not None:
      trainable["objective"] = objective_params
    return trainable

  def _create(self, rng, initial_student, teacher_params) -> TrainState:
    return TrainState.create(self._init_trainable(rng, initial_student, teacher_params),
                             self.optimizer)

  def abstract_state(self) -> TrainState:
    """The state's shapes and dtypes (a randomly initialised student has the same ones as
    any other start)."""
    return jax.eval_shape(lambda rng: self._create(rng, None, None), jax.random.key(0))

  def shardings(self, abstract: TrainState) -> TrainState:
    """Student parameters by their logical axes; objective parameters replicated; every
    optimizer leaf that mirrors a parameter (same shape) like that parameter, the rest
    (step counts, Adafactor's factored moments) replicated."""
    replicated = partitioning.replicated(self.mesh)
    params = {"student": partitioning.logical_to_sharding(
        self.mesh, logical_axes(self.student_config), self.rules)}
    if "objective" in abstract.params:
      params["objective"] = jax.tree_util.tree_map(lambda _: replicated,
                                                   abstract.params["objective"])
    opt_state = optax.tree_map_params(
        self.optimizer,
        lambda leaf, param, sharding: sharding if leaf.shape == param.shape else replicated,
        abstract.opt_state, abstract.params, params,
        transform_non_params=lambda _: replicated,
        is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct))
    return TrainState(step=replicated, params=params, opt_state=opt_state)

  def from_checkpoint_or_scratch(
      self, checkpointer: Checkpointer, abstract: TrainState, shardings: TrainState, *,
      initial_student: Any, teacher_params: Any) -> tuple[TrainState, int]:
    """(state, step): the newest intact checkpoint (step > 0), else a new state (step 0).

    `abstract` and `shardings` come from `abstract_state` and `shardings`.
    `initial_student`: the weights a new student starts from (INITIAL_CHECKPOINT_PATH),
    or None; unused when a checkpoint is restored.
    """
    if checkpointer.latest_step() is not None:
      restored, step = checkpointer.restore_latest(
          partitioning.with_shardings(abstract, shardings))
      if restored is not None:
        logging.info("Resumed from %s at step %d.", checkpointer.model_dir, step)
        return restored, step
    state = jax.jit(self._create, out_shardings=shardings)(
        jax.random.key(self.seed), initial_student, teacher_params)
    return state, 0
