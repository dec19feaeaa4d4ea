"""Compile the train step for a TPU topology on a host without a TPU, and say if it fits.

`compile_for_topology(train_settings, topology)` takes the arguments `trainer.train` would
be called with (the same gin files and flags: `train_compile` reads them with
`gin.get_bindings(trainer.train)`) and builds the same step through the same functions
(`trainer.plan_step`, `trainer.make_train_mesh`, `step.jit_train_step`), with the frozen
models' architectures but not their weights. Every argument is a ShapeDtypeStruct carrying
the NamedSharding the run would give it, on a mesh of the topology's abstract devices;
XLA then compiles for that hardware and reports per-device memory and FLOPs.

As MaxText's train_compile does, the abstract arguments and the RNG key are built before
the mesh becomes the tracing context: eager work under `jax.set_mesh` of abstract devices
would try to run on them.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import time
from typing import Any

import jax
import jax.numpy as jnp

from miniend_jax.data.dataset import DatasetConfig, batch_spec
from miniend_jax.distill.flops import step_flops
from miniend_jax.train import partitioning, trainer
from miniend_jax.train.frozen_models import load_frozen_models
from miniend_jax.train.step import jit_train_step
from miniend_jax.train.tpu_topology import TopologyFacts, gib


@dataclasses.dataclass(frozen=True)
class CompileReport:
  """What XLA says about the step on one device of the topology.

  per_device_bytes: "arguments" (state, frozen models, batch), "temporaries",
  "outputs", "aliased" (outputs written over donated arguments: the new state),
  "generated_code", and "peak" = arguments + outputs - aliased + temporaries +
  generated_code, which must fit in hbm_bytes_per_device. When XLA itself finds that the
  step does not fit, it stops before its memory report: "temporaries" is then the figure
  of its out-of-memory message, and FLOPs from XLA are 0.
  """

  topology: str
  device_kind: str
  num_devices: int
  num_hosts: int
  mesh: dict[str, int]
  per_device_bytes: dict[str, int]
  hbm_bytes_per_device: int
  fits: bool
  advice: tuple[str, ...]
  flops_per_device: dict[str, float]
  peak_flops_per_device: float
  compile_seconds: float

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def lines(self) -> list[str]:
    b = self.per_device_bytes
    mesh = " x ".join(f"{n} {axis}" for axis, n in self.mesh.items())
    lines = [
        f"topology {self.topology}: {self.num_devices} x {self.device_kind}, "
        f"{self.num_hosts} host(s), mesh {mesh}",
        f"per device: arguments {gib(b['arguments'])}, temporaries {gib(b['temporaries'])}, "
        f"outputs {gib(b['outputs'])} ({gib(b['aliased'])} written over donated "
        f"arguments), generated code {gib(b['generated_code'])}",
        f"peak {gib(b['peak'])} of {gib(self.hbm_bytes_per_device)} HBM: "
        + ("fits" if self.fits else "DOES NOT FIT"),
    ]
    lines += [f"  to fit: {advice}" for advice in self.advice]
    xla, analytic = self.flops_per_device["xla"], self.flops_per_device["analytic"]
    lines.append(
        f"FLOPs per device and step: XLA {xla:.3e}, analytic {analytic:.3e} (XLA counts a "
        "loop body once: chunked losses and microbatches count one chunk)")
    lines.append(f"at peak ({self.peak_flops_per_device:.3g} FLOP/s per device) the "
                 f"analytic count takes {analytic / self.peak_flops_per_device * 1e3:.1f} ms "
                 "per step")
    lines.append(f"compiled in {self.compile_seconds:.1f} s")
    return lines


def train_defaults() -> dict[str, Any]:
  """`trainer.train`'s keyword defaults (what an unbound argument is)."""
  return {name: p.default for name, p in inspect.signature(trainer.train).parameters.items()
          if p.default is not inspect.Parameter.empty}


def compile_for_topology(train_settings: dict[str, Any], topology: TopologyFacts
                         ) -> CompileReport:
  """Compile `trainer.train(**train_settings)`'s step for `topology` and report on it."""
  s = {**train_defaults(), **train_settings}
  objective, dataset_cfg = s["objective"], s["train_dataset_cfg"]
  frozen = load_frozen_models(
      objective, teacher_checkpoint=s["teacher_checkpoint"],
      teacher_config=s["teacher_config"], teacher_dtype=s["teacher_dtype"],
      assistant_checkpoint=s["assistant_checkpoint"],
      assistant_config=s["assistant_config"], assistant_dtype=s["assistant_dtype"],
      read_weights=False)
  mesh = trainer.make_train_mesh(
      s["num_devices"], s["model_parallel_size"], dataset_cfg.batch_size,
      s["num_microbatches"], devices=topology.devices, num_hosts=topology.num_hosts)
  rules = s["logical_axis_rules"]
  step_config, initializer = trainer.plan_step(
      objective=objective, student_config=s["student_config"],
      frozen_configs={role: model.config for role, model in frozen.items()},
      optimizer=s["optimizer"], learning_rate=s["learning_rate"],
      num_microbatches=s["num_microbatches"], report_accuracy=s["report_accuracy"],
      on_nonfinite=s["on_nonfinite"], student_init=s["student_init"], seed=s["seed"],
      mesh=mesh, rules=rules)
  # Abstract arguments first, outside the mesh context (see the module docstring).
  abstract_state = initializer.abstract_state()
  state_shardings = initializer.shardings(abstract_state)
  state = partitioning.with_shardings(abstract_state, state_shardings)
  frozen_args, frozen_shardings = {}, {}
  for role, model in frozen.items():
    frozen_args[role], frozen_shardings[role] = model.abstract(mesh, rules)
  batch = {name: jax.ShapeDtypeStruct(spec.shape, spec.dtype,
                                      sharding=partitioning.batch_sharding(mesh))
           for name, spec in batch_spec(dataset_cfg).items()}
  key = jax.eval_shape(lambda: jax.random.key(0))
  rng = jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=partitioning.replicated(mesh))
  step = jit_train_step(step_config, state_shardings, frozen_shardings, mesh)
  start = time.perf_counter()
  with partitioning.activate(mesh, rules):
    lowered = step.lower(state, frozen_args, batch, rng)
    try:
      compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as error:
      if "RESOURCE_EXHAUSTED" not in str(error):
        raise
      compiled = None
      sizes = _sizes_of_failed_compile(str(error), (state, frozen_args, batch), state)
  seconds = time.perf_counter() - start
  if compiled is not None:
    memory = compiled.memory_analysis()
    sizes = {"arguments": memory.argument_size_in_bytes,
             "temporaries": memory.temp_size_in_bytes,
             "outputs": memory.output_size_in_bytes,
             "aliased": memory.alias_size_in_bytes,
             "generated_code": memory.generated_code_size_in_bytes}
    sizes = {k: int(v) for k, v in sizes.items()}
  sizes["peak"] = (sizes["arguments"] + sizes["outputs"] - sizes["aliased"]
                   + sizes["temporaries"] + sizes["generated_code"])
  return _report(compiled, sizes, topology, mesh, s, step_config, frozen, dataset_cfg,
                 seconds)


def _bytes_per_device(tree) -> int:
  """Bytes of one device's shards of a tree of ShapeDtypeStructs with shardings."""
  total = 0
  for leaf in jax.tree_util.tree_leaves(tree):
    shape = leaf.sharding.shard_shape(leaf.shape)
    total += math.prod(shape) * jnp.dtype(leaf.dtype).itemsize
  return total


def _sizes_of_failed_compile(message: str, arguments, state) -> dict[str, int]:
  """When XLA runs out of HBM it stops before reporting memory: arguments and outputs
  (the new state, written over the donated one) follow from the shardings, temporaries
  from its message ("... HLO temporaries (880.05G) exceeds available HBM (15.75G)")."""
  found = re.search(r"temporaries \(([\d.]+)([KMGT]?)\)", message)
  units = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}
  temporaries = int(float(found.group(1)) * units[found.group(2)]) if found else 0
  state_bytes = _bytes_per_device(state)
  return {"arguments": _bytes_per_device(arguments), "temporaries": temporaries,
          "outputs": state_bytes, "aliased": state_bytes, "generated_code": 0}


def _report(compiled, sizes: dict[str, int], topology: TopologyFacts, mesh,
            s: dict[str, Any], step_config, frozen, dataset_cfg: DatasetConfig,
            seconds: float) -> CompileReport:
  """`compiled` is None when XLA found that the step does not fit."""
  cost = compiled.cost_analysis() if compiled is not None else {}
  cost = cost[0] if isinstance(cost, list) else cost
  lengths = dataset_cfg.task_feature_lengths
  per_example = step_flops(
      step_config.objective, student_config=step_config.student_config,
      teacher_config=step_config.teacher_config, inputs_length=lengths["inputs"],
      targets_length=lengths["targets"], extra_student_taps=step_config.extra_student_taps,
      assistant_config=step_config.assistant_config).total
  num_devices = mesh.devices.size
  fits = compiled is not None and sizes["peak"] <= topology.hbm_bytes_per_device
  return CompileReport(
      topology=topology.name, device_kind=topology.device_kind, num_devices=num_devices,
      num_hosts=topology.num_hosts, mesh={k: int(v) for k, v in mesh.shape.items()},
      per_device_bytes=sizes, hbm_bytes_per_device=topology.hbm_bytes_per_device,
      fits=fits, advice=() if fits else advice(sizes, s, frozen),
      flops_per_device={"xla": float(cost.get("flops", 0.0)),
                        "analytic": per_example * dataset_cfg.batch_size / num_devices},
      peak_flops_per_device=topology.peak_flops_per_device, compile_seconds=seconds)


def advice(sizes: dict[str, int], s: dict[str, Any], frozen) -> tuple[str, ...]:
  """What to change when the step does not fit, the largest part first."""
  model_parallel = (
      f"raise MODEL_PARALLEL_SIZE (now {s['model_parallel_size']}): parameters, optimizer "
      "state and frozen models split over the \"model\" axis")
  float32_frozen = [role for role, model in frozen.items()
                    if jnp.dtype(model.config.parameter_dtype) == jnp.float32]
  frozen_dtype = (f"set {' and '.join(r.upper() + '_DTYPE' for r in float32_frozen)} = "
                  "\"bfloat16\": half the bytes of each frozen model")
  microbatches = (f"raise NUM_MICROBATCHES (now {s['num_microbatches']}): activations "
                  "scale with the microbatch")
  remat = ("set remat_policy = \"full\" (or \"minimal\") in STUDENT_CONFIG: the backward "
           "pass recomputes each layer's activations instead of keeping them")
  by_arguments = [model_parallel] + ([frozen_dtype] if float32_frozen else [])
  by_temporaries = [microbatches]
  if s["student_config"].remat_policy != "full":
    by_temporaries.append(remat)
  if sizes["arguments"] >= sizes["temporaries"]:
    return tuple(by_arguments + by_temporaries)
  return tuple(by_temporaries + by_arguments)
