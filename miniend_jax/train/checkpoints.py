"""Checkpoints with Orbax at MODEL_DIR/checkpoint_<step>/ (t5x's naming).

Each checkpoint holds two items: "state" (the TrainState: step, student and objective
parameters, optimizer state; an Orbax PyTree, the layout newer t5x writes under
checkpoint_<step>/state/) and "meta" (JSON: the student's T5Config and the data position,
so a resumed run reads exactly the batches an uninterrupted one would). Orbax writes to a
temporary directory and renames it when complete, so a partly written checkpoint is never
listed as the latest.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from miniend_jax.model.config import T5Config

STEP_PREFIX = "checkpoint"


class Checkpointer:
  """Saves every `period` steps, keeps the newest `keep` (None keeps all)."""

  def __init__(self, model_dir: str, *, period: int, keep: int | None = None):
    if period < 1:
      raise ValueError(f"CHECKPOINT_PERIOD must be >= 1, got {period}.")
    if keep is not None and keep < 1:
      raise ValueError(f"CHECKPOINTS_TO_KEEP must be >= 1 or None, got {keep}.")
    self.period = period
    self._manager = ocp.CheckpointManager(
        os.path.abspath(model_dir),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, step_prefix=STEP_PREFIX, create=True,
            enable_async_checkpointing=False),
        item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def should_save(self, step: int) -> bool:
    return step % self.period == 0

  def save(self, step: int, state: Any, *, config: T5Config, data_position: dict) -> None:
    meta = {"model_config": config.to_dict(), "data_position": data_position, "step": step}
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
    self._manager.wait_until_finished()

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """The state at `step`, laid out as `abstract_state` (ShapeDtypeStructs with shardings)."""
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return restored.state, restored.meta

  def close(self) -> None:
    self._manager.close()


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) for restoring into arrays laid out like `tree`."""
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
