"""The package as users install it: a built wheel, installed non-editable, run from a
directory outside the repository. Its gin files and task registrations must come from the
installed package (package data), not from the source tree."""

import os
import shutil
import subprocess
import sys
import zipfile

from tests.training_runs import REPO


def test_installed_wheel_trains_from_outside_the_repository(tmp_path, sentencepiece_model):
  # Built from a copy of the sources: the build leaves nothing in the repository, and no
  # stale build/ directory can add files.
  source = tmp_path / "source"
  shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
      ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
  wheels = tmp_path / "wheels"
  subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                  "--no-build-isolation", "--quiet", "-w", str(wheels)],
                 check=True, cwd=tmp_path)
  (wheel,) = wheels.glob("miniend_jax-*.whl")
  names = zipfile.ZipFile(wheel).namelist()
  assert "miniend_jax/gin_configs/experiments/tiny_distill.gin" in names
  assert "miniend_jax/gin_configs/runs/distill.gin" in names
  assert "tasks/__init__.py" in names
  site = tmp_path / "site"
  subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
                  "--target", str(site), str(wheel)], check=True, cwd=tmp_path)
  outside = tmp_path / "elsewhere"
  outside.mkdir()
  # The installed copy first on the path: the source tree is neither the working
  # directory nor importable through PYTHONPATH.
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["PYTHONPATH"] = str(site)
  where = subprocess.run(
      [sys.executable, "-c", "import miniend_jax, tasks; print(miniend_jax.__file__); "
       "print(tasks.__file__)"], check=True, cwd=outside, env=env, capture_output=True,
      text=True).stdout.split()
  assert all(path.startswith(str(site)) for path in where), where
  model_dir = tmp_path / "run"
  result = subprocess.run(
      [sys.executable, "-m", "miniend_jax.train", "--gin_file=experiments/tiny_distill.gin",
       f'--gin.MODEL_DIR="{model_dir}"', "--gin.TRAIN_STEPS=2", "--gin.WARMUP_STEPS=1",
       "--gin.LOG_PERIOD=1", "--gin.CHECKPOINT_PERIOD=2",
       f'--gin.SENTENCEPIECE_MODEL="{sentencepiece_model}"'],
      cwd=outside, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert (model_dir / "checkpoint_2").is_dir()
  assert (model_dir / "metrics.jsonl").read_text().count("\n") == 2
  # The same gin file named by its repository path resolves too, from anywhere.
  listing = subprocess.run(
      [sys.executable, "-c", "from miniend_jax import gin_cli; import os; print(os.path."
       "isfile(os.path.join(gin_cli.PACKAGE_DIR, 'gin_configs/experiments/tiny_distill.gin')))"],
      cwd=outside, env=env, capture_output=True, text=True, check=True)
  assert listing.stdout.strip() == "True"
