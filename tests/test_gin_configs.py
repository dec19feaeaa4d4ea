"""Every shipped gin file parses and binds what its header promises."""

import glob
import os

import gin
import pytest

from miniend_jax import gin_cli
from miniend_jax.model import PRESETS

GIN_DIR = gin_cli.PACKAGE_GIN_DIR


def _relative(paths):
  return sorted(os.path.relpath(p, GIN_DIR) for p in paths)


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.mark.parametrize("gin_file", _relative(glob.glob(f"{GIN_DIR}/models/*.gin")))
def test_model_files_define_their_preset(gin_file):
  name = os.path.basename(gin_file)[:-4]
  assert name in PRESETS
  gin_cli.parse([gin_file], [])
  reference = gin.query_parameter(f"%{name.upper()}")
  assert reference.scoped_selector == f"{name}/config.preset"
  assert f"{name}/config.preset.name = '{name}'" in gin.config_str()


@pytest.mark.parametrize("gin_file", _relative(glob.glob(f"{GIN_DIR}/experiments/paper_*.gin")))
def test_paper_experiments_parse_with_their_required_macros(gin_file):
  gin_cli.parse([gin_file], ['MODEL_DIR = "/tmp/unused"',
                             'TEACHER_CHECKPOINT = "/tmp/teacher"'])
  assert gin.query_parameter("%TASK_FEATURE_LENGTHS") == {"inputs": 512, "targets": 114}
  assert gin.query_parameter("%MIXTURE_OR_TASK_NAME") == "c4_v220_span_corruption"
  objective = os.path.basename(gin_file)[len("paper_"):-4]
  assert f"objectives/{objective}.gin" in open(os.path.join(GIN_DIR, gin_file)).read()


@pytest.mark.parametrize("run", ["runs/distill.gin", "runs/pretrain.gin", "runs/finetune.gin"])
def test_run_files_require_their_macros(run):
  with pytest.raises(gin_cli.GinConfigError,
                     match=r"Required macro \w+ is not set: pass --gin\.\w+="):
    gin_cli.parse([run, "models/tiny.gin"], [])


def test_unknown_gin_file_gets_a_suggestion():
  with pytest.raises(gin_cli.GinConfigError, match="did you mean 'runs/distill.gin'"):
    gin_cli.parse(["runs/distil.gin"], [])


def test_gin_dot_flags_become_bindings():
  assert gin_cli.rewrite_gin_flags(["prog", '--gin.MODEL_DIR="/x"', "--gin_file=a.gin"]) == [
      "prog", '--gin_bindings=MODEL_DIR = "/x"', "--gin_file=a.gin"]
  with pytest.raises(gin_cli.GinConfigError, match="--gin.NAME=VALUE"):
    gin_cli.rewrite_gin_flags(["--gin.MODEL_DIR"])
