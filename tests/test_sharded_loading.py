"""Large teachers load sharded: every format's weights are opened lazily (names and
shapes checked, nothing read) and placed with each device's slice read on its own, so a
host reads only what its devices hold. On 8 CPU devices in a 2 x 4 ("data", "model")
mesh, the placed teacher equals the whole-array load, and no read is larger than one
device's shard."""

import flax.linen as nn
import jax
import numpy as np
import pytest
from flax import traverse_util

from miniend_jax.convert import hf
from miniend_jax.convert.checkpoint_loading import OwnCheckpointParams, load_model
from miniend_jax.convert.lazy_arrays import LazyArray
from miniend_jax.convert.validation import expected_shapes
from miniend_jax.model import init_params, preset
from miniend_jax.train import partitioning
from miniend_jax.train.frozen_models import load_frozen_model
from tests.test_convert_t5x import write_legacy

CONFIG = preset("tiny")
RULES = partitioning.STANDARD_RULES


@pytest.fixture(scope="module")
def params():
  return jax.tree_util.tree_map(np.asarray, nn.unbox(init_params(CONFIG, jax.random.key(5))))


@pytest.fixture(scope="module")
def mesh():
  return partitioning.make_mesh(4, jax.devices()[:8])


def _recording(weights):
  """Wraps every LazyArray leaf so that each read's shape is recorded: {path: [shapes]}."""
  reads = {}
  for path, leaf in traverse_util.flatten_dict(weights).items():
    assert isinstance(leaf, LazyArray), path
    inner = leaf._read  # pylint: disable=protected-access

    def read(index, inner=inner, path=path):
      array = inner(index)
      reads.setdefault(path, []).append(array.shape)
      return array

    leaf._read = read  # pylint: disable=protected-access
  return reads


def _place(path, mesh, config=None):
  model = load_frozen_model("teacher", path, config, None, needed_because="test")
  with partitioning.activate(mesh, RULES):
    placed, shardings = model.place(mesh, RULES, seed=0)
  return model, placed, shardings


def _assert_equal_and_sharded(placed, shardings, expected):
  flat, flat_shardings = traverse_util.flatten_dict(placed), traverse_util.flatten_dict(shardings)
  for path, value in traverse_util.flatten_dict(expected).items():
    assert flat[path].sharding == flat_shardings[path], path
    np.testing.assert_array_equal(np.asarray(flat[path]), np.asarray(value), err_msg=str(path))


def _assert_reads_are_shards(reads, shardings):
  flat_shardings = traverse_util.flatten_dict(shardings)
  query = ("encoder", "layers_0", "attention", "query", "kernel")
  assert flat_shardings[query].spec == jax.sharding.PartitionSpec(None, "model")
  assert set(reads[query]) == {(CONFIG.emb_dim, CONFIG.num_heads * CONFIG.head_dim // 4)}
  shapes = expected_shapes(CONFIG)
  for path, read_shapes in reads.items():
    shard = flat_shardings[path].shard_shape(shapes[path])
    assert all(shape == shard for shape in read_shapes), (path, read_shapes, shard)


def test_hugging_face_safetensors_are_read_slice_by_slice(tmp_path, params, mesh):
  hf.save(CONFIG, params, str(tmp_path / "hf"))
  model = load_frozen_model("teacher", str(tmp_path / "hf"), None, None, needed_because="t")
  reads = _recording(model.weights)
  with partitioning.activate(mesh, RULES):
    placed, shardings = model.place(mesh, RULES, seed=0)
  _assert_equal_and_sharded(placed, shardings, load_model(str(tmp_path / "hf"))[1])
  _assert_reads_are_shards(reads, shardings)


def test_t5x_tensorstore_arrays_are_read_slice_by_slice(tmp_path, params, mesh):
  # Attention kernels as t5x writes them: [embed, heads, head_dim] and [heads, head_dim, embed].
  flat = traverse_util.flatten_dict(params)
  stored = {}
  for path, array in flat.items():
    if path[-2] in ("query", "key", "value"):
      array = array.reshape(CONFIG.emb_dim, CONFIG.num_heads, CONFIG.head_dim)
    elif path[-2] == "out" and path[-1] == "kernel":
      array = array.reshape(CONFIG.num_heads, CONFIG.head_dim, CONFIG.emb_dim)
    stored[path] = array
  write_legacy(str(tmp_path / "t5x" / "checkpoint_100"), traverse_util.unflatten_dict(stored),
               inline=())
  model = load_frozen_model("teacher", str(tmp_path / "t5x" / "checkpoint_100"), CONFIG, None,
                            needed_because="t")
  reads = _recording(model.weights)
  with partitioning.activate(mesh, RULES):
    placed, shardings = model.place(mesh, RULES, seed=0)
  _assert_equal_and_sharded(placed, shardings, params)
  # Merged [embed, heads, head_dim] kernels read whole heads: one device's columns.
  query = ("encoder", "layers_0", "attention", "query", "kernel")
  assert set(reads[query]) == {(CONFIG.emb_dim, CONFIG.num_heads // 4 * CONFIG.head_dim)}


def test_own_checkpoint_is_restored_into_the_shardings(single_device_run, mesh):
  model, placed, shardings = _place(single_device_run, mesh)
  assert isinstance(model.weights, OwnCheckpointParams)
  _assert_equal_and_sharded(placed, shardings, load_model(single_device_run)[1])
