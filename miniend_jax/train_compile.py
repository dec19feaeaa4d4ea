r"""Compile the exact train step `train` would run for a TPU topology, on a host without
a TPU, and say whether it fits (needs libtpu: pip install -e ".[tpu]").

    python -m miniend_jax.train_compile \
      --gin_file=gin_configs/experiments/tiny_distill.gin --gin.MODEL_DIR=\"/tmp/x\" \
      --topology=v5e:2x2 [--json=report.json]

The gin files and flags are those of `python -m miniend_jax.train` (MODEL_PARALLEL_SIZE,
NUM_MICROBATCHES, TEACHER_DTYPE, ...); nothing is written to MODEL_DIR and no weights
are read (a frozen model's architecture comes from <ROLE>_CONFIG, or from its checkpoint's
config). It prints per-device memory against the chip's HBM, whether it fits and what to
change if not, XLA's FLOPs beside the analytic count, and the compile time; --json writes
the same to a file. docs/performance.md, "What fits where", tables the measured settings.
"""

from __future__ import annotations

import json
import os

from absl import flags

from miniend_jax import console, gin_cli

TOPOLOGY = flags.DEFINE_string("topology", None,
                               "TPU slice to compile for, e.g. v5e:2x2, v5e:4x4, v4:2x2x1.")
JSON = flags.DEFINE_string("json", None, "Also write the report to this JSON file.")


def _compile() -> None:
  # Compiling for a TPU needs no accelerator here; the host's own backend is the CPU.
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  import gin  # pylint: disable=g-import-not-at-top

  from miniend_jax.train import ahead_of_time, trainer, tpu_topology  # pylint: disable=g-import-not-at-top

  if not TOPOLOGY.value:
    raise tpu_topology.TopologyError(
        "--topology is required, e.g. --topology=v5e:2x2 (any slice libtpu can describe).")
  topology = tpu_topology.describe(TOPOLOGY.value)
  gin.clear_config()
  gin_cli.parse(gin_cli.GIN_FILES.value, gin_cli.GIN_BINDINGS.value,
                gin_cli.GIN_SEARCH_PATHS.value)
  try:
    settings = gin.get_bindings(trainer.train)
  except (ValueError, KeyError, TypeError, AttributeError) as error:
    raise gin_cli.GinConfigError(f"gin configuration error: {error}") from None
  report = ahead_of_time.compile_for_topology(settings, topology)
  for line in report.lines():
    print(line)
  if JSON.value:
    with open(JSON.value, "w") as f:
      json.dump(report.to_json(), f, indent=2)
      f.write("\n")


def console_main():
  console.run_cli(_compile, argv_rewrite=gin_cli.rewrite_gin_flags)


if __name__ == "__main__":
  console_main()
