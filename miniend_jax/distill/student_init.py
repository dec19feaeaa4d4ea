"""Random or teacher-copied student weights (docs/method.md, "Student initialisation").

Copying ("shrink", as in DistilBART) keeps the teacher's embedding, relative-position
tables, final norms and output layer, and gives student layer i the weights of teacher
layer map[i]. The default map is `uniform_layer_map`: maximally spaced layers with the
top layer kept. It needs the student's widths to equal the teacher's; only depths may
differ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import numpy as np
from flax import traverse_util

from miniend_jax.errors import MiniendError
from miniend_jax.model.config import T5Config
from miniend_jax.model.network import init_params

INIT_METHODS = ("random", "teacher_layers")
# T5Config fields that must agree for teacher weights to fit the student.
class StudentInitError(MiniendError, ValueError):
  """The student cannot be initialised as asked."""


def uniform_layer_map(teacher_layers: int, student_layers: int) -> tuple[int, ...]:
  """Teacher layer for each student layer: round(linspace(0, L_T - 1, L_S)), last L_T - 1.

  Rounds half up, e.g. 12 -> 6 layers gives (0, 2, 4, 7, 9, 11); one student layer keeps
  the teacher's top layer.
  """
  if student_layers < 1 or teacher_layers < 1:
    raise StudentInitError(
        f"Layer counts must be positive, got teacher {teacher_layers}, student "
        f"{student_layers}.")
  if student_layers > teacher_layers:
    raise StudentInitError(
        f"A student with {student_layers} layers cannot take distinct layers from a "
        f"teacher with {teacher_layers}; pass an explicit layer map instead.")
  if student_layers == 1:
    return (teacher_layers - 1,)
  points = np.linspace(0, teacher_layers - 1, student_layers)
  chosen = [int(math.floor(p + 0.5)) for p in points]
  chosen[-1] = teacher_layers - 1
  return tuple(chosen)


def _check_layer_map(layer_map: Sequence[int], stack: str, teacher_layers: int,
                     student_layers: int) -> tuple[int, ...]:
  layer_map = tuple(layer_map)
  if len(layer_map) != student_layers:
    raise StudentInitError(
        f"{stack}_layer_map has {len(layer_map)} entries but the student {stack} has "
        f"{student_layers} layers: give one teacher layer per student layer.")
  for index in layer_map:
    if not isinstance(index, (int, np.integer)) or not 0 <= index < teacher_layers:
      raise StudentInitError(
          f"{stack}_layer_map entry {index!r} is not a teacher {stack} layer: indices "
          f"must be in [0, {teacher_layers - 1}].")
  return tuple(int(i) for i in layer_map)


def check_widths_match(teacher_config: T5Config, student_config: T5Config) -> None:
  """Raise StudentInitError naming every field that keeps teacher weights from fitting."""
  different = teacher_config.architecture_differences(
      student_config, names=("teacher", "student"),
      ignore=("num_encoder_layers", "num_decoder_layers"))
  if different:
    raise StudentInitError(
        "Initialising the student from teacher layers needs the same widths; these differ: "
        + "; ".join(different) + ". Use init method 'random', or make the student config "
        "match the teacher in these fields (only the depths may differ).")


def _parameter_shapes(config: T5Config) -> dict:
  return nn.unbox(jax.eval_shape(lambda rng: init_params(config, rng), jax.random.key(0)))


def init_from_teacher(teacher_config: T5Config, teacher_params, student_config: T5Config, *,
                      encoder_layer_map: Sequence[int] | None = None,
                      decoder_layer_map: Sequence[int] | None = None) -> dict:
  """Student parameters copied from teacher layers (plain, unboxed arrays)."""
  check_widths_match(teacher_config, student_config)
  maps = {}
  for stack, given in (("encoder", encoder_layer_map), ("decoder", decoder_layer_map)):
    teacher_depth = getattr(teacher_config, f"num_{stack}_layers")
    student_depth = getattr(student_config, f"num_{stack}_layers")
    maps[stack] = _check_layer_map(
        given if given is not None else uniform_layer_map(teacher_depth, student_depth),
        stack, teacher_depth, student_depth)
  teacher_flat = traverse_util.flatten_dict(nn.unbox(teacher_params))
  student_flat = {}
  for path in traverse_util.flatten_dict(_parameter_shapes(student_config)):
    source = path
    if path[0] in maps and path[1].startswith("layers_"):
      student_layer = int(path[1][len("layers_"):])
      source = (path[0], f"layers_{maps[path[0]][student_layer]}") + path[2:]
    if source not in teacher_flat:
      raise StudentInitError(
          f"Teacher parameters lack {'/'.join(source)}; do they belong to teacher_config?")
    student_flat[path] = teacher_flat[source]
  return traverse_util.unflatten_dict(student_flat)


def init_student(student_config: T5Config, rng: jax.Array, *, method: str = "random",
                 teacher_config: T5Config | None = None, teacher_params=None,
                 encoder_layer_map: Sequence[int] | None = None,
                 decoder_layer_map: Sequence[int] | None = None) -> dict:
  """Student parameters (plain arrays) by `method`: "random" or "teacher_layers"."""
  if method not in INIT_METHODS:
    raise StudentInitError(
        f"Unknown student init method {method!r}; choose one of {INIT_METHODS}.")
  if method == "random":
    return nn.unbox(jax.jit(init_params, static_argnums=0)(student_config, rng))
  if teacher_config is None or teacher_params is None:
    raise StudentInitError(
        "method='teacher_layers' needs teacher_config and teacher_params.")
  return init_from_teacher(teacher_config, teacher_params, student_config,
                           encoder_layer_map=encoder_layer_map,
                           decoder_layer_map=decoder_layer_map)
