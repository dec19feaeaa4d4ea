"""Import t5x checkpoints (both layouts t5x has written) as our parameters.

Legacy layout: checkpoint_<step>/checkpoint is a msgpack file
{version, optimizer: {target: params, state: ...}} in which each large array is replaced by
a TensorStore spec (a dict with a "kvstore", whose path is relative to the checkpoint
directory, e.g. "target.encoder.layers_0.attention.query.kernel"); small arrays are stored
inline. Newer layout: an Orbax PyTree checkpoint under checkpoint_<step>/state/ holding the
same {target, state} tree. Our parameter names are t5x's, so no renaming is needed.
"""

from __future__ import annotations

import os
from typing import Any

import msgpack
import numpy as np
from flax import serialization, traverse_util

from miniend_jax.convert import orbax_reading
from miniend_jax.convert.step_directories import step_directories
from miniend_jax.convert.lazy_arrays import LazyArray
from miniend_jax.convert.validation import (CheckpointError, params_for_config,
                                            unreadable_checkpoint)
from miniend_jax.model.config import T5Config

def find_step_dir(path: str) -> str:
  """`path` itself if it is one checkpoint, else its latest checkpoint_<step>/."""
  if not os.path.isdir(path):
    raise CheckpointError(f"t5x checkpoint {path!r} does not exist or is not a directory.")
  if _layout(path) is not None:
    return path
  steps = step_directories(path, complete=lambda d: _layout(d) is not None)
  if not steps:
    raise CheckpointError(
        f"{path!r} is not a t5x checkpoint: it holds neither a msgpack 'checkpoint' file, "
        "nor an Orbax 'state/' directory, nor checkpoint_<step>/ directories with one.")
  return steps[-1][1]


def _layout(step_dir: str) -> str | None:
  if os.path.isfile(os.path.join(step_dir, "checkpoint")):
    return "msgpack"
  if os.path.isdir(os.path.join(step_dir, "state")):
    return "orbax"
  return None


def load(checkpoint_dir: str, config: T5Config, *, lazy: bool = False) -> dict:
  """Parameters from a t5x checkpoint (a checkpoint_<step>/ dir or a model dir). `lazy`:
  the TensorStore arrays of a msgpack checkpoint become LazyArrays, read slice by slice
  when placed (lazy_arrays.py); Orbax-layout checkpoints are read whole."""
  step_dir = find_step_dir(checkpoint_dir)
  tree = (_read_msgpack(step_dir, lazy) if _layout(step_dir) == "msgpack"
          else orbax_reading.restore(os.path.join(step_dir, "state")))
  target = _find_target(tree, step_dir)
  flat = traverse_util.flatten_dict(target)
  flat = {path: _reshape_kernel(path, value if isinstance(value, LazyArray)
                                else np.asarray(value)) for path, value in flat.items()}
  return params_for_config(config, flat, source=f"t5x checkpoint {step_dir}")


def _find_target(tree: dict[str, Any], step_dir: str) -> dict:
  for keys in (("optimizer", "target"), ("target",), ("params",)):
    node: Any = tree
    for key in keys:
      node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
      return node
  raise CheckpointError(
      f"{step_dir} holds no parameter tree (looked for optimizer/target, target and "
      f"params; found top-level keys {sorted(tree)}).")


def _reshape_kernel(path: tuple[str, ...], array):
  """Attention kernels written as [embed, heads, head_dim] become [embed, heads*head_dim]."""
  if path[-1] == "kernel" and array.ndim == 3:
    if isinstance(array, LazyArray):
      return array.merged_first_dims() if path[-2] == "out" else array.merged_last_dims()
    if path[-2] == "out":
      return array.reshape(-1, array.shape[-1])
    return array.reshape(array.shape[0], -1)
  return array


def _read_msgpack(step_dir: str, lazy: bool = False) -> dict:
  path = os.path.join(step_dir, "checkpoint")
  with open(path, "rb") as f:
    data = f.read()
  try:
    contents = serialization.msgpack_restore(data)
  except Exception as error:  # msgpack raises several unrelated types on bad bytes.
    raise unreadable_checkpoint(path, error, file_format="t5x msgpack file",
                                damage=_msgpack_damage(data)) from None
  return _resolve_tensorstore(contents, step_dir, lazy)


def _msgpack_damage(data: bytes) -> str | None:
  """"the file is truncated (...)" when `data`'s msgpack value ends past its last byte."""
  unpacker = msgpack.Unpacker(max_buffer_size=max(len(data), 1), strict_map_key=False)
  unpacker.feed(data)
  try:
    unpacker.unpack()
  except msgpack.OutOfData:
    return "the file is truncated (its msgpack data ends inside a value)"
  except Exception:  # pylint: disable=broad-except  (msgpack's own error says more)
    pass
  return None


def _resolve_tensorstore(node: Any, step_dir: str, lazy: bool) -> Any:
  if isinstance(node, dict):
    if "kvstore" in node or ("driver" in node and "path" in node):
      return _read_tensorstore(node, step_dir, lazy)
    return {key: _resolve_tensorstore(value, step_dir, lazy) for key, value in node.items()}
  return node


def _read_tensorstore(spec: dict, step_dir: str, lazy: bool = False):
  import tensorstore  # pylint: disable=g-import-not-at-top

  spec = dict(spec)
  if "kvstore" in spec:
    kvstore = dict(spec["kvstore"])
    if kvstore.get("driver") in ("file", "gfile"):
      kvstore["driver"] = "file"
      kvstore["path"] = os.path.join(step_dir, kvstore["path"])
    spec["kvstore"] = kvstore
  else:  # tensorstore < 0.1.14 specs keep the path at the top level
    spec["path"] = os.path.join(step_dir, spec["path"])
  where = spec.get("kvstore", spec).get("path")
  try:
    store = tensorstore.open(spec, open=True).result()
    if not lazy:
      return store.read().result()
  except Exception as error:  # tensorstore reports missing/corrupt data as ValueError etc.
    raise unreadable_checkpoint(where, error, file_format="TensorStore array") from None

  def read(index):
    try:
      return store[index].read().result()
    except Exception as error:  # pylint: disable=broad-except
      raise unreadable_checkpoint(where, error, file_format="TensorStore array") from None

  return LazyArray(store.shape, store.dtype.numpy_dtype, read, where)
