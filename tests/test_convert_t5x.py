"""t5x checkpoint import: both layouts t5x writes, written here by the test itself."""

import os
import shutil

import flax.linen as nn
import jax
import numpy as np
import pytest
import tensorstore
from flax import serialization, traverse_util

from miniend_jax.convert import t5x
from miniend_jax.convert.lazy_arrays import place_on_mesh
from miniend_jax.convert.validation import CheckpointError, UnreadableCheckpointError
from miniend_jax.model import init_params, preset

CONFIG = preset("tiny")


@pytest.fixture(scope="module")
def params():
  return jax.tree_util.tree_map(np.asarray, nn.unbox(init_params(CONFIG, jax.random.key(3))))


def write_legacy(step_dir, params, *, inline=("scale",)):
  """msgpack {version, optimizer: {target, state}} + one zarr TensorStore per large array."""
  os.makedirs(step_dir)
  target = {}
  for path, array in traverse_util.flatten_dict(params).items():
    if path[-1] in inline:
      target[path] = array
      continue
    name = "target." + ".".join(path)
    spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": name},
            "metadata": {"shape": list(array.shape), "dtype": "<f4",
                         "chunks": list(array.shape)}}
    store = tensorstore.open({**spec, "kvstore": {"driver": "file",
                                                  "path": os.path.join(step_dir, name)}},
                             create=True).result()
    store.write(array).result()
    target[path] = spec
  contents = {"version": 3, "optimizer": {
      "target": traverse_util.unflatten_dict(target),
      "state": {"step": np.asarray(100), "param_states": {}}}}
  with open(os.path.join(step_dir, "checkpoint"), "wb") as f:
    f.write(serialization.msgpack_serialize(contents))


def write_orbax(step_dir, params):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  os.makedirs(step_dir)
  ocp.PyTreeCheckpointer().save(os.path.join(step_dir, "state"),
                                {"target": params, "state": {"step": np.asarray(100)}})


def assert_same(a, b):
  flat_a, flat_b = traverse_util.flatten_dict(a), traverse_util.flatten_dict(b)
  assert flat_a.keys() == flat_b.keys()
  for key in flat_a:
    np.testing.assert_array_equal(np.asarray(flat_a[key]), np.asarray(flat_b[key]))


def test_legacy_msgpack_tensorstore_layout_loads(tmp_path, params):
  write_legacy(str(tmp_path / "checkpoint_100"), params)
  assert_same(t5x.load(str(tmp_path / "checkpoint_100"), CONFIG), params)


def test_orbax_layout_loads(tmp_path, params):
  write_orbax(str(tmp_path / "checkpoint_100"), params)
  assert_same(t5x.load(str(tmp_path / "checkpoint_100"), CONFIG), params)


def test_model_dir_resolves_to_the_latest_step(tmp_path, params):
  older = jax.tree_util.tree_map(lambda x: x * 0, params)
  write_orbax(str(tmp_path / "checkpoint_20"), older)
  write_legacy(str(tmp_path / "checkpoint_100"), params)
  os.makedirs(tmp_path / "checkpoint_300.tmp-123")  # an unfinished write is ignored
  assert t5x.find_step_dir(str(tmp_path)).endswith("checkpoint_100")
  assert_same(t5x.load(str(tmp_path), CONFIG), params)


def test_three_dimensional_attention_kernels_are_flattened(tmp_path, params):
  heads, head_dim = CONFIG.num_heads, CONFIG.head_dim
  flat = traverse_util.flatten_dict(params)
  for path in list(flat):
    if path[-2] in ("query", "key", "value"):
      flat[path] = flat[path].reshape(CONFIG.emb_dim, heads, head_dim)
    elif path[-2] == "out":
      flat[path] = flat[path].reshape(heads, head_dim, CONFIG.emb_dim)
  write_orbax(str(tmp_path / "checkpoint_1"), traverse_util.unflatten_dict(flat))
  assert_same(t5x.load(str(tmp_path / "checkpoint_1"), CONFIG), params)


def test_missing_array_and_shape_mismatch_are_clear(tmp_path, params):
  step_dir = str(tmp_path / "checkpoint_100")
  write_legacy(step_dir, params)
  with pytest.raises(CheckpointError, match="layers_0/mlp/wi_0/kernel has shape"
                     r".*mlp_dim"):
    t5x.load(step_dir, CONFIG.replace(mlp_dim=CONFIG.mlp_dim * 2))
  with pytest.raises(CheckpointError, match="vocab_size mismatch"):
    t5x.load(step_dir, CONFIG.replace(vocab_size=CONFIG.vocab_size + 1))
  with pytest.raises(CheckpointError, match="lacks 9 parameter.*num_encoder_layers"):
    t5x.load(step_dir, CONFIG.replace(num_encoder_layers=3))
  shutil.rmtree(os.path.join(step_dir, "target.decoder.layers_1.mlp.wo.kernel"))
  with pytest.raises(CheckpointError, match="target.decoder.layers_1.mlp.wo.kernel"):
    t5x.load(step_dir, CONFIG)


def test_not_a_checkpoint_is_clear(tmp_path):
  with pytest.raises(CheckpointError, match="does not exist"):
    t5x.load(str(tmp_path / "nowhere"), CONFIG)
  with pytest.raises(CheckpointError, match="is not a t5x checkpoint"):
    t5x.load(str(tmp_path), CONFIG)
  (tmp_path / "checkpoint_5").mkdir()
  (tmp_path / "checkpoint_5" / "checkpoint").write_bytes(b"\x00garbage")
  with pytest.raises(CheckpointError, match="not a readable t5x msgpack"):
    t5x.load(str(tmp_path), CONFIG)


def _cut_in_half(path):
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  return len(data) // 2


def test_damaged_files_are_one_sentence_naming_them(tmp_path, params):
  """A file cut short, in either layout, is one UnreadableCheckpointError line naming it;
  a lazy load reads the arrays' chunks when they are placed, and fails the same way then."""
  msgpack = tmp_path / "msgpack" / "checkpoint_100"
  write_legacy(str(msgpack), params)
  _cut_in_half(msgpack / "checkpoint")
  with pytest.raises(UnreadableCheckpointError,
                     match=r"^Checkpoint file '.*/msgpack/checkpoint_100/checkpoint' cannot be "
                           r"read: the file is truncated \(its msgpack data ends inside a "
                           r"value\); copy it again\.$"):
    t5x.load(str(msgpack), CONFIG)

  chunks = tmp_path / "chunks" / "checkpoint_100"
  write_legacy(str(chunks), params)
  array = chunks / "target.decoder.layers_0.mlp.wo.kernel"
  _cut_in_half(array / "0.0")
  pattern = (rf"^Checkpoint directory '{array}' cannot be read: it is not a readable "
             rf"TensorStore array \(.*{array}/0.0.*\); copy it again\.$")
  with pytest.raises(UnreadableCheckpointError, match=pattern):
    t5x.load(str(chunks), CONFIG)
  lazy = t5x.load(str(chunks), CONFIG, lazy=True)   # reads headers only
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  with pytest.raises(UnreadableCheckpointError, match=pattern):
    place_on_mesh(lazy, jax.tree_util.tree_map(lambda _: sharding, lazy), np.float32)

  orbax = tmp_path / "orbax" / "checkpoint_1"
  write_orbax(str(orbax), params)
  files = [os.path.join(d, name) for d, _, names in os.walk(orbax) for name in names]
  largest = max(files, key=os.path.getsize)
  size = _cut_in_half(largest)
  with pytest.raises(UnreadableCheckpointError,
                     match=rf"^Checkpoint file '{largest}' cannot be read: the file is truncated "
                           r"\(the checkpoint's index needs at least [\d.]+ kB, the file has "
                           rf"{size / 1000:.1f} kB\); copy it again\.$"):
    t5x.load(str(orbax), CONFIG)
