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


def test_an_unread_macro_in_a_users_gin_file_is_an_error_with_a_suggestion(tmp_path):
  """Gin accepts a macro that nothing reads; a user never means one (a typo would leave
  the run at the default it meant to change)."""
  mine = tmp_path / "mine.gin"
  mine.write_text("include 'experiments/tiny_distill.gin'\nTRAIN_STPES = 3\n")
  with pytest.raises(gin_cli.GinConfigError,
                     match=r"TRAIN_STPES \(set in .*mine.gin\) is not read by any "
                           r"configuration; did you mean TRAIN_STEPS\?"):
    gin_cli.parse([str(mine)], ['MODEL_DIR = "/tmp/unused"'])
  gin.clear_config()
  mine.write_text("include 'experiments/tiny_distill.gin'\nTRAIN_STEPS = 3\n")
  gin_cli.parse([str(mine)], ['MODEL_DIR = "/tmp/unused"'])
  assert gin.query_parameter("%TRAIN_STEPS") == 3


def test_a_cli_error_is_one_line_on_stderr(tmp_path):
  """What a user sees for a mistake: `error: ...` once, no traceback, no absl E line, no
  gin "In call to configurable" line, nothing else (TensorFlow's start-up lines included)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run(
      [sys.executable, "-m", "miniend_jax.train", "--gin_file=experiments/tiny_distill.gin",
       f'--gin.MODEL_DIR="{tmp_path / "run"}"', "--gin.LERNING_RATE=1e-3"],
      cwd=repo, env={**os.environ, "PYTHONPATH": repo, "JAX_PLATFORMS": "cpu"},
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 1
  assert result.stderr.splitlines() == [
      "error: LERNING_RATE (set by --gin.LERNING_RATE) is not read by any configuration; "
      "did you mean LEARNING_RATE?"], result.stderr
  assert not os.path.exists(tmp_path / "run")
