"""Checkpoints with Orbax at MODEL_DIR/checkpoint_<step>/ (t5x's naming), verified on restore.

Each checkpoint holds two items: "state" (the TrainState: step, student and objective
parameters, optimizer state; an Orbax PyTree, the layout newer t5x writes under
checkpoint_<step>/state/) and "meta" (JSON: the student's T5Config, the step, and a
fingerprint of every array). The step is also the data position: the batch stream is a
function of the step, so a resumed run reads exactly the batches an uninterrupted one
would. Orbax writes to a temporary directory and renames it when complete, so a partly
written checkpoint (a process killed mid-save) is never listed; its leftovers are removed
when the next run opens MODEL_DIR.

`restore_latest` recomputes the fingerprints of what it read: a truncated or altered array
(a failing disk, a bad copy) is detected, the checkpoint is moved to
MODEL_DIR/corrupt/checkpoint_<step> (kept, never deleted) and the run falls back to the
previous good one. The fingerprint is a position-weighted sum of every element's bits with
odd weights, modulo 2**32: any change of a single element always changes it, and it is the
same whatever the sharding, so every host computes it on its own shards in one jitted pass.

A replicated array (every parameter under data parallelism) is written by one replica
unless each replica's slice would hold at least REPLICA_PARALLEL_MIN_BYTES: Orbax's default
splits every replicated array across its replicas, which for small arrays costs a compiled
slice and a transfer per array and replica, more than the parallel write saves. On 8 CPU
devices (tools/checkpoint_writes.py) the default wrote the tiny preset's parameters 16x
slower the first time (the compilations) and 2.1x slower later; t5_1_1_small's 294 MiB, 4.2x
and 1.13x.
"""

from __future__ import annotations

import logging as std_logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax import lax
from jax.experimental import multihost_utils

from miniend_jax.convert.validation import CheckpointError
from miniend_jax.model.config import T5Config

STEP_PREFIX = "checkpoint"
CORRUPT_DIR = "corrupt"
# The student's parameters within a saved TrainState, as fingerprint paths name them.
STUDENT_PREFIX = ".params['student']"
# Smallest slice per replica worth writing in parallel.
REPLICA_PARALLEL_MIN_BYTES = 1 << 20


def array_handler() -> ocp.type_handlers.ArrayHandler:
  """The jax.Array handler our checkpoints are written with: it splits a replicated array
  across replicas only when each slice reaches REPLICA_PARALLEL_MIN_BYTES (the arrays read
  back are the same either way; how they are laid out in files differs)."""
  return ocp.type_handlers.ArrayHandler(
      min_slice_bytes_for_replica_parallel=REPLICA_PARALLEL_MIN_BYTES)


def _not_read_only_notice(record: std_logging.LogRecord) -> bool:
  return "Given directory is read only" not in record.getMessage()


_READ_ONLY_NOTICE = _not_read_only_notice


class CorruptCheckpointError(CheckpointError):
  """A checkpoint's files cannot be read back into the arrays that were saved."""


def _leaf_fingerprint(x: jax.Array) -> jax.Array:
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  size = jnp.dtype(x.dtype).itemsize
  if x.dtype == jnp.bool_:
    words = x.astype(jnp.uint32)
  elif size in (1, 2):
    words = lax.bitcast_convert_type(x, {1: jnp.uint8, 2: jnp.uint16}[size]).astype(jnp.uint32)
  else:   # 4 bytes: one word per element; 8 bytes: two (a trailing axis)
    words = lax.bitcast_convert_type(x, jnp.uint32)
  position = jnp.arange(words.size, dtype=jnp.uint32).reshape(words.shape)
  odd_weights = position * jnp.uint32(2654435761) * jnp.uint32(2) + jnp.uint32(1)
  return jnp.sum(words * odd_weights, dtype=jnp.uint32)


# One compiled function per state layout, reused by every save and restore of a run.
_fingerprint_leaves = jax.jit(lambda leaves: [_leaf_fingerprint(x) for x in leaves])


def fingerprints(tree: Any) -> dict[str, int]:
  """{leaf path: fingerprint} of a tree of (possibly sharded, multi-host) arrays."""
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  # Reductions of global arrays come back replicated: every host can read them.
  values = _fingerprint_leaves([x for _, x in leaves])
  return {jax.tree_util.keystr(path): int(np.asarray(value))
          for (path, _), value in zip(leaves, values)}


def verify_fingerprints(tree: Any, saved: dict[str, int], where: str, *,
                        prefix: str = "") -> None:
  """CorruptCheckpointError unless `tree`'s arrays have the `saved` fingerprints (those
  whose path starts with `prefix`, which `tree`'s paths are relative to)."""
  found = {prefix + path: value for path, value in fingerprints(tree).items()}
  wanted = {path: value for path, value in saved.items() if path.startswith(prefix)}
  altered = sorted(path for path in wanted if found.get(path) != wanted[path])
  if altered or set(found) != set(wanted):
    raise CorruptCheckpointError(
        f"{where} holds {len(altered)} array(s) that differ from what was saved, e.g. "
        f"{altered[:3]}")


class Checkpointer:
  """Saves every `period` steps, keeps the newest `keep` (None keeps all)."""

  def __init__(self, model_dir: str, *, period: int, keep: int | None = None,
               read_only: bool = False, run_meta: dict[str, Any] | None = None):
    """`read_only`: only read (no directory is created, no leftover removed).
    `run_meta`: written into every checkpoint's meta (e.g. {"input_shards": K})."""
    self.run_meta = dict(run_meta or {})
    if period < 1:
      raise CheckpointError(f"CHECKPOINT_PERIOD must be >= 1, got {period}.")
    if keep is not None and keep < 1:
      raise CheckpointError(f"CHECKPOINTS_TO_KEEP must be >= 1 or None, got {keep}.")
    self.period = period
    self.model_dir = os.path.abspath(model_dir)
    if not read_only:   # for this process's Orbax: every later jax.Array save uses it
      ocp.type_handlers.register_type_handler(jax.Array, array_handler(), override=True)
    options = ocp.CheckpointManagerOptions(
        step_prefix=STEP_PREFIX, enable_async_checkpointing=False, read_only=True,
        save_interval_steps=0, create=False) \
        if read_only else ocp.CheckpointManagerOptions(
            max_to_keep=keep, step_prefix=STEP_PREFIX, create=True,
            cleanup_tmp_directories=True, enable_async_checkpointing=False)
    absl_logger = std_logging.getLogger("absl")
    if read_only:   # orbax warns that the directory is read only: we asked for that
      absl_logger.addFilter(_READ_ONLY_NOTICE)
    try:
      self._manager = ocp.CheckpointManager(self.model_dir, options=options,
                                            item_names=("state", "meta"))
    finally:
      absl_logger.removeFilter(_READ_ONLY_NOTICE)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def should_save(self, step: int) -> bool:
    return step % self.period == 0

  def save(self, step: int, state: Any, *, config: T5Config) -> None:
    meta = {**self.run_meta, "model_config": config.to_dict(), "step": step,
            "fingerprints": fingerprints(state)}
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
    self._manager.wait_until_finished()

  def read_meta(self, step: int) -> dict:
    return self._manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore())).meta

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """The state at `step`, laid out as `abstract_state` (ShapeDtypeStructs with
    shardings), after checking every array's fingerprint; CorruptCheckpointError if the
    files cannot be read or differ from what was saved, CheckpointError if they hold
    another training state (another optimizer or objective), found before any array is
    read."""
    where = os.path.join(self.model_dir, f"{STEP_PREFIX}_{step}")
    try:
      meta = self.read_meta(step)
      saved = meta.get("fingerprints")
      if saved:
        self._check_structure(set(saved), abstract_state)
      state = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state))).state
    except CheckpointError:
      raise
    except Exception as error:  # Orbax/TensorStore raise many types for unreadable files.
      raise CorruptCheckpointError(f"{where} cannot be read: {type(error).__name__}: "
                                   f"{str(error)[:300]}") from error
    if saved is not None:
      verify_fingerprints(state, saved, where)
    return state, meta

  def check_config(self, step: int, config: T5Config) -> None:
    """Refuses to resume checkpoints of a different student architecture. An unreadable
    meta is left to `restore_latest`, which falls back past it."""
    try:
      saved = self.read_meta(step)["model_config"]
    except Exception:  # pylint: disable=broad-except
      return
    differ = T5Config.from_dict(saved).architecture_differences(
        config, names=("checkpoint", "config"), also=("param_dtype",))
    if differ:
      raise CheckpointError(
          f"MODEL_DIR {self.model_dir} holds checkpoints of a different student "
          f"({'; '.join(differ)}): use a new MODEL_DIR, or the STUDENT_CONFIG of that run.")

  def restore_latest(self, abstract_state: Any) -> tuple[Any | None, int]:
    """(state, step) from the newest checkpoint that reads back intact, or (None, 0) when
    there is none. Corrupt newer ones are moved to MODEL_DIR/corrupt/; when every
    checkpoint is corrupt nothing is moved and CorruptCheckpointError says so."""
    corrupt = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        state, _ = self.restore(step, abstract_state)
      except CorruptCheckpointError as error:
        logging.warning("%s", error)
        corrupt.append((step, error))
        continue
      for bad_step, error in corrupt:
        self._set_aside(bad_step)
        logging.warning("Fell back from checkpoint_%d (moved to %s/) to checkpoint_%d.",
                        bad_step, os.path.join(self.model_dir, CORRUPT_DIR), step)
      if corrupt:
        self._manager.reload()
      return state, step
    if corrupt:
      raise CorruptCheckpointError(
          f"Every checkpoint in MODEL_DIR {self.model_dir} is unreadable; the newest: "
          f"{corrupt[0][1]}. Restore them from a copy, or start over in a new MODEL_DIR.")
    return None, 0

  def _check_structure(self, saved: set[str], abstract_state: Any) -> None:
    """Refuses saved arrays (their paths) that are not the ones this run's state holds."""
    wanted = {jax.tree_util.keystr(path)
              for path, _ in jax.tree_util.tree_leaves_with_path(abstract_state)}
    if saved != wanted:
      differ = sorted(saved ^ wanted)
      raise CheckpointError(
          f"MODEL_DIR {self.model_dir} holds checkpoints of a different training state "
          f"({len(differ)} arrays are in only one of them, e.g. {differ[:2]}): it was "
          "trained with another optimizer or objective. Use a new MODEL_DIR, or that "
          "run's optimizer and objective.")

  def _set_aside(self, step: int) -> None:
    if jax.process_index() == 0:
      target = os.path.join(self.model_dir, CORRUPT_DIR)
      os.makedirs(target, exist_ok=True)
      name = f"{STEP_PREFIX}_{step}"
      destination, suffix = os.path.join(target, name), 1
      while os.path.exists(destination):
        destination, suffix = os.path.join(target, f"{name}.{suffix}"), suffix + 1
      os.rename(os.path.join(self.model_dir, name), destination)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"set aside checkpoint_{step}")

  def close(self) -> None:
    self._manager.close()

