"""MetricsWriter: every logged step goes to metrics.jsonl; the console line can be thinned."""

import io
import json
import os

from miniend_jax.train.metrics_writer import MetricsWriter


def test_console_interval_thins_the_progress_lines_but_not_the_files(tmp_path):
  console = io.StringIO()
  writer = MetricsWriter(str(tmp_path), total_steps=5, stream=console,
                         console_interval_seconds=3600.0)
  for step in range(1, 6):
    writer.write(step, {"loss": 1.0 / step})
  writer.close()
  lines = console.getvalue().splitlines()
  assert [line.split("step ")[1].split()[0] for line in lines] == ["1/5", "5/5"]
  with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
    assert [json.loads(line)["step"] for line in f] == [1, 2, 3, 4, 5]


def test_without_an_interval_every_logged_step_prints(tmp_path):
  console = io.StringIO()
  writer = MetricsWriter(str(tmp_path), total_steps=3, stream=console)
  for step in range(1, 4):
    writer.write(step, {"loss": 0.5})
  writer.close()
  assert len(console.getvalue().splitlines()) == 3
