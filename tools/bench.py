"""Benchmark of the distillation train step: FLOPs, memory and speed, against the analytic
minimum, a naive variant and the PyTorch reference.

    python tools/bench.py                      # every configuration and objective
    python tools/bench.py --quick              # the small configuration only (~1 min CPU)
    python tools/bench.py --json /tmp/bench.json --markdown /tmp/bench.md

For each configuration (teacher -> student, batch, lengths) and objective it measures, in
one run:

  flops_ratio     XLA's cost analysis of the compiled step / the analytic minimum
                  (miniend_jax.distill.flops: student forward + backward, the teacher's
                  forward up to the sites the objective reads, the losses' matmuls),
                  both without the accuracy metrics (see `counting_variant`);
  memory_ratio    XLA's temporary memory of the compiled step / that of a naive variant,
                  the same step with logit terms written plainly (both full float32 logit
                  tensors and their log-softmaxes materialised);
  tokens/s        target tokens per second of our jitted step and of the PyTorch route
                  (transformers' T5 with tools/torch_reference.py's objective and
                  torch.optim.AdamW; same weights, same batch, same objective), timed
                  alternately step by step, median of --repeats;
  mfu             on a GPU: analytic FLOPs per second / the chip's peak (bf16 there).

Each target is printed as a ratio next to the value reached. Thresholds live here, not in
the unit tests (tests/test_bench.py only checks that this runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

# Timed alternately, the two runtimes share the cores: PyTorch's OpenMP threads must not
# spin-wait after each operation (the default), or they take the cores from XLA's threads
# for the first part of our step. Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import flax.linen as nn  # noqa: E402
import gin  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from miniend_jax import gin_cli  # noqa: E402
from miniend_jax.distill import objectives  # noqa: E402
from miniend_jax.distill.flops import step_flops  # noqa: E402
from miniend_jax.model import config as model_config  # noqa: E402
from miniend_jax.model.network import init_params  # noqa: E402
from miniend_jax.taps import Tap  # noqa: E402
from miniend_jax.train import optimizers  # noqa: E402
from miniend_jax.train.state import TrainState  # noqa: E402
from miniend_jax.train.step import StepConfig, train_step  # noqa: E402

OBJECTIVE_DIR = os.path.join(gin_cli.PACKAGE_GIN_DIR, "objectives")
LOGITS = Tap("decoder", -1, "logits")
OBJECTIVES = ("scratch", "mlmkd", "miniend_d", "miniend_e")
LEARNING_RATE = 1e-4
# Dense bf16 peak FLOP/s per chip, from the vendors' data sheets (no sparsity).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}
TARGETS = {"flops_ratio": ("<=", 1.05), "memory_ratio": ("<=", 0.5),
           "speedup_vs_torch": (">=", 1.5), "mfu": (">=", 0.45)}


@dataclasses.dataclass(frozen=True)
class BenchConfig:
  """One benchmarked setting: teacher -> student, batch and lengths."""

  name: str
  teacher: model_config.T5Config
  student: model_config.T5Config
  batch_size: int
  inputs_length: int
  targets_length: int
  quick: bool


def configurations(on_gpu: bool) -> dict[str, BenchConfig]:
  """tiny: small widths with T5's real vocabulary (32128), where the logits dominate memory;
  base: T5 1.1 base -> 6L_384H at the paper's lengths 512/114, a small batch on CPU."""
  dtype = {"dtype": "bfloat16"} if on_gpu else {}
  tiny_teacher = model_config.preset(
      "tiny", vocab_size=32128, emb_dim=64, num_heads=4, head_dim=16, mlp_dim=128,
      num_encoder_layers=4, num_decoder_layers=4, dropout_rate=0.1, **dtype)
  tiny_student = model_config.preset("tiny", vocab_size=32128, dropout_rate=0.1, **dtype)
  base_batch = 32 if on_gpu else 2
  return {
      "tiny": BenchConfig("tiny", tiny_teacher, tiny_student, 8, 128, 64, quick=True),
      "base": BenchConfig("base", model_config.preset("t5_1_1_base", **dtype),
                          model_config.preset("student_6l_384h", **dtype), base_batch, 512,
                          114, quick=False),
  }


def load_objective(name: str) -> objectives.Objective:
  path = os.path.join(OBJECTIVE_DIR, f"{name}.gin")
  if not os.path.exists(path):
    choices = sorted(f[:-4] for f in os.listdir(OBJECTIVE_DIR) if f.endswith(".gin"))
    raise SystemExit(f"--objectives: no {path}; choose from {', '.join(choices)}.")
  gin.clear_config()
  try:
    gin.parse_config_file(path)
    return gin.get_configurable(objectives.Objective)()
  finally:
    gin.clear_config()


# ----------------------------------------------------------------------------- naive variant


def _plain_log_softmax(logits, temperature=1.0):
  return jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NaiveLogitKL(objectives.LogitKL):
  """LogitKL written plainly: both models' full float32 logits and log-softmaxes, autodiff."""

  def teacher_taps(self):
    return (LOGITS,)

  def student_taps(self):
    return (LOGITS,)

  def loss(self, teacher_sites, student_sites, view, *, params, step, assistant_sites):
    log_p = jax.lax.stop_gradient(
        _plain_log_softmax(teacher_sites[LOGITS], self.temperature))
    log_q = _plain_log_softmax(student_sites[LOGITS], self.temperature)
    kl = jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)
    weights = view.loss_weights.astype(jnp.float32)
    return self.temperature ** 2 * jnp.sum(kl * weights) / jnp.maximum(jnp.sum(weights), 1.0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NaiveCrossEntropy(objectives.CrossEntropy):
  """CrossEntropy written plainly: the full float32 logits and log-softmax, then a gather."""

  def student_taps(self):
    return (LOGITS,)

  def loss(self, teacher_sites, student_sites, view, *, params, step, assistant_sites):
    log_q = _plain_log_softmax(student_sites[LOGITS])
    nll = -jnp.take_along_axis(log_q, view.targets[..., None], axis=-1)[..., 0]
    weights = view.loss_weights.astype(jnp.float32)
    return jnp.sum(nll * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def naive_variant(objective: objectives.Objective) -> objectives.Objective:
  naive = {objectives.LogitKL: NaiveLogitKL, objectives.CrossEntropy: NaiveCrossEntropy}
  terms = []
  for term in objective.terms:
    cls = naive.get(type(term))
    if cls is None:
      terms.append(term)
    else:
      terms.append(cls(**{f.name: getattr(term, f.name) for f in dataclasses.fields(term)}))
  return objectives.Objective(terms=tuple(terms))


# ----------------------------------------------------------------------------- our step


@dataclasses.dataclass
class Workload:
  """Concrete weights and one batch, shared by our step and the PyTorch reference."""

  objective: objectives.Objective
  student_params: Any
  teacher_params: Any
  objective_params: dict
  batch: dict[str, np.ndarray]


def make_workload(bench: BenchConfig, objective: objectives.Objective,
                  seed: int = 0) -> Workload:
  rng = np.random.default_rng(seed)
  teacher_params = None
  keys = jax.random.split(jax.random.key(seed), 3)
  student_params = jax.jit(lambda k: nn.unbox(init_params(bench.student, k)))(keys[0])
  if objective.uses_teacher:
    teacher_params = jax.jit(lambda k: nn.unbox(init_params(bench.teacher, k)))(keys[1])
  objective_params = objective.init_params(keys[2], bench.teacher, bench.student)
  vocab = bench.student.vocab_size
  inputs = rng.integers(2, vocab, (bench.batch_size, bench.inputs_length), dtype=np.int32)
  targets = rng.integers(2, vocab, (bench.batch_size, bench.targets_length), dtype=np.int32)
  # Some padding, as span-corrupted batches have: the last eighth of each row.
  inputs[:, bench.inputs_length * 7 // 8:] = 0
  targets[:, bench.targets_length * 7 // 8:] = 0
  decoder_inputs = np.concatenate([np.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)
  batch = {"encoder_input_tokens": inputs, "decoder_input_tokens": decoder_inputs,
           "decoder_target_tokens": targets}
  return Workload(objective, student_params, teacher_params, objective_params, batch)


def step_config(bench: BenchConfig, objective: objectives.Objective) -> StepConfig:
  return StepConfig(objective=objective, student_config=bench.student,
                    teacher_config=bench.teacher if objective.uses_teacher else None,
                    optimizer=optimizers.adamw(LEARNING_RATE, weight_decay=0.0),
                    learning_rate=lambda step: jnp.asarray(LEARNING_RATE))


def initial_state(setup: StepConfig, work: Workload) -> TrainState:
  trainable = {"student": work.student_params}
  if work.objective_params:
    trainable["objective"] = work.objective_params
  copy = jax.tree_util.tree_map(jnp.array, trainable)  # the step donates it
  return TrainState.create(copy, setup.optimizer)


def counting_variant(setup: StepConfig, length: int) -> StepConfig:
  """The step as XLA's cost analysis can count it: every chunked loss in one chunk (the
  analysis counts a loop's body once, whatever its trip count; the FLOPs do not depend on
  the chunking) and without the accuracy metrics (in one chunk XLA would merge their
  output-layer pass with the loss's, which the chunked step cannot)."""
  terms = tuple(dataclasses.replace(t, chunk_length=length) if hasattr(t, "chunk_length")
                else t for t in setup.objective.terms)
  return dataclasses.replace(setup, objective=objectives.Objective(terms=terms),
                             report_accuracy=False)


def compile_step(setup: StepConfig, state, teacher_params, batch):
  """-> (compiled step, XLA FLOPs, temporary bytes)."""
  step = jax.jit(functools.partial(train_step, setup), donate_argnums=(0,))
  compiled = step.lower(state, frozen(teacher_params), batch, jax.random.key(1)).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return compiled, float(cost["flops"]), int(compiled.memory_analysis().temp_size_in_bytes)


def frozen(teacher_params) -> dict[str, Any]:
  """The step's frozen argument: {"teacher": ...} or nothing for scratch."""
  return {} if teacher_params is None else {"teacher": teacher_params}


def abstract(tree):
  return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


# ----------------------------------------------------------------------------- PyTorch


class TorchRoute:
  """transformers' T5 (student in train mode, teacher in eval mode under no_grad), the
  reference objective and torch.optim.AdamW: what a PyTorch user would run."""

  def __init__(self, bench: BenchConfig, work: Workload):
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
    import torch_reference  # pylint: disable=g-import-not-at-top

    from miniend_jax.convert import hf  # pylint: disable=g-import-not-at-top

    self.torch = torch
    self.device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if self.device == "cuda" else torch.float32

    def model(config, params, train):
      # Through our export and from_pretrained, as a user would load it: a T5 built from
      # its config alone ties lm_head to the embedding whatever tie_word_embeddings says.
      with tempfile.TemporaryDirectory() as directory:
        hf.save(config, params, directory)
        module = transformers.T5ForConditionalGeneration.from_pretrained(directory)
      module = module.to(self.device)
      return module.train() if train else module.eval().to(dtype)

    self.student = model(bench.student, work.student_params, True)
    self.teacher = (model(bench.teacher, work.teacher_params, False)
                    if work.teacher_params is not None else None)
    self.spec = torch_reference.spec_from_objective(work.objective, work.objective_params,
                                                    step=0)
    trainable = list(self.student.parameters())
    for term in self.spec:
      if term.get("projection") is not None:
        term["projection"] = term["projection"].to(self.device).requires_grad_()
        trainable.append(term["projection"])
    self.optimizer = torch.optim.AdamW(trainable, lr=LEARNING_RATE, weight_decay=0.0)
    self.batch = {k: torch.tensor(v, dtype=torch.long, device=self.device)
                  for k, v in work.batch.items()}
    self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device == "cuda"
                     else None)
    self.objective_loss = torch_reference.objective_loss

  def step(self) -> float:
    self.optimizer.zero_grad(set_to_none=True)
    if self.autocast is not None:
      with self.autocast:
        total, _ = self.objective_loss(self.teacher, self.student, self.batch, self.spec,
                                       backward=False)
      total.backward()
    else:
      total, _ = self.objective_loss(self.teacher, self.student, self.batch, self.spec,
                                     backward=True)
    self.optimizer.step()
    if self.device == "cuda":
      self.torch.cuda.synchronize()
    return float(total.detach())


# ----------------------------------------------------------------------------- measuring


def _gpu_peak() -> float | None:
  device = jax.devices()[0]
  if device.platform != "gpu":
    return None
  for name, peak in PEAK_FLOPS.items():
    if name in device.device_kind:
      return peak
  return None


def bench_one(bench: BenchConfig, name: str, *, repeats: int, with_torch: bool) -> dict:
  objective = load_objective(name)
  work = make_workload(bench, objective)
  setup = step_config(bench, objective)
  batch = {k: jnp.asarray(v) for k, v in work.batch.items()}
  state = initial_state(setup, work)
  compiled, _, temp_bytes = compile_step(setup, abstract(state), work.teacher_params, batch)
  longest = max(bench.inputs_length, bench.targets_length)
  _, xla_flops, _ = compile_step(counting_variant(setup, longest), abstract(state),
                                 work.teacher_params, batch)
  naive_setup = dataclasses.replace(setup, objective=naive_variant(objective))
  _, _, naive_temp = compile_step(naive_setup, abstract(state), work.teacher_params, batch)
  minimum = functools.partial(
      step_flops, objective, student_config=bench.student,
      teacher_config=bench.teacher if objective.uses_teacher else None,
      inputs_length=bench.inputs_length, targets_length=bench.targets_length)
  analytic = bench.batch_size * minimum(extra_student_taps=setup.extra_student_taps).total
  analytic_counted = bench.batch_size * minimum().total  # as the counting variant

  rng = jax.random.key(2)
  state, metrics = compiled(state, frozen(work.teacher_params), batch, rng)  # warm-up
  jax.block_until_ready(metrics)
  ours_first_loss = float(metrics["loss"])
  torch_route = TorchRoute(bench, work) if with_torch else None
  torch_first_loss = torch_route.step() if torch_route else None  # warm-up
  ours_times, torch_times = [], []
  for _ in range(repeats):  # alternately, so both see the same machine state
    start = time.perf_counter()
    state, metrics = compiled(state, frozen(work.teacher_params), batch, rng)
    jax.block_until_ready((state, metrics))
    ours_times.append(time.perf_counter() - start)
    if torch_route:
      start = time.perf_counter()
      torch_route.step()
      torch_times.append(time.perf_counter() - start)
  ours_seconds = statistics.median(ours_times)
  target_tokens = bench.batch_size * bench.targets_length
  record = {
      "config": bench.name, "objective": name, "backend": jax.default_backend(),
      "device": jax.devices()[0].device_kind, "batch_size": bench.batch_size,
      "inputs_length": bench.inputs_length, "targets_length": bench.targets_length,
      "teacher_dtype": bench.teacher.dtype, "student_dtype": bench.student.dtype,
      "analytic_flops": analytic, "analytic_flops_without_metrics": analytic_counted,
      "xla_flops_without_metrics": xla_flops, "flops_ratio": xla_flops / analytic_counted,
      "temp_bytes": temp_bytes, "naive_temp_bytes": naive_temp,
      "memory_ratio": temp_bytes / naive_temp,
      "step_seconds": ours_seconds, "tokens_per_second": target_tokens / ours_seconds,
      "first_loss": ours_first_loss, "torch_first_loss": torch_first_loss,
      "torch_step_seconds": None, "torch_tokens_per_second": None, "speedup_vs_torch": None,
      "mfu": None, "repeats": repeats}
  if torch_times:
    torch_seconds = statistics.median(torch_times)
    record.update(torch_step_seconds=torch_seconds,
                  torch_tokens_per_second=target_tokens / torch_seconds,
                  speedup_vs_torch=torch_seconds / ours_seconds)
  peak = _gpu_peak()
  if peak is not None:
    record["mfu"] = analytic / ours_seconds / peak
    stats = jax.devices()[0].memory_stats() or {}
    record["peak_memory_bytes"] = stats.get("peak_bytes_in_use")
  return record


def _met(name: str, value: float | None) -> str:
  if value is None:
    return "n/a"
  op, target = TARGETS[name]
  ok = value <= target if op == "<=" else value >= target
  return f"{value:.3f} ({op} {target}: {'met' if ok else 'MISSED'})"


def markdown(records: list[dict]) -> str:
  header = ("| config | objective | GFLOP/step analytic | XLA / analytic | temp MiB | "
            "naive MiB | temp / naive | ours tok/s | torch tok/s | speed-up | MFU |")
  lines = [header, "|" + "---|" * (header.count("|") - 1)]
  for r in records:
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)
    lines.append(
        f"| {r['config']} | {r['objective']} | {r['analytic_flops'] / 1e9:.2f} | "
        f"{r['flops_ratio']:.3f} | {r['temp_bytes'] / 2**20:.1f} | "
        f"{r['naive_temp_bytes'] / 2**20:.1f} | {r['memory_ratio']:.3f} | "
        f"{r['tokens_per_second']:.0f} | {fmt(r['torch_tokens_per_second'], '.0f')} | "
        f"{fmt(r['speedup_vs_torch'], '.2f')} | {fmt(r['mfu'], '.1%')} |")
  return "\n".join(lines)


def summary(records: list[dict]) -> str:
  lines = ["Targets (value, target, met or MISSED):"]
  for r in records:
    parts = [f"flops_ratio {_met('flops_ratio', r['flops_ratio'])}",
             f"memory_ratio {_met('memory_ratio', r['memory_ratio'])}"]
    parts.append(f"speedup_vs_torch {_met('speedup_vs_torch', r['speedup_vs_torch'])}")
    if r["mfu"] is not None:
      parts.append(f"mfu {_met('mfu', r['mfu'])}")
    lines.append(f"  {r['config']:>5} {r['objective']:<10} " + "; ".join(parts))
  return "\n".join(lines)


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="only the small configurations")
  parser.add_argument("--configs", default=None,
                      help="comma-separated configuration names (default: all, or the "
                           "small ones with --quick)")
  parser.add_argument("--objectives", default=",".join(OBJECTIVES),
                      help="comma-separated gin_configs/objectives/ names")
  parser.add_argument("--repeats", type=int, default=5, help="timed steps per side")
  parser.add_argument("--no_torch", action="store_true", help="skip the PyTorch reference")
  parser.add_argument("--json", default=None, help="write the records to this JSON file")
  parser.add_argument("--markdown", default=None, help="write the table to this file")
  args = parser.parse_args(argv)
  on_gpu = jax.default_backend() == "gpu"
  available = configurations(on_gpu)
  if args.configs:
    names = args.configs.split(",")
    unknown = [n for n in names if n not in available]
    if unknown:
      parser.error(f"--configs: unknown {unknown}; choose from {sorted(available)}.")
  else:
    names = [n for n, c in available.items() if c.quick or not args.quick]
  if args.repeats < 1:
    parser.error("--repeats must be at least 1.")
  for path in (args.json, args.markdown):
    if path and os.path.exists(path):
      parser.error(f"{path} exists; give a new path (nothing is overwritten).")
  records = []
  for config_name in names:
    for objective in args.objectives.split(","):
      record = bench_one(available[config_name], objective, repeats=args.repeats,
                         with_torch=not args.no_torch)
      records.append(record)
      print(json.dumps(record), flush=True)
  table = markdown(records)
  print()
  print(table)
  print()
  print(summary(records))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(records, f, indent=1)
  if args.markdown:
    with open(args.markdown, "w") as f:
      f.write(table + "\n\n" + summary(records) + "\n")
  return records


if __name__ == "__main__":
  main()
