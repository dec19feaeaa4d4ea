"""Student initialisation: layer maps and copying teacher layers."""

import flax.linen as nn
import jax
import numpy as np
import pytest
from flax import traverse_util

from miniend_jax.distill import student_init
from miniend_jax.model import init_params, preset


@pytest.mark.parametrize("teacher, student, expected", [
    (12, 6, (0, 2, 4, 7, 9, 11)),   # linspace 0, 2.2, 4.4, 6.6, 8.8, 11
    (24, 6, (0, 5, 9, 14, 18, 23)),  # linspace 0, 4.6, 9.2, 13.8, 18.4, 23
    (6, 3, (0, 3, 5)),               # 2.5 rounds half up
    (5, 5, (0, 1, 2, 3, 4)),
    (8, 1, (7,)),                    # one layer: the top one
])
def test_uniform_layer_map(teacher, student, expected):
  assert student_init.uniform_layer_map(teacher, student) == expected


def test_uniform_layer_map_refuses_a_deeper_student():
  with pytest.raises(student_init.StudentInitError, match="explicit layer map"):
    student_init.uniform_layer_map(2, 3)


def _shapes(config):
  return nn.unbox(jax.eval_shape(lambda rng: init_params(config, rng), jax.random.key(0)))


@pytest.fixture(scope="module")
def teacher():
  """Random values in the teacher's parameter shapes (compiling an init is slow on CPU)."""
  config = preset("tiny", num_encoder_layers=4, num_decoder_layers=3)
  rng = np.random.default_rng(0)
  return config, jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32),
                              _shapes(config))


def _flat(params):
  return traverse_util.flatten_dict(params, sep="/")


def test_init_from_teacher_copies_mapped_layers(teacher):
  teacher_config, teacher_params = teacher
  student_config = teacher_config.replace(num_encoder_layers=2, num_decoder_layers=2)
  params = student_init.init_student(student_config, jax.random.key(1),
                                     method="teacher_layers", teacher_config=teacher_config,
                                     teacher_params=teacher_params, decoder_layer_map=[1, 0])
  flat, source = _flat(params), _flat(teacher_params)
  expected_shapes = _flat(_shapes(student_config))
  assert {k: v.shape for k, v in flat.items()} == {k: v.shape for k, v in
                                                   expected_shapes.items()}
  # Encoder: uniform map (0, 3); decoder: the explicit map (1, 0); shared parts as is.
  pairs = {"encoder/layers_0": "encoder/layers_0", "encoder/layers_1": "encoder/layers_3",
           "decoder/layers_0": "decoder/layers_1", "decoder/layers_1": "decoder/layers_0"}
  for name, value in flat.items():
    prefix = "/".join(name.split("/")[:2])
    origin = name.replace(prefix, pairs[prefix]) if prefix in pairs else name
    np.testing.assert_array_equal(value, source[origin], err_msg=name)


def test_init_from_teacher_refuses_other_widths(teacher):
  teacher_config, teacher_params = teacher
  narrow = teacher_config.replace(emb_dim=16, mlp_dim=32)
  with pytest.raises(student_init.StudentInitError,
                     match=r"emb_dim: teacher 32 vs student 16; mlp_dim: .*'random'"):
    student_init.init_from_teacher(teacher_config, teacher_params, narrow)
  shallow = teacher_config.replace(num_decoder_layers=2)
  with pytest.raises(student_init.StudentInitError, match="decoder_layer_map has 3 entries"):
    student_init.init_from_teacher(teacher_config, teacher_params, shallow,
                                   decoder_layer_map=[0, 1, 2])
  with pytest.raises(student_init.StudentInitError, match=r"entry 3 .* \[0, 2\]"):
    student_init.init_from_teacher(teacher_config, teacher_params, shallow,
                                   decoder_layer_map=[0, 3])
  with pytest.raises(student_init.StudentInitError, match="Unknown student init method"):
    student_init.init_student(shallow, jax.random.key(0), method="shrink")
  with pytest.raises(student_init.StudentInitError, match="needs teacher_config"):
    student_init.init_student(shallow, jax.random.key(0), method="teacher_layers")


def test_random_init_is_seeded():
  config = preset("tiny", num_encoder_layers=1, num_decoder_layers=1)
  params = _flat(student_init.init_student(config, jax.random.key(0)))
  again = _flat(student_init.init_student(config, jax.random.key(0)))
  other = _flat(student_init.init_student(config, jax.random.key(1)))
  assert {k: v.shape for k, v in params.items()} == {
      k: v.shape for k, v in _flat(_shapes(config)).items()}
  for name, value in params.items():
    np.testing.assert_array_equal(value, again[name], err_msg=name)
  name = "encoder/layers_0/attention/query/kernel"
  assert not np.allclose(params[name], other[name])
