"""Weights read slice by slice, so that each host reads only what its devices hold.

A checkpoint read with `load_model(..., lazy=True)` gives `LazyArray` leaves: the shape
and dtype come from the file's header and are checked against the config at once (a wrong
checkpoint refuses the run before anything is compiled), but no element is read. When the
model is placed on the mesh, `place_on_mesh` builds each global array with
`jax.make_array_from_callback`, which asks every host only for the index ranges of its own
devices; a LazyArray reads just those ranges from the file (safetensors' `get_slice`, a
TensorStore slice of a t5x array). A 3B or 11B teacher is then never whole in any host's
memory. Our own Orbax checkpoints are restored straight into the shardings (Orbax reads
the shards each host's devices hold).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

Index = tuple[slice, ...]


class LazyArray:
  """An array in a file: shape and dtype known, elements read on demand.

  `read(index)` returns the elements of `index` (a tuple of slices, one per dimension,
  with explicit start and stop) as a NumPy array.
  """

  def __init__(self, shape: tuple[int, ...], dtype: Any, read: Callable[[Index], np.ndarray],
               where: str):
    self.shape = tuple(int(n) for n in shape)
    self.dtype = np.dtype(dtype)
    self._read = read
    self.where = where

  @property
  def ndim(self) -> int:
    return len(self.shape)

  def __getitem__(self, index) -> np.ndarray:
    return self._read(_full_index(index, self.shape))

  def __array__(self, dtype=None, copy=None) -> np.ndarray:
    del copy
    array = self[()]
    return array if dtype is None else array.astype(dtype)

  def transposed(self) -> LazyArray:
    """The transpose (a 2-D weight stored [out, in] read as [in, out])."""
    return LazyArray(self.shape[::-1], self.dtype,
                     lambda index: np.asarray(self._read(index[::-1])).T, self.where)

  def cast(self, dtype: Any) -> LazyArray:
    """Converted to `dtype` as it is read."""
    return LazyArray(self.shape, dtype,
                     lambda index: np.asarray(self._read(index)).astype(dtype), self.where)

  def merged_last_dims(self) -> LazyArray:
    """[a, b, c] read as [a, b * c] (t5x's [embed, heads, head_dim] kernels). A slice of
    the merged dimension reads whole rows of the stored one, then cuts."""
    a, b, c = self.shape

    def read(index: Index) -> np.ndarray:
      rows = np.asarray(self._read((index[0], slice(0, b), slice(0, c))))
      return rows.reshape(rows.shape[0], b * c)[:, index[1]]

    return LazyArray((a, b * c), self.dtype, read, self.where)

  def merged_first_dims(self) -> LazyArray:
    """[a, b, c] read as [a * b, c] (t5x's [heads, head_dim, embed] output kernels)."""
    a, b, c = self.shape

    def read(index: Index) -> np.ndarray:
      first, last = index
      start, stop = first.start // b, -(-first.stop // b)
      block = np.asarray(self._read((slice(start, stop), slice(0, b), last)))
      block = block.reshape((stop - start) * b, -1)
      return block[first.start - start * b:first.stop - start * b]

    return LazyArray((a * b, c), self.dtype, read, self.where)


def _full_index(index, shape: tuple[int, ...]) -> Index:
  """`index` (what make_array_from_callback or [] passes) as explicit slices."""
  if not isinstance(index, tuple):
    index = (index,)
  index = tuple(index) + (slice(None),) * (len(shape) - len(index))
  result = []
  for part, size in zip(index, shape):
    if not isinstance(part, slice) or part.step not in (None, 1):
      raise TypeError(f"LazyArray reads contiguous slices, got {part!r}.")
    start, stop, _ = part.indices(size)
    result.append(slice(start, stop))
  return tuple(result)


def is_lazy(tree: Any) -> bool:
  return any(isinstance(leaf, LazyArray) for leaf in jax.tree_util.tree_leaves(
      tree, is_leaf=lambda x: isinstance(x, LazyArray)))


def place_on_mesh(weights: Any, shardings: Any, dtype: Any) -> Any:
  """Global arrays of `dtype` laid out by `shardings`; each host reads (for LazyArray
  leaves) or slices (for NumPy leaves) only its own devices' parts."""

  def place(leaf, sharding):
    def part(index):
      return np.asarray(leaf[index], dtype=dtype)
    return jax.make_array_from_callback(leaf.shape, sharding, part)

  return jax.tree_util.tree_map(place, weights, shardings,
                                is_leaf=lambda x: isinstance(x, LazyArray))
