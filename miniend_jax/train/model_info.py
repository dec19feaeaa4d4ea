"""model-info.txt: every parameter with its shape, logical axes and partition spec."""

from __future__ import annotations

from typing import Any

import jax
from flax import traverse_util
from jax.sharding import Mesh

from miniend_jax.model.config import T5Config
from miniend_jax.model.network import logical_axes


def _section(title: str, config: T5Config, params: Any, rules) -> tuple[list[str], int]:
  axes = traverse_util.flatten_dict(logical_axes(config))
  flat = traverse_util.flatten_dict(params)
  lines = [f"# {title}", "name\tshape\tdtype\tlogical axes\tpartition spec"]
  total = 0
  for path in sorted(flat):
    leaf = flat[path]
    logical = tuple(axes.get(path, ()))
    mesh_axes = tuple(dict(rules).get(name) if name is not None else None
                      for name in logical)
    spec = getattr(getattr(leaf, "sharding", None), "spec", mesh_axes)
    lines.append(f"{'/'.join(path)}\t{tuple(leaf.shape)}\t{leaf.dtype}\t{logical}\t"
                 f"{tuple(spec)}")
    total += leaf.size
  lines.append(f"# {title} total parameters: {total:,}")
  return lines, total


def write_model_info(path: str, *, mesh: Mesh, rules, student_config: T5Config,
                     student_params: Any, frozen: dict[str, tuple[T5Config, Any]]) -> None:
  """`frozen`: {role: (config, parameters)} of the teacher and an assistant."""
  lines = [f"# mesh: {dict(mesh.shape)} over {jax.device_count()} devices, "
           f"{jax.process_count()} process(es)"]
  student_lines, student_total = _section("student", student_config,
                                          student_params["student"], rules)
  lines += student_lines
  if "objective" in student_params:
    count = sum(x.size for x in jax.tree_util.tree_leaves(student_params["objective"]))
    lines.append(f"# objective parameters (e.g. projections): {count:,}")
  for role, (config, params) in frozen.items():
    frozen_lines, frozen_total = _section(f"{role} (frozen)", config, params, rules)
    lines += frozen_lines
    lines.append(f"# {role} / student parameters: {frozen_total / student_total:.2f}x")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
