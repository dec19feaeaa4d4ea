"""tools/bench.py runs and reports, and the analytic step count matches a hand count.

Only that: performance targets are the tool's output, never a unit test's threshold.
"""

import json

import pytest

from miniend_jax.distill import objectives
from miniend_jax.distill.flops import step_flops
from miniend_jax.model import preset
from miniend_jax.model.flops import forward_flops
from tests.tool_modules import tool_module

@pytest.fixture(scope="module")
def bench():
  with tool_module("bench") as module:
    yield module


def test_step_flops_match_a_hand_count():
  # tiny (emb 32, attention 32 wide, vocab 128), inputs 10, targets 4; see
  # tests/test_model_flops.py for the per-layer counts.
  config = preset("tiny")
  encoder, decoder = 2 * 10 * 21760, 2 * (4 * (8192 + 512 + 4096 + 1280 + 12288) + 10 * 4096)
  output_layer = 2 * 4 * 32 * 128
  objective = objectives.Objective(terms=(
      objectives.LogitKL(),
      objectives.AttentionRelations(stack="encoder", pairs=("QQ", "KK"),
                                    num_relation_heads=4)))
  flops = step_flops(objective, student_config=config, teacher_config=config,
                     inputs_length=10, targets_length=4)
  assert flops.student == 3 * (encoder + decoder)     # up to the final states, fwd + bwd
  assert flops.teacher == encoder + decoder           # forward only, no output product
  relations = 2 * (2 * 10 * 10 * 32 + 3 * 2 * 10 * 10 * 32)   # two pairs, teacher + student
  assert flops.losses == output_layer + 3 * output_layer + relations
  assert flops.metrics == 0
  with_metrics = step_flops(objective, student_config=config, teacher_config=config,
                            inputs_length=10, targets_length=4,
                            extra_student_taps=(objectives.OUTPUT_LAYER,))
  assert with_metrics.total == flops.total + output_layer
  # A teacher read only at the encoder's top runs no decoder at all.
  encoder_only = objectives.Objective(terms=(objectives.AttentionRelations(
      stack="encoder", pairs=("VV",), num_relation_heads=4),))
  teacher = step_flops(encoder_only, student_config=config, teacher_config=config,
                       inputs_length=10, targets_length=4).teacher
  assert teacher == forward_flops(config, inputs_length=10, targets_length=4,
                                  taps=encoder_only.teacher_taps(config)).total
  assert teacher == 10 * 21760 + 10 * 2 * 32 * 32  # layer 0, then layer 1's values


def test_bench_runs_and_writes_its_records(bench, tmp_path, monkeypatch):
  """A miniature configuration through the whole tool: records with every field, the
  JSON and markdown files, and the same first loss from our step and the PyTorch route
  (same weights, same batch, no dropout), which shows that both do the same work."""
  pytest.importorskip("torch")
  small = preset("tiny", vocab_size=256, dropout_rate=0.0)
  mini = bench.BenchConfig("mini", preset("tiny", vocab_size=256, dropout_rate=0.0,
                                          num_encoder_layers=3, num_decoder_layers=3),
                           small, batch_size=2, inputs_length=24, targets_length=20,
                           quick=True)
  monkeypatch.setattr(bench, "configurations", lambda on_gpu: {"mini": mini})
  json_path, markdown_path = tmp_path / "bench.json", tmp_path / "bench.md"
  records = bench.main(["--quick", "--objectives", "scratch,miniend_d", "--repeats", "1",
                        "--json", str(json_path), "--markdown", str(markdown_path)])
  assert [r["objective"] for r in records] == ["scratch", "miniend_d"]
  for record in records:
    for key in ("config", "objective", "flops_ratio", "memory_ratio", "tokens_per_second",
                "torch_tokens_per_second", "speedup_vs_torch", "mfu"):
      assert key in record
    assert record["flops_ratio"] > 0.5 and 0 < record["memory_ratio"] <= 1.5
    assert record["first_loss"] == pytest.approx(record["torch_first_loss"], rel=1e-4)
  assert json.loads(json_path.read_text()) == records
  table = markdown_path.read_text()
  assert "| mini | miniend_d |" in table and "memory_ratio" in table
  # Nothing is overwritten, and a wrong name is refused with the choices.
  with pytest.raises(SystemExit):
    bench.main(["--json", str(json_path)])
  with pytest.raises(SystemExit):
    bench.main(["--configs", "huge"])
