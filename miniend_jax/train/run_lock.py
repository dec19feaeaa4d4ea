"""One live run per MODEL_DIR: the lock file MODEL_DIR/run.lock.

Two runs writing one MODEL_DIR corrupt each other (both write checkpoint_<N>, one of them
dies on the other's half-renamed files, metrics.jsonl holds both runs' rows). A run takes
the lock before it writes anything and removes it when it exits, however it exits. The
lock is a small JSON file: host, pid, the process's start time and the run's start time.

- Taken atomically: the content is written to a private file, then hard-linked to
  `run.lock` (link fails if the name exists, also on NFS), so a reader never sees a
  half-written lock.
- A lock whose process is gone (same host; the pid is not running, or is running but was
  started at another time, i.e. the pid was reused) is stale: it is taken over with a
  warning. That is what a run killed with kill -9 leaves.
- A lock held from another host cannot be checked from here: it is refused unless
  TAKE_OVER_LOCK = True, for when that host is known to be gone.
- In a multi-host run, process 0 takes the lock and tells every process the outcome, so
  all of them stop with the same sentence.

On a bucket mounted as a file system (gcsfuse and the like) hard links and exclusive
creation are not atomic between machines: the lock then still stops a second launch that
starts after the first took it, but two launches within the same second may both pass.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import socket
import time

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from miniend_jax.errors import MiniendError

LOCK_FILE = "run.lock"
_MESSAGE_BYTES = 2048   # a refusal's message, sent from process 0 to the others


class RunLockedError(MiniendError, RuntimeError):
  """Another run holds MODEL_DIR."""


def process_start(pid: int) -> str | None:
  """When `pid` started (clock ticks since boot, /proc/<pid>/stat field 22), or None where
  /proc does not say (not Linux, or no such process)."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _running(pid: int, started: str | None) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:   # someone else's process: it exists
    pass
  now_started = process_start(pid)
  return started is None or now_started is None or now_started == started


def _describe(holder: dict) -> str:
  since = datetime.datetime.fromtimestamp(holder.get("started_at", 0), datetime.timezone.utc)
  return (f"process {holder.get('pid')} on host {holder.get('host')!r} (since "
          f"{since:%Y-%m-%d %H:%M:%S} UTC)")


class RunLock:
  """MODEL_DIR's lock for this run; `acquire` takes it (idempotent), `release` drops it."""

  def __init__(self, model_dir: str, *, take_over: bool = False):
    self.model_dir = os.path.abspath(model_dir)
    self.path = os.path.join(self.model_dir, LOCK_FILE)
    self.take_over = take_over
    self.held = False
    self._content = ""

  def acquire(self, *, create_dir: bool) -> None:
    """Takes the lock, or raises RunLockedError naming its holder. Without `create_dir`
    nothing is done while MODEL_DIR does not exist (nobody can be writing there yet).
    Every process of the run calls this; process 0 does the work."""
    if self.held:
      return
    refusal = ""
    if jax.process_index() == 0:
      try:
        if create_dir or os.path.isdir(self.model_dir):
          os.makedirs(self.model_dir, exist_ok=True)
          self._take()
          self.held = True
      except RunLockedError as error:
        refusal = str(error)
    self.held, refusal = self._from_process_zero(self.held, refusal)
    if refusal:
      raise RunLockedError(refusal)

  def _take(self) -> None:
    me = {"host": socket.gethostname(), "pid": os.getpid(),
          "process_started": process_start(os.getpid()), "started_at": time.time()}
    self._content = json.dumps(me)
    private = f"{self.path}.{me['host']}.{me['pid']}"
    with open(private, "w") as f:
      f.write(self._content)
    try:
      for _ in range(3):
        try:
          os.link(private, self.path)
          return
        except FileExistsError:
          self._refuse_or_clear()
        except OSError as error:
          if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
          self._create_exclusive()   # a file system without hard links
          return
      raise RunLockedError(f"MODEL_DIR {self.model_dir}: its lock {self.path} keeps "
                           "changing; another run is starting there.")
    finally:
      os.remove(private)

  def _create_exclusive(self) -> None:
    try:
      fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      self._refuse_or_clear()
      fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with os.fdopen(fd, "w") as f:
      f.write(self._content)

  def _refuse_or_clear(self) -> None:
    """The lock exists: refuse if its holder may be alive, else remove it (stale)."""
    try:
      with open(self.path) as f:
        holder = json.loads(f.read() or "{}")
    except FileNotFoundError:
      return   # released meanwhile
    except (OSError, ValueError):
      holder = {}
    here = holder.get("host") == socket.gethostname()
    if here and not _running(int(holder.get("pid", -1)), holder.get("process_started")):
      logging.warning("MODEL_DIR %s was locked by %s, which is no longer running (killed?): "
                      "taking the lock over.", self.model_dir, _describe(holder))
    elif not here and self.take_over:
      logging.warning("TAKE_OVER_LOCK = True: taking over MODEL_DIR %s's lock from %s.",
                      self.model_dir, _describe(holder))
    elif here:
      raise RunLockedError(
          f"MODEL_DIR {self.model_dir} is in use by {_describe(holder)}, which is still "
          "running: wait for it to finish (or stop it), or choose another MODEL_DIR.")
    else:
      raise RunLockedError(
          f"MODEL_DIR {self.model_dir} is locked by {_describe(holder)}, which cannot be "
          f"checked from this host: if that run is gone, set TAKE_OVER_LOCK = True "
          "(--gin.TAKE_OVER_LOCK=True); otherwise choose another MODEL_DIR.")
    try:
      os.remove(self.path)
    except FileNotFoundError:
      pass

  def _from_process_zero(self, held: bool, refusal: str) -> tuple[bool, str]:
    """Process 0's (held, refusal), on every process."""
    if jax.process_count() == 1:
      return held, refusal
    encoded = np.zeros(_MESSAGE_BYTES + 1, np.uint8)
    raw = refusal.encode()[:_MESSAGE_BYTES]
    encoded[0] = held
    encoded[1:1 + len(raw)] = np.frombuffer(raw, np.uint8)
    received = np.asarray(multihost_utils.broadcast_one_to_all(encoded)).astype(np.uint8)
    message = bytes(received[1:][received[1:] != 0]).decode(errors="replace")
    return bool(received[0]), message

  def release(self) -> None:
    """Removes the lock if this process holds it (and it is still this run's)."""
    if not self.held:
      return
    self.held = False
    if jax.process_index() != 0:
      return
    try:
      with open(self.path) as f:
        if f.read() != self._content:
          return   # taken over meanwhile (TAKE_OVER_LOCK elsewhere): not ours to remove
      os.remove(self.path)
    except FileNotFoundError:
      pass
