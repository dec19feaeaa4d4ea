"""TPU topologies without a TPU: abstract devices, and what each chip holds and computes.

`jax.experimental.topologies.get_topology_desc` (with libtpu installed: the "tpu" extra)
describes a named slice, e.g. "v5e:2x4" (8 chips, 2 hosts), as devices that XLA can
compile for on a host that has no TPU; nothing can run on them. `TopologyFacts` adds what
the compiler does not report for such devices: the memory and peak bf16 FLOP/s of each
device, from Google Cloud's published per-chip figures (a v2, v3 or v4 chip in this
description has two devices, one per TensorCore, which split the chip's figures).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys

import jax

from miniend_jax.errors import MiniendError

GIB = 1024 ** 3

# device_kind -> (HBM bytes, peak bf16 FLOP/s) per chip (cloud.google.com/tpu/docs).
CHIPS = {
    "TPU v2": (16 * GIB, 45e12),
    "TPU v3": (32 * GIB, 123e12),
    "TPU v4": (32 * GIB, 275e12),
    "TPU v5 lite": (16 * GIB, 197e12),   # v5e
    "TPU v5": (95 * GIB, 459e12),        # v5p
    "TPU v6 lite": (32 * GIB, 918e12),   # v6e (Trillium)
}
# Slices the docs' table is measured on; any name libtpu knows works.
EXAMPLES = ("v4:2x2x1", "v5e:2x2", "v5e:2x4", "v5e:4x4", "v5e:16x16", "v5p:2x2x1",
            "v6e:4x4")


class TopologyError(MiniendError, ValueError):
  """A TPU topology cannot be described on this host."""


@dataclasses.dataclass(frozen=True)
class TopologyFacts:
  """A named slice: its abstract devices and per-device capacity."""

  name: str
  devices: tuple[jax.Device, ...]
  device_kind: str
  num_hosts: int
  devices_per_chip: int
  hbm_bytes_per_device: int
  peak_flops_per_device: float


def describe(name: str) -> TopologyFacts:
  """The slice `name` (e.g. "v5e:2x4"), for compiling on a host without a TPU."""
  try:
    import libtpu  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    raise TopologyError(
        "Compiling for a TPU topology needs libtpu: pip install -e \".[tpu]\" (it comes "
        "with jax[tpu], about 700 MB; no TPU is needed).") from None
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  # libtpu probes for TPU hosts as it loads; on a host without one, say where to stop.
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  # Only a process that runs on TPU chips needs libtpu's one-process-per-host lock;
  # compiling opens none, so several compiles (and a training run) may load it at once.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  try:
    with _quiet_native_stderr():
      topology = topologies.get_topology_desc(topology_name=name, platform="tpu")
  except Exception as error:  # libtpu raises XlaRuntimeError with its own wording.
    raise TopologyError(
        f"--topology={name!r} is not a TPU topology libtpu can describe ({error}); write "
        f"GENERATION:SHAPE, e.g. {', '.join(EXAMPLES[:4])}.") from None
  devices = tuple(topology.devices)
  kind = devices[0].device_kind
  if kind not in CHIPS:
    raise TopologyError(f"--topology={name!r} has devices of kind {kind!r}, whose memory "
                        f"this project does not know; known kinds: {sorted(CHIPS)}.")
  chips = len({tuple(getattr(d, "coords", (d.id,))) for d in devices})
  per_chip = max(1, len(devices) // max(chips, 1))
  hbm, flops = CHIPS[kind]
  return TopologyFacts(
      name=name, devices=devices, device_kind=kind,
      num_hosts=len({d.process_index for d in devices}), devices_per_chip=per_chip,
      hbm_bytes_per_device=hbm // per_chip, peak_flops_per_device=flops / per_chip)


@contextlib.contextmanager
def _quiet_native_stderr():
  """libtpu, loading on a host without a TPU, writes warnings about the TPU hosts it cannot
  find straight to file descriptor 2; errors still come back as exceptions."""
  sys.stderr.flush()
  saved = os.dup(2)
  try:
    with open(os.devnull, "w") as devnull:
      os.dup2(devnull.fileno(), 2)
      yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)


def gib(num_bytes: float) -> str:
  """Bytes as GiB, or MiB below one GiB."""
  if num_bytes < GIB:
    return f"{num_bytes / 1024 ** 2:.1f} MiB"
  return f"{num_bytes / GIB:.2f} GiB"
