r"""Examples per second per host core of the span-corruption input pipeline.

    python tools/input_rate.py [--batches=40] [--inputs_length=512] [--targets_length=114]

Pins itself to one core (os.sched_setaffinity) and reads the embedded corpus's
span-corruption task at the paper's lengths through the pipeline training uses
(data/host_input.py: seqio tokenization, span corruption, EncDecFeatureConverter), with
the embedded 8000-piece vocabulary. Prints examples per second on that one core, which is
what docs/performance.md's "What fits where" divides a step's example rate by.
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batches", type=int, default=40)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--inputs_length", type=int, default=512)
  parser.add_argument("--targets_length", type=int, default=114)
  args = parser.parse_args()
  os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  import tasks  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  from miniend_jax.data.dataset import DatasetConfig  # pylint: disable=g-import-not-at-top
  from miniend_jax.data.host_input import HostBatches  # pylint: disable=g-import-not-at-top
  from miniend_jax.data.vocabulary import task_vocabulary  # pylint: disable=g-import-not-at-top

  config = DatasetConfig(
      "embedded_span_corruption",
      {"inputs": args.inputs_length, "targets": args.targets_length}, "train",
      batch_size=args.batch_size, shuffle=True, seed=0, vocabulary=task_vocabulary())
  batches = HostBatches(config, input_shards=1, host=0, num_hosts=1)
  next(batches)   # pipeline start-up (tracing, shuffle buffer) is not the steady rate
  start = time.perf_counter()
  for _ in range(args.batches):
    next(batches)
  seconds = time.perf_counter() - start
  rate = args.batches * args.batch_size / seconds
  print(f"span corruption {args.inputs_length}/{args.targets_length}: {rate:.0f} examples "
        f"per second on one core ({args.batches} batches of {args.batch_size} in "
        f"{seconds:.1f} s)")


if __name__ == "__main__":
  main()
