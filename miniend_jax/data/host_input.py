"""Each host reads only its own rows of the global batch, and the batches do not depend on
the number of hosts.

The global batch of every step is the concatenation of INPUT_SHARDS sub-batches of
BATCH_SIZE / INPUT_SHARDS rows; sub-batch k is the next batch of input shard k, a
deterministic seqio pipeline over shard k of the data (seqio.ShardInfo(k, INPUT_SHARDS),
applied before tokenization, span corruption and packing). Host h of H reads and
preprocesses shards [h K/H, (h+1) K/H) only, which are exactly its rows
[h B/H, (h+1) B/H) of the global batch: per-host input work is 1/H of the whole, and the
global batch is the same for every H that divides K (1 process, 8 devices or 2 processes
of 4 give the same losses).

K is fixed when a run starts (INPUT_SHARDS, by default the number of hosts then) and is
recorded in every checkpoint, so a run resumed on another number of hosts reads the same
batches (any H that divides K).
"""

from __future__ import annotations

import numpy as np

from miniend_jax.data.dataset import BatchIterator, DatasetConfig
from miniend_jax.data.errors import DataError


def check_input_shards(input_shards: int, batch_size: int, num_hosts: int) -> None:
  """One error naming INPUT_SHARDS when K cannot split the batch over the hosts."""
  if not isinstance(input_shards, int) or input_shards < 1:
    raise DataError(f"INPUT_SHARDS must be a positive integer, got {input_shards!r}.")
  if batch_size % input_shards:
    raise DataError(f"INPUT_SHARDS={input_shards} must divide BATCH_SIZE={batch_size}: "
                    "each input shard gives BATCH_SIZE / INPUT_SHARDS rows of every batch.")
  if input_shards % num_hosts:
    raise DataError(f"INPUT_SHARDS={input_shards} must be a multiple of the {num_hosts} "
                    "hosts, each of which reads INPUT_SHARDS / hosts shards; set "
                    f"INPUT_SHARDS to a multiple of {num_hosts} that divides BATCH_SIZE.")


class HostBatches:
  """This host's rows of each global batch, [batch_size / num_hosts, length] per feature,
  read from its own input shards only (see the module docstring).

  Attributes:
    shards: the input shards this host reads.
    step: index of the next batch, counted from the start of the data.
  """

  def __init__(self, config: DatasetConfig, *, input_shards: int, host: int,
               num_hosts: int, start_step: int = 0):
    check_input_shards(input_shards, config.batch_size, num_hosts)
    per_host = input_shards // num_hosts
    self.shards = tuple(range(host * per_host, (host + 1) * per_host))
    self._readers = [BatchIterator(config, shard_id=shard, num_shards=input_shards,
                                   start_step=start_step) for shard in self.shards]

  @property
  def step(self) -> int:
    return self._readers[0].step

  def __iter__(self) -> HostBatches:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    parts = [next(reader) for reader in self._readers]
    if len(parts) == 1:
      return parts[0]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
