r"""What a two-process run does when one process is killed: how fast the survivor stops,
what it prints, and whether relaunching both resumes exactly.

    python tools/lost_host.py [--kill_index 1 0] [--heartbeat_timeout_seconds=10] \
      [--train_steps=12] [--checkpoint_period=4] [--work_dir=/tmp/lost_host]

Runs the tiny experiment (experiments/tiny_distill.gin) as two local processes of 4 CPU
devices each (gloo collectives, as tests/test_train.py does): once uninterrupted; then,
for each --kill_index, again with that process killed (SIGKILL) as soon as the step after
the first checkpoint is logged, and both processes relaunched with the same command.
Prints the seconds from the kill until the other process exits, its exit status and the
last lines of its stderr, and whether every logged metric (all but timing/*) of the
relaunched run equals the uninterrupted run's exactly. docs/faults.md, "A lost host",
quotes a run of it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "experiments/tiny_distill.gin"
TIMEOUT_SECONDS = 1800


def launch(model_dir: str, port: int, args: argparse.Namespace) -> list[subprocess.Popen]:
  """Both processes of the run, stdout and stderr to MODEL_DIR.process_<i>.{out,err}."""
  environment = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu",
                 "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
                 "JAX_COMPILATION_CACHE_DIR": os.path.join(args.work_dir, "jax_cache")}
  processes = []
  for index in range(2):
    command = [
        sys.executable, "-m", "miniend_jax.train", f"--gin_file={TINY}",
        f'--gin.MODEL_DIR="{model_dir}"', f"--gin.TRAIN_STEPS={args.train_steps}",
        f"--gin.CHECKPOINT_PERIOD={args.checkpoint_period}", "--gin.LOG_PERIOD=1",
        f"--coordinator_address=127.0.0.1:{port}", "--process_count=2",
        f"--process_index={index}",
        f"--heartbeat_timeout_seconds={args.heartbeat_timeout_seconds}"]
    with open(f"{model_dir}.process_{index}.out", "a") as out, \
        open(f"{model_dir}.process_{index}.err", "a") as err:
      processes.append(subprocess.Popen(command, cwd=REPO, env=environment, stdout=out,
                                        stderr=err))
  return processes


def free_port() -> int:
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def finish(processes: list[subprocess.Popen], model_dir: str) -> None:
  for index, process in enumerate(processes):
    if process.wait(timeout=TIMEOUT_SECONDS) != 0:
      sys.exit(f"process {index} exited with {process.returncode}: see "
               f"{model_dir}.process_{index}.err")


def logged_steps(model_dir: str) -> int:
  try:
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
      return sum(1 for line in f if line.endswith("\n"))
  except FileNotFoundError:
    return 0


def read_metrics(model_dir: str) -> dict[int, dict[str, float]]:
  """{step: metrics but timing/*} of metrics.jsonl."""
  with open(os.path.join(model_dir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return {r["step"]: {k: v for k, v in r.items() if not k.startswith("timing/")}
          for r in records}


def last_lines(path: str, count: int) -> list[str]:
  """The last `count` lines of `path` once it stops growing (the survivor's watcher
  writes after the survivor has exited), without the console's progress lines."""
  size, deadline = -1, time.time() + 5
  while time.time() < deadline and os.path.getsize(path) != size:
    size = os.path.getsize(path)
    time.sleep(0.5)
  with open(path, errors="replace") as f:
    lines = [line.rstrip() for line in f.read().replace("\r", "\n").split("\n")]
  return [line for line in lines if line and not line.startswith("[")][-count:]


def interrupted_run(model_dir: str, kill_index: int, args: argparse.Namespace) -> dict:
  """Kill process `kill_index` after the step following the first checkpoint; time the
  survivor; relaunch both with the same command."""
  processes = launch(model_dir, free_port(), args)
  deadline = time.time() + TIMEOUT_SECONDS
  while logged_steps(model_dir) <= args.checkpoint_period:
    if time.time() > deadline or any(p.poll() is not None for p in processes):
      sys.exit(f"the run stopped or stalled before step {args.checkpoint_period + 1}")
    time.sleep(0.05)
  processes[kill_index].send_signal(signal.SIGKILL)
  killed_at = time.perf_counter()
  survivor = 1 - kill_index
  status = processes[survivor].wait(timeout=TIMEOUT_SECONDS)
  stop_seconds = time.perf_counter() - killed_at
  processes[kill_index].wait()
  newest = sorted(n for n in os.listdir(model_dir) if n.startswith("checkpoint_"))
  result = {"killed": kill_index, "survivor": survivor, "stop_seconds": stop_seconds,
            "status": status, "checkpoints": newest,
            "lines": last_lines(f"{model_dir}.process_{survivor}.err", args.lines)}
  relaunch_start = time.perf_counter()
  processes = launch(model_dir, free_port(), args)
  finish(processes, model_dir)
  result["relaunch_seconds"] = time.perf_counter() - relaunch_start
  return result


def compare(expected: dict[int, dict[str, float]], got: dict[int, dict[str, float]]) -> str:
  if sorted(got) != sorted(expected):
    return f"no: steps {sorted(got)} logged, expected {sorted(expected)}"
  differing = [(step, key) for step in expected for key in expected[step]
               if got[step].get(key) != expected[step][key]]
  if not differing:
    keys = len(next(iter(expected.values())))
    return f"yes, exactly ({len(expected)} steps x {keys} metrics)"
  step, key = differing[0]
  return (f"no: {len(differing)} values differ, first {key} at step {step}: "
          f"{got[step].get(key)!r} vs {expected[step][key]!r}")


def describe_status(status: int) -> str:
  if status < 0:
    return f"killed by {signal.Signals(-status).name}"
  return f"exit status {status}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--kill_index", type=int, nargs="+", default=[1], choices=(0, 1),
                      help="Which process to kill; several: one interrupted run each.")
  parser.add_argument("--heartbeat_timeout_seconds", type=int, default=10)
  parser.add_argument("--train_steps", type=int, default=12)
  parser.add_argument("--checkpoint_period", type=int, default=4)
  parser.add_argument("--lines", type=int, default=3,
                      help="How many of the survivor's last stderr lines to print.")
  parser.add_argument("--work_dir", default=None,
                      help="Where the runs go (default: a new temporary directory).")
  args = parser.parse_args()
  if args.train_steps <= args.checkpoint_period + 1:
    parser.error("--train_steps must exceed --checkpoint_period + 1")
  args.work_dir = args.work_dir or tempfile.mkdtemp(prefix="lost_host-")
  os.makedirs(args.work_dir, exist_ok=True)

  start = time.perf_counter()
  uninterrupted = os.path.join(args.work_dir, "uninterrupted")
  finish(launch(uninterrupted, free_port(), args), uninterrupted)
  expected = read_metrics(uninterrupted)
  print(f"uninterrupted: {args.train_steps} steps as 2 processes in "
        f"{time.perf_counter() - start:.0f} s ({args.work_dir})")
  failed = False
  for kill_index in args.kill_index:
    model_dir = os.path.join(args.work_dir, f"killed_{kill_index}")
    result = interrupted_run(model_dir, kill_index, args)
    verdict = compare(expected, read_metrics(model_dir))
    failed |= not verdict.startswith("yes")
    print(f"kill -9 process {kill_index} after step {args.checkpoint_period + 1} "
          f"(checkpoints then: {', '.join(result['checkpoints'])}), "
          f"--heartbeat_timeout_seconds={args.heartbeat_timeout_seconds}:")
    print(f"  process {result['survivor']} stopped {result['stop_seconds']:.1f} s after the "
          f"kill, {describe_status(result['status'])}; the last lines of its stderr:")
    for line in result["lines"]:
      print(f"    {line}")
    print(f"  relaunched both with the same command ({result['relaunch_seconds']:.0f} s); "
          f"every logged metric equals the uninterrupted run's: {verdict}")
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  main()
