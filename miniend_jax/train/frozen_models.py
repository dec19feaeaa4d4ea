"""The frozen models of a run: read, never trained (the teacher, and an assistant).

A frozen model's checkpoint is opened before anything is compiled or written (names and
shapes are checked, so a bad checkpoint refuses the run early) but its weights are read
only when it is placed on the mesh, with the same logical-axis shardings a trained model
of its architecture would have: each host reads only the slices its devices hold
(convert/lazy_arrays.py), so a 3B or 11B teacher is never whole in one host's memory. It
has no optimizer state and travels to the jitted step inside one argument,
{role: parameters}, never as a constant.

The teacher is what the objective distils; the assistant is the mid-size model an
interpolated objective blends the teacher's logit target with (BLEND_PARTNER =
"assistant", docs/method.md, "Interpolated distillation"). Both are read and placed the
same way; only the settings that name them differ.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from miniend_jax.convert.checkpoint_loading import (OwnCheckpointParams, load_config,
                                                    load_model)
from miniend_jax.convert.lazy_arrays import place_on_mesh
from miniend_jax.convert.validation import naming_setting
from miniend_jax.distill.objectives import Objective
from miniend_jax.distill.student_init import init_student
from miniend_jax.errors import MiniendError
from miniend_jax.model.config import T5Config
from miniend_jax.model.network import logical_axes
from miniend_jax.train import partitioning

ROLES = ("teacher", "assistant")


class FrozenModelError(MiniendError, ValueError):
  """A frozen model (the teacher or the assistant) cannot be set up as configured."""


@dataclasses.dataclass(frozen=True)
class FrozenModel:
  """A model read from a checkpoint (or randomly initialised) and kept fixed.

  Attributes:
    role: "teacher" or "assistant" (the key of its parameters in the step's argument).
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
    dtype = self.config.parameter_dtype
    if self.weights is None:
      weights = jax.jit(lambda rng: init_student(self.config, rng, method="random"),
                        out_shardings=shardings)(jax.random.key(seed))
      return jax.tree_util.tree_map(lambda x: x.astype(dtype), weights), shardings
    with naming_setting(_setting(self.role, "CHECKPOINT")):   # the weights are read now
      if isinstance(self.weights, OwnCheckpointParams):
        params = self.weights.restore(shardings, dtype)
      else:   # NumPy or LazyArray leaves: each host reads or slices only its devices' parts
        params = place_on_mesh(self.weights, shardings, dtype)
    return params, shardings

  def abstract(self, mesh: jax.sharding.Mesh, rules: partitioning.LogicalRules
               ) -> tuple[Any, Any]:
    """(ShapeDtypeStructs laid out as `place` would lay out the parameters, their
    shardings): what the step is compiled for, without any weights."""
    shardings = partitioning.logical_to_sharding(mesh, logical_axes(self.config), rules)
    shapes = jax.eval_shape(lambda: init_student(self.config, jax.random.key(0),
                                                 method="random"))
    return (partitioning.with_shardings(shapes, shardings, self.config.parameter_dtype),
            shardings)


def _setting(role: str, kind: str) -> str:
  return f"{role.upper()}_{kind}"


def load_frozen_model(role: str, checkpoint: str | None, config: T5Config | None,
                      dtype: str | None, *, needed_because: str,
                      read_weights: bool = True) -> FrozenModel:
  """Read one frozen model.

  `checkpoint`: <ROLE>_CHECKPOINT (Hugging Face, t5x or one of our runs; ours are
  fingerprint-verified as they are read). `config`: <ROLE>_CONFIG (required for t5x and
  for a random model, checked against the weights otherwise). `dtype`: <ROLE>_DTYPE, e.g.
  "bfloat16" to hold and run the model in lower precision. `needed_because`: why the run
  needs this model (starts the error when neither checkpoint nor config is given).
  `read_weights=False` reads only the architecture (to compile ahead of time): weights
  stays None.
  """
  if checkpoint and not read_weights:   # <ROLE>_CONFIG, when given, is all that is needed
    with naming_setting(_setting(role, "CHECKPOINT")):
      config, weights = (load_config(checkpoint) if config is None else config), None
    origin = f"the architecture of {checkpoint} (weights not read)"
  elif checkpoint:
    with naming_setting(_setting(role, "CHECKPOINT")):
      config, weights = load_model(checkpoint, config, lazy=True)
    origin = f"loaded from {checkpoint}"
  elif config is not None:
    weights = None
    origin = (f"RANDOMLY INITIALISED (no {_setting(role, 'CHECKPOINT')} given): the student "
              f"learns from an untrained {role}")
  else:
    raise FrozenModelError(
        f"{needed_because}: set {_setting(role, 'CHECKPOINT')} (or {_setting(role, 'CONFIG')} "
        f"for a randomly initialised {role}).")
  if dtype:
    config = config.replace(dtype=dtype, param_dtype=dtype)
  return FrozenModel(role=role, config=config, weights=weights, origin=origin)


def load_teacher(objective: Objective, checkpoint: str | None, config: T5Config | None,
                 dtype: str | None, *, read_weights: bool = True) -> FrozenModel | None:
  """The teacher the objective distils from (None when it has no teacher term)."""
  if not objective.uses_teacher:
    return None
  return load_frozen_model("teacher", checkpoint, config, dtype, read_weights=read_weights,
                           needed_because="The objective distils from a teacher")


def load_assistant(objective: Objective, checkpoint: str | None, config: T5Config | None,
                   dtype: str | None, *, read_weights: bool = True) -> FrozenModel | None:
  """The assistant the objective blends its logit target with (None when it has none);
  an assistant given to an objective that does not read one is refused, since the user
  meant it to be used."""
  if not objective.uses_assistant:
    given = [s for s, v in (("ASSISTANT_CHECKPOINT", checkpoint), ("ASSISTANT_CONFIG", config))
             if v is not None]
    if given:
      raise FrozenModelError(
          f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} set but the objective "
          "reads no assistant: set BLEND_PARTNER = \"assistant\" "
          "(objectives/miniend_d_interpolated.gin), or leave "
          f"{' and '.join(given)} unset.")
    return None
  return load_frozen_model(
      "assistant", checkpoint, config, dtype, read_weights=read_weights,
      needed_because="The objective blends its logit target with an assistant "
                     "(BLEND_PARTNER = \"assistant\")")


def place_frozen_models(models: dict[str, FrozenModel], mesh: jax.sharding.Mesh,
                        rules: partitioning.LogicalRules, seed: int
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
  """({role: parameters on the mesh}, {role: their shardings}): the step's frozen
  argument. A randomly initialised model draws from seed + 1 (teacher) or seed + 3
  (assistant); seed + 2 is the student's dropout."""
  params, shardings = {}, {}
  for role, model in models.items():
    params[role], shardings[role] = model.place(mesh, rules, seed + 1 + 2 * ROLES.index(role))
  return params, shardings


def load_frozen_models(objective: Objective, *, teacher_checkpoint: str | None,
                       teacher_config: T5Config | None, teacher_dtype: str | None,
                       assistant_checkpoint: str | None, assistant_config: T5Config | None,
                       assistant_dtype: str | None, read_weights: bool = True
                       ) -> dict[str, FrozenModel]:
  """{role: FrozenModel} of the roles the objective reads (TEACHER_* and ASSISTANT_*
  settings; see `load_frozen_model`)."""
  models = {
      "teacher": load_teacher(objective, teacher_checkpoint, teacher_config, teacher_dtype,
                              read_weights=read_weights),
      "assistant": load_assistant(objective, assistant_checkpoint, assistant_config,
                                  assistant_dtype, read_weights=read_weights)}
  return {role: model for role, model in models.items() if model is not None}
