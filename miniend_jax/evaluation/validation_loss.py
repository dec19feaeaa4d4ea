"""Teacher-forced validation loss of a T5 on a seqio task: how well it models held-out text.

The number pretraining and distillation are judged by before any finetuning: the mean
cross-entropy per target token (and the token accuracy) on a task's validation split, e.g.
span corruption on held-out documents. Every model evaluated with the same DatasetConfig
sees the same examples (seeded preprocessing, no shuffling), so losses compare directly.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from miniend_jax.data.dataset import BatchIterator, DatasetConfig
from miniend_jax.distill.losses import cross_entropy
from miniend_jax.model.config import T5Config
from miniend_jax.model.network import Transformer


@functools.partial(jax.jit, static_argnames="config")
def _batch_sums(config: T5Config, params, batch) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(sum of token cross-entropies, correct tokens, counted tokens) of one batch."""
  logits = Transformer(config).apply(
      {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
      batch["decoder_target_tokens"])  # [batch, length, vocab] float32
  targets = batch["decoder_target_tokens"]
  weights = (targets != config.pad_id).astype(jnp.float32)
  count = jnp.sum(weights)
  mean_nll, _ = cross_entropy(logits, targets, weights)  # no z-loss: the plain loss
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  return mean_nll * count, jnp.sum(correct * weights), count


def validation_loss(config: T5Config, params, dataset_cfg: DatasetConfig, *,
                    max_batches: int | None = None) -> dict[str, float]:
  """{"loss", "accuracy", "tokens", "examples"} over `dataset_cfg`'s split.

  Args:
    config, params: the model.
    dataset_cfg: what to read; its split, lengths and batch size are used as given, it is
      read once, in order (shuffle and num_epochs are overridden), and a last partial
      batch is dropped, as in training.
    max_batches: stop after this many batches (None: the whole split).
  """
  if max_batches is not None and max_batches < 1:
    raise ValueError(f"max_batches must be >= 1 or None, got {max_batches}.")
  once = dataclasses.replace(dataset_cfg, shuffle=False, num_epochs=1)
  totals = np.zeros(3, np.float64)
  examples = 0
  for index, batch in enumerate(BatchIterator(once, shard_id=0, num_shards=1)):
    if max_batches is not None and index >= max_batches:
      break
    totals += np.asarray(jax.device_get(_batch_sums(config, params, batch)), np.float64)
    examples += len(batch["decoder_target_tokens"])
  if totals[2] == 0:
    raise ValueError(
        f"{dataset_cfg.mixture_or_task_name!r} split {dataset_cfg.split!r} gave no full "
        f"batch of {dataset_cfg.batch_size} examples: lower the batch size.")
  return {"loss": float(totals[0] / totals[2]), "accuracy": float(totals[1] / totals[2]),
          "tokens": int(totals[2]), "examples": examples}
