r"""Measure docs/performance.md's "What fits where" table with `train_compile`.

For each setting, compile its experiment for each topology of its ladder (smallest
first) until one fits, and print a Markdown table: the smallest listed topology that
fits, its per-chip memory, the compile time, and how many host cores the input pipeline
needs to keep up with the step at the chip's peak FLOP/s.

    python tools/fit_table.py --out=/tmp/fit_table.json [--settings=paper,3b,11b]
        [--input_examples_per_core_second=N]   # from tools/input_rate.py

Each compile is a subprocess (`python -m miniend_jax.train_compile ... --json`), so one
setting's memory never weighs on the next. Needs libtpu (pip install -e ".[tpu]"). The
paper setting compiles in about 10 minutes on a 2-core host.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (name, description, gin file, bindings, ladder of (topology, extra bindings))
SETTINGS = {
    "paper": ("T5 1.1 base -> 6L_384H, MiniEnD-E, bf16 teacher",
              "experiments/paper_miniend_e.gin", ["TEACHER_CHECKPOINT=None"],
              [("v5e:2x2", []), ("v5e:2x4", []), ("v5e:4x4", [])]),
    "3b": ("T5 1.1 XL -> T5 1.1 base assistant -> 6L_384H, MiniEnD-D interpolated",
           "experiments/scale_interpolated_3b.gin",
           ["TEACHER_CHECKPOINT=None", "ASSISTANT_CHECKPOINT=None"],
           [("v5e:2x2", []), ("v5e:2x4", []), ("v5e:4x4", []),
            ("v5e:4x4", ["MODEL_PARALLEL_SIZE=4"])]),
    "11b": ("T5 1.1 XXL -> 6L_384H, MiniEnD-E, bf16 teacher, 4-way model parallel",
            "experiments/scale_miniend_e_11b.gin", ["TEACHER_CHECKPOINT=None"],
            [("v5e:2x4", []), ("v5e:4x4", []), ("v5e:4x8", [])]),
}
GIB = 1024 ** 3


def compile_once(gin_file: str, bindings: list[str], topology: str) -> dict:
  with tempfile.TemporaryDirectory() as scratch:
    report = os.path.join(scratch, "report.json")
    command = [sys.executable, "-m", "miniend_jax.train_compile", f"--gin_file={gin_file}",
               f'--gin.MODEL_DIR="{scratch}/run"', f"--topology={topology}",
               f"--json={report}"] + [f"--gin.{b}" for b in bindings]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    if done.returncode != 0 or not os.path.exists(report):
      raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    with open(report) as f:
      return json.load(f)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="JSON lines of every compile, appended")
  parser.add_argument("--settings", default=",".join(SETTINGS))
  parser.add_argument("--input_examples_per_core_second", type=float, default=None)
  parser.add_argument("--table_only", action="store_true",
                      help="print the table from the fitting compiles already in --out")
  args = parser.parse_args()
  rows = []
  if args.table_only:
    with open(args.out) as f:
      records = [json.loads(line) for line in f]
    for name in args.settings.split(","):
      fitting = [r for r in records if r["setting"] == name and r["fits"]]
      if fitting:
        rows.append((name, SETTINGS[name][0], fitting[0]))
  for name in [] if args.table_only else args.settings.split(","):
    description, gin_file, bindings, ladder = SETTINGS[name]
    for topology, extra in ladder:
      report = compile_once(gin_file, bindings + extra, topology)
      report.update(setting=name, bindings=bindings + extra)
      with open(args.out, "a") as f:
        f.write(json.dumps(report) + "\n")
      print(f"{name} {topology} {extra}: peak "
            f"{report['per_device_bytes']['peak'] / GIB:.2f} GiB, fits={report['fits']}, "
            f"{report['compile_seconds']:.0f} s", flush=True)
      if report["fits"]:
        rows.append((name, description, report))
        break
  print("\n| setting | smallest fitting slice | mesh | per-chip peak (args + temps) | "
        "HBM | step at peak FLOP/s | host cores for input |")
  print("|---|---|---|---|---|---|---|")
  for name, description, r in rows:
    b = r["per_device_bytes"]
    step_seconds = r["flops_per_device"]["analytic"] / r["peak_flops_per_device"]
    batch = 256   # every setting here runs the paper's batch
    cores = "-"
    if args.input_examples_per_core_second:
      cores = f"{batch / step_seconds / args.input_examples_per_core_second:.1f}"
    print(f"| {description} | {r['topology']} ({r['num_devices']} chips, {r['num_hosts']} "
          f"hosts) | {r['mesh']} | {b['peak'] / GIB:.2f} GiB ({b['arguments'] / GIB:.2f} + "
          f"{b['temporaries'] / GIB:.2f}) | {r['hbm_bytes_per_device'] / GIB:.0f} GiB | "
          f"{step_seconds * 1e3:.0f} ms | {cores} |")


if __name__ == "__main__":
  main()
