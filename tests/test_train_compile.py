"""`python -m miniend_jax.train_compile`: the train step compiled for TPU topologies on
this CPU host (libtpu gives abstract TPU devices; nothing runs on them). Skipped only
where libtpu is absent; the README's test command installs it (the "tpu" extra)."""

import importlib.util
import json
import os
import subprocess
import sys

import gin
import pytest

from miniend_jax import gin_cli
from tests.training_runs import REPO, TINY

pytestmark = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                reason="libtpu is not installed (pip install -e '.[tpu]')")
KEYS = {"topology", "num_devices", "per_device_bytes", "hbm_bytes_per_device", "fits"}


def _report(topology, *bindings, gin_files=(TINY,)):
  """compile_for_topology on the configured train settings, in this process."""
  from miniend_jax.train import ahead_of_time, tpu_topology, trainer  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  try:
    gin_cli.parse(list(gin_files), ['MODEL_DIR = "/nonexistent/run"', *bindings])
    settings = gin.get_bindings(trainer.train)
  finally:
    gin.clear_config()
  return ahead_of_time.compile_for_topology(settings, tpu_topology.describe(topology))


def test_cli_compiles_the_tiny_experiment_for_v5e_2x2(tmp_path):
  """The command of the docs: per-device bytes against HBM, fits, a JSON report; nothing
  is written to MODEL_DIR."""
  report_file, model_dir = tmp_path / "report.json", tmp_path / "run"
  done = subprocess.run(
      [sys.executable, "-m", "miniend_jax.train_compile", f"--gin_file={TINY}",
       f'--gin.MODEL_DIR="{model_dir}"', "--topology=v5e:2x2", f"--json={report_file}"],
      cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO})
  assert done.returncode == 0, done.stderr[-3000:]
  report = json.loads(report_file.read_text())
  assert KEYS <= set(report) and report["fits"] is True
  assert report["topology"] == "v5e:2x2" and report["num_devices"] == 4
  assert report["hbm_bytes_per_device"] == 16 * 1024 ** 3
  sizes = report["per_device_bytes"]
  assert all(sizes[k] > 0 for k in ("arguments", "temporaries", "outputs"))
  assert 0 < sizes["peak"] < report["hbm_bytes_per_device"]
  # The state is donated: the new one is written over it.
  assert sizes["aliased"] > 0.9 * sizes["outputs"]
  assert "fits" in done.stdout and "v5e:2x2" in done.stdout
  assert not model_dir.exists()


def test_multi_host_topology_compiles_with_model_parallelism():
  """v5e:4x4 is 16 chips on 4 hosts; a 2-way "model" axis halves each chip's share of
  the teacher's and student's parameters."""
  data_parallel = _report("v5e:4x4", "BATCH_SIZE = 16")
  split = _report("v5e:4x4", "BATCH_SIZE = 16", "MODEL_PARALLEL_SIZE = 2")
  assert data_parallel.num_hosts == 4 and data_parallel.num_devices == 16
  assert data_parallel.mesh == {"data": 16, "model": 1} and split.mesh == {"data": 8, "model": 2}
  assert data_parallel.fits and split.fits
  # The arguments are mostly parameters and optimizer state: about halved.
  ratio = split.per_device_bytes["arguments"] / data_parallel.per_device_bytes["arguments"]
  assert 0.45 < ratio < 0.75, ratio


def test_teacher_assistant_student_step_compiles():
  """The interpolated experiment's three models in one step (the assistant's architecture
  from ASSISTANT_CONFIG, no weights read); XLA's FLOPs are near the analytic count."""
  report = _report("v5e:2x2", "ASSISTANT_CHECKPOINT = None",
                   "ASSISTANT_CONFIG = %TEACHER_CONFIG",
                   gin_files=("experiments/tiny_interpolated.gin",))
  assert report.fits
  flops = report.flops_per_device
  assert 0.8 < flops["xla"] / flops["analytic"] < 1.6, flops


def test_oversized_step_reports_that_it_does_not_fit():
  """A batch whose activations need hundreds of GiB per chip: not a crash, a report
  that says what to change."""
  report = _report("v5e:2x2", "BATCH_SIZE = 4096",
                   "TASK_FEATURE_LENGTHS = {'inputs': 4096, 'targets': 1024}")
  assert report.fits is False
  assert report.per_device_bytes["temporaries"] > report.hbm_bytes_per_device
  assert any("NUM_MICROBATCHES" in advice for advice in report.advice)
  assert any("MODEL_PARALLEL_SIZE" in advice for advice in report.advice)
  assert "DOES NOT FIT" in "\n".join(report.lines())


def test_unknown_topology_is_one_clear_error():
  from miniend_jax.train import tpu_topology  # pylint: disable=g-import-not-at-top
  with pytest.raises(tpu_topology.TopologyError, match="v7x:9x9x9.*e.g. v4:2x2x1"):
    tpu_topology.describe("v7x:9x9x9")
