"""Load a T5 from any checkpoint format we read: ours, t5x (both layouts), Hugging Face.

Used for teachers (TEACHER_CHECKPOINT), initial students (INITIAL_CHECKPOINT_PATH),
evaluation and export. The format is recognised from the directory's contents.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from flax import traverse_util

from miniend_jax.convert import hf, orbax_reading, t5x
from miniend_jax.convert.step_directories import step_directories, step_of
from miniend_jax.convert.validation import (CheckpointError, expected_shapes, params_for_config,
                                            read_checkpoint_json)
from miniend_jax.model.config import T5Config

def detect_format(path: str) -> str:
  """"hf", "miniend" (our checkpoint_<step>/ with state/ and meta/), or "t5x"."""
  if not os.path.exists(path):
    raise CheckpointError(f"Checkpoint path {path!r} does not exist.")
  if not os.path.isdir(path):
    raise CheckpointError(f"Checkpoint path {path!r} is a file; give its directory.")
  if os.path.isfile(os.path.join(path, "config.json")):
    return "hf"
  step_dir = _latest_step_dir(path)
  if step_dir and os.path.isdir(os.path.join(step_dir, "meta")):
    return "miniend"
  if step_dir or os.path.isfile(os.path.join(path, "checkpoint")) or \
      os.path.isdir(os.path.join(path, "state")):
    return "t5x"
  raise CheckpointError(
      f"{path!r} is not a checkpoint this project reads: expected a Hugging Face directory "
      "(config.json + weights), one of our checkpoint_<step>/ directories (or a model "
      "directory holding them), or a t5x checkpoint.")


def _latest_step_dir(path: str) -> str | None:
  if step_of(path) is not None:
    return path
  steps = step_directories(path, complete=lambda d: os.path.isdir(os.path.join(d, "state")))
  return steps[-1][1] if steps else None


def load_model(path: str, config: T5Config | None = None, *, lazy: bool = False
               ) -> tuple[T5Config, Any]:
  """(config, params) from `path`.

  Hugging Face and our own checkpoints record their architecture; if `config` is also
  given it must agree with it (the error lists the differing fields). t5x checkpoints do
  not record it, so `config` is required for them.

  `lazy=True` checks names and shapes now but reads no weights: params are LazyArray
  leaves (Hugging Face safetensors, t5x TensorStore arrays) or, for our checkpoints, an
  `OwnCheckpointParams`; `lazy_arrays.place_on_mesh` then has each host read only what its
  devices hold.
  """
  kind = detect_format(path)
  if kind == "hf":
    found, params = hf.load(path, lazy=lazy)
  elif kind == "miniend" and lazy:
    step_dir = _latest_step_dir(path)
    meta = _read_meta(step_dir)
    found = _config_from_meta(meta, step_dir)
    params = OwnCheckpointParams(step_dir, found, expected_shapes(found),
                                 meta.get("fingerprints"))
  elif kind == "miniend":
    found, params = load_own_checkpoint(path)
  else:
    if config is None:
      raise CheckpointError(
          f"{path!r} is a t5x checkpoint, which does not record its architecture: give "
          "the model config (e.g. TEACHER_CONFIG in gin).")
    return config, t5x.load(path, config, lazy=lazy)
  if config is not None:
    _check_same_architecture(config, found, path)
    return config, params
  return found, params


def load_config(path: str, config: T5Config | None = None) -> T5Config:
  """The architecture of the checkpoint at `path`, without reading its weights (e.g. to
  compile for it ahead of time); `config`, when given, is checked against it and is
  required for t5x checkpoints, as in `load_model`."""
  kind = detect_format(path)
  if kind == "t5x":
    if config is None:
      raise CheckpointError(
          f"{path!r} is a t5x checkpoint, which does not record its architecture: give "
          "the model config (e.g. TEACHER_CONFIG in gin).")
    return config
  if kind == "hf":
    found = hf.load_config(path)
  else:
    step_dir = _latest_step_dir(path)
    found = _config_from_meta(_read_meta(step_dir), step_dir)
  if config is not None:
    _check_same_architecture(config, found, path)
    return config
  return found


def _read_meta(step_dir: str) -> dict:
  """One of our checkpoints' meta (model config, step, fingerprints)."""
  meta_file = os.path.join(step_dir, "meta", "metadata")
  if not os.path.isfile(meta_file):
    raise CheckpointError(f"Cannot read {meta_file}: it does not exist.")
  meta = read_checkpoint_json(meta_file)
  if not isinstance(meta, dict):
    raise CheckpointError(f"Cannot read {meta_file}: it holds no JSON object.")
  return meta


def _config_from_meta(meta: dict, step_dir: str) -> T5Config:
  try:
    return T5Config.from_dict(meta["model_config"])
  except (ValueError, KeyError, TypeError) as error:
    raise CheckpointError(
        f"Cannot read {os.path.join(step_dir, 'meta', 'metadata')}: {error}") from None


def load_own_checkpoint(path: str) -> tuple[T5Config, dict]:
  """The student (config, params) from one of our checkpoints (or its model dir's
  newest), read-only, its arrays verified against the fingerprints saved with them."""
  from miniend_jax.train.checkpoints import (  # pylint: disable=g-import-not-at-top
      STUDENT_PREFIX, verify_fingerprints)

  step_dir = _latest_step_dir(path)
  if step_dir is None:
    raise CheckpointError(f"{path!r} holds no checkpoint_<step>/ directory.")
  meta = _read_meta(step_dir)
  config = _config_from_meta(meta, step_dir)
  state = orbax_reading.restore(os.path.join(step_dir, "state"))
  try:
    student = state["params"]["student"]
  except (KeyError, TypeError):
    raise CheckpointError(f"{step_dir}/state holds no student parameters (params/student): "
                          "is it one of our checkpoints?") from None
  if meta.get("fingerprints"):
    verify_fingerprints(student, meta["fingerprints"], step_dir, prefix=STUDENT_PREFIX)
  return config, params_for_config(config, traverse_util.flatten_dict(student),
                                   source=f"checkpoint {step_dir}")


@dataclasses.dataclass(frozen=True)
class OwnCheckpointParams:
  """The student parameters of one of our checkpoints, not yet read: `restore` reads them
  straight into shardings (Orbax reads, on each host, the shards its devices hold) and
  verifies them against the fingerprints saved with them."""

  step_dir: str
  config: T5Config
  shapes: dict   # expected_shapes(config), worked out before any mesh is the context
  fingerprints: dict | None   # from the checkpoint's meta

  def restore(self, shardings: Any, dtype: Any) -> Any:
    import jax  # pylint: disable=g-import-not-at-top
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

    from miniend_jax.train.checkpoints import (  # pylint: disable=g-import-not-at-top
        STUDENT_PREFIX, verify_fingerprints)

    shapes = traverse_util.unflatten_dict(self.shapes)
    student = jax.tree_util.tree_map(
        lambda shape, sharding: jax.ShapeDtypeStruct(shape, self.config.parameter_dtype,
                                                     sharding=sharding),
        shapes, shardings, is_leaf=lambda x: isinstance(x, tuple))
    target = {"params": {"student": student}}
    restored = orbax_reading.restore(
        os.path.join(self.step_dir, "state"),
        args=ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True))
    params = restored["params"]["student"]
    if self.fingerprints:
      verify_fingerprints(params, self.fingerprints, self.step_dir, prefix=STUDENT_PREFIX)
    return jax.tree_util.tree_map(lambda x: x.astype(dtype), params)


def _check_same_architecture(expected: T5Config, found: T5Config, path: str) -> None:
  differing = expected.architecture_differences(found, names=("config", "checkpoint"))
  if differing:
    raise CheckpointError(
        f"The model config does not match the weights in {path}: " + "; ".join(differing)
        + ". Fix the config (or leave it unset to take the checkpoint's own).")
