r"""How long a checkpoint of replicated parameters takes to write, with Orbax's default
(every replicated array split across its replicas) and with ours (split only when each
replica's slice reaches REPLICA_PARALLEL_MIN_BYTES, miniend_jax/train/checkpoints.py).

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tools/checkpoint_writes.py \
      [--preset=tiny] [--saves=4] [--work_dir=/tmp/checkpoint_writes]

Initialises the preset's parameters replicated over every device (as data parallelism
holds them), writes them --saves times with each handler (the first write of each
includes its compilations), reads every checkpoint back and checks it equals what was
written, and prints the seconds per write and the ratio default / ours, measured in this
one run (after one untimed write of other values). docs/training.md ("Checkpoints and
resume") quotes a run of it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import flax.linen as nn
import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from miniend_jax.model import preset
from miniend_jax.model.network import init_params
from miniend_jax.train import checkpoints


def replicated_params(preset_name: str):
  config = preset(preset_name)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  params = nn.unbox(init_params(config, jax.random.key(0)))
  return jax.device_put(params, NamedSharding(mesh, PartitionSpec()))


def write_seconds(handler: ocp.type_handlers.ArrayHandler, params, directory: str,
                  saves: int) -> list[float]:
  """Seconds of each of `saves` writes of `params` with `handler`, each read back and
  compared."""
  ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)
  seconds = []
  with ocp.StandardCheckpointer() as checkpointer:
    for index in range(saves):
      path = os.path.join(directory, f"save_{index}")
      start = time.perf_counter()
      checkpointer.save(path, params)
      checkpointer.wait_until_finished()
      seconds.append(time.perf_counter() - start)
      restored = checkpointer.restore(path, jax.tree.map(ocp.utils.to_shape_dtype_struct,
                                                         params))
      jax.tree.map(np.testing.assert_array_equal, restored, params)
  return seconds


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--preset", default="tiny")
  parser.add_argument("--saves", type=int, default=4)
  parser.add_argument("--work_dir", default=None)
  args = parser.parse_args(argv)
  work_dir = args.work_dir or tempfile.mkdtemp(prefix="checkpoint_writes-")
  params = replicated_params(args.preset)
  handlers = {"orbax default": ocp.type_handlers.ArrayHandler(),
              "ours": checkpoints.array_handler()}
  results = {}
  previous = ocp.type_handlers.get_type_handler(jax.Array)
  try:
    # One untimed write first, so that neither handler pays the process's first-write costs.
    write_seconds(handlers["ours"], jax.tree.map(lambda x: x + 1, params),
                  os.path.join(work_dir, "warm_up"), 1)
    for name, handler in handlers.items():
      directory = os.path.join(work_dir, name.replace(" ", "_"))
      shutil.rmtree(directory, ignore_errors=True)
      results[name] = write_seconds(handler, params, directory, args.saves)
  finally:
    ocp.type_handlers.register_type_handler(jax.Array, previous, override=True)
  size = sum(x.nbytes for x in jax.tree.leaves(params))
  print(f"{args.preset}: {len(jax.tree.leaves(params))} arrays, {size / 2**20:.1f} MiB, "
        f"replicated over {jax.device_count()} devices")
  for name, seconds in results.items():
    print(f"  {name:14s} first write {seconds[0]:.3f} s, later writes "
          f"{np.mean(seconds[1:] or seconds):.3f} s")
  default, ours = results["orbax default"], results["ours"]
  print(f"  default / ours: first write {default[0] / ours[0]:.2f}x, later writes "
        f"{np.mean(default[1:] or default) / np.mean(ours[1:] or ours):.2f}x")
  return results


if __name__ == "__main__":
  main()
