"""Device mesh, logical-axis rules and shardings: one code path for 1 device to many hosts.

Parameters and activations carry t5x logical axis names; `rules` map them onto the mesh
axes ("data", "model"). The standard rules are t5x's 1-D model parallelism: the batch is
split over "data", vocabulary, MLP and head dimensions over "model".
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from miniend_jax.errors import MiniendError

LogicalRules = tuple[tuple[str, str | None], ...]

STANDARD_RULES: LogicalRules = (
    ("batch", "data"),
    ("vocab", "model"),
    ("mlp", "model"),
    ("heads", "model"),
    ("joined_kv", "model"),
    ("kv", None),
    ("embed", None),
    ("length", None),
    ("relpos_buckets", None),
    ("layers", None),
)


class PartitioningError(MiniendError, ValueError):
  """The mesh or the batch cannot be laid out as configured."""


def initialize_distributed(coordinator_address: str | None, process_count: int | None,
                           process_index: int | None, *,
                           heartbeat_timeout_seconds: int = 100) -> None:
  """Join a multi-host run (no-op when no coordinator is given).

  On CPU, the processes exchange data over gloo, which is how tests run several local
  processes as one mesh. A process that sends no heartbeat for `heartbeat_timeout_seconds`
  counts as stopped, and JAX then stops every other process of the run.
  """
  if not coordinator_address:
    return
  # Only the CPU backend reads this; asking for the backend here would initialise it too
  # early for jax.distributed.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=process_count, process_id=process_index,
                             heartbeat_timeout_seconds=heartbeat_timeout_seconds)


def make_mesh(model_parallel_size: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ("data", "model") mesh over all (global) devices."""
  devices = list(devices if devices is not None else jax.devices())
  if model_parallel_size < 1 or len(devices) % model_parallel_size:
    raise PartitioningError(
        f"MODEL_PARALLEL_SIZE={model_parallel_size} must divide the number of devices "
        f"({len(devices)}).")
  data = len(devices) // model_parallel_size
  # Devices of one process are consecutive in jax.devices(): "model" groups stay on a host.
  grid = np.asarray(devices).reshape(data, model_parallel_size)
  return Mesh(grid, ("data", "model"))


def check_model_axis(mesh: Mesh, rules: LogicalRules, shapes: dict[tuple[str, ...], tuple],
                     logical: dict[tuple[str, ...], tuple], role: str) -> None:
  """One error naming MODEL_PARALLEL_SIZE when a parameter dimension the rules split over
  a mesh axis is not divisible by it (e.g. 12 heads over an 8-way "model" axis)."""
  mapping = dict(rules)
  for path, shape in sorted(shapes.items()):
    for size, name in zip(shape, logical.get(path, ())):
      axis = mapping.get(name) if name is not None else None
      if axis is not None and size % mesh.shape[axis]:
        setting = "MODEL_PARALLEL_SIZE" if axis == "model" else "the mesh"
        raise PartitioningError(
            f"The {role}'s {'/'.join(path)} has {size} along {name!r}, which the "
            f"{mesh.shape[axis]}-way {axis!r} mesh axis cannot split: set "
            f"{setting} to a divisor of {size}.")


def logical_to_sharding(mesh: Mesh, logical_specs: Any, rules: LogicalRules) -> Any:
  """A tree of NamedShardings from a tree of logical PartitionSpecs."""
  return nn.logical_to_mesh_sharding(logical_specs, mesh, rules)


def with_shardings(abstract: Any, shardings: Any, dtype: Any = None) -> Any:
  """ShapeDtypeStructs of `abstract`'s shapes (and dtypes, or `dtype`) carrying
  `shardings`: what a restore reads into, or a step is compiled for."""
  return jax.tree_util.tree_map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, dtype or a.dtype, sharding=s), abstract,
      shardings)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over "data", the rest replicated."""
  return NamedSharding(mesh, PartitionSpec("data"))


def check_batch_size(global_batch_size: int, mesh: Mesh, *, name: str = "BATCH_SIZE",
                     num_hosts: int | None = None) -> None:
  """`num_hosts`: the hosts feeding the mesh (default jax.process_count())."""
  num_hosts = jax.process_count() if num_hosts is None else num_hosts
  data = mesh.shape["data"]
  if global_batch_size % data:
    raise PartitioningError(
        f"{name}={global_batch_size} is not divisible by the mesh's data axis ({data} "
        "devices); choose a multiple of it or raise MODEL_PARALLEL_SIZE.")
  if global_batch_size % num_hosts:
    raise PartitioningError(
        f"{name}={global_batch_size} is not divisible by the number of hosts "
        f"({num_hosts}).")


def host_batch_to_global(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This host's rows of the global batch -> global arrays split over "data"."""
  sharding = batch_sharding(mesh)
  return {name: jax.make_array_from_process_local_data(sharding, value)
          for name, value in batch.items()}


@contextlib.contextmanager
def activate(mesh: Mesh, rules: LogicalRules):
  """Make `mesh` and `rules` the context for tracing, so logical constraints take effect.

  `jax.set_mesh` is required: under the older `with mesh:` flax's logical sharding
  constraints silently do nothing in the JAX versions this project supports.
  """
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    yield
