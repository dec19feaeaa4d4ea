"""Replicated arrays are written whole by one replica unless each replica's slice reaches
REPLICA_PARALLEL_MIN_BYTES; both kinds read back exactly, and tools/checkpoint_writes.py
compares the two ways of writing."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from miniend_jax.model import preset
from miniend_jax.train.checkpoints import REPLICA_PARALLEL_MIN_BYTES, Checkpointer
from tests.tool_modules import tool_module


def test_small_and_large_replicated_arrays_read_back_exactly(tmp_path):
  mesh = Mesh(np.array(jax.devices()), ("data",))
  replicated = NamedSharding(mesh, PartitionSpec())
  large = jax.device_count() * REPLICA_PARALLEL_MIN_BYTES // 4   # float32 elements
  state = jax.device_put({"small": jnp.arange(12.0).reshape(3, 4),
                          "large": jnp.linspace(-1.0, 1.0, large).reshape(-1, 8),
                          "step": jnp.int32(7)}, replicated)
  checkpointer = Checkpointer(str(tmp_path), period=1)
  checkpointer.save(7, state, config=preset("tiny"))
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                          state)
  restored, meta = checkpointer.restore(7, abstract)
  checkpointer.close()
  assert meta["step"] == 7
  for name in state:
    np.testing.assert_array_equal(restored[name], state[name])
    assert restored[name].sharding == replicated


def test_tool_writes_both_ways_and_reads_back(tmp_path, capsys):
  with tool_module("checkpoint_writes") as tool:
    results = tool.main(["--preset=tiny", "--saves=2", f"--work_dir={tmp_path}"])
  assert set(results) == {"orbax default", "ours"}
  assert all(len(seconds) == 2 and min(seconds) > 0 for seconds in results.values())
  output = capsys.readouterr().out
  assert f"replicated over {jax.device_count()} devices" in output
  assert "default / ours: first write" in output
