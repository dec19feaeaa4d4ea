"""Teacher-forced validation loss of a T5 on a seqio task: how well it models held-out text.

The number pretraining and distillation are judged by before any finetuning: the mean
cross-entropy per target token (and the token accuracy) on a task's validation split, e.g.
span corruption on held-out documents. Every model evaluated with the same DatasetConfig
sees the same examples (seeded preprocessing, no shuffling), so losses compare directly.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from miniend_jax.data.dataset import BatchIterator, DatasetConfig
from miniend_jax.distill.losses import cross_entropy
from miniend_jax.model.config import T5Config
from miniend_jax.model.network import Transformer


@functools.partial(jax.jit, static_argnames="config")
def _example_sums(config: T5Config, params, batch) -> jax.Array:
  """[3, batch]: each example's sum of token cross-entropies, correct tokens and counted
  tokens."""
  logits = Transformer(config).apply(
      {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
      batch["decoder_target_tokens"])  # [batch, length, vocab] float32
  targets = batch["decoder_target_tokens"]
  weights = (targets != config.pad_id).astype(jnp.float32)
  # One example at a time through the shared loss (no z-loss: the plain loss).
  mean_nll = jax.vmap(lambda l, t, w: cross_entropy(l[None], t[None], w[None])[0])(
      logits, targets, weights)
  count = jnp.sum(weights, axis=1)
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  return jnp.stack([mean_nll * count, jnp.sum(correct * weights, axis=1), count])


def validation_loss(config: T5Config, params, dataset_cfg: DatasetConfig, *,
                    max_batches: int | None = None, per_example: bool = False
                    ) -> dict[str, Any]:
  """{"loss", "accuracy", "tokens", "examples"} over `dataset_cfg`'s split; with
  `per_example`, also "example_nll" and "example_tokens": each example's summed token
  cross-entropy and token count (for intervals over examples).

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
  sums = []
  for index, batch in enumerate(BatchIterator(once, shard_id=0, num_shards=1)):
    if max_batches is not None and index >= max_batches:
      break
    sums.append(np.asarray(jax.device_get(_example_sums(config, params, batch)), np.float64))
  by_example = np.concatenate(sums, axis=1) if sums else np.zeros((3, 0))
  totals, examples = by_example.sum(axis=1), by_example.shape[1]
  if totals[2] == 0:
    raise ValueError(
        f"{dataset_cfg.mixture_or_task_name!r} split {dataset_cfg.split!r} gave no full "
        f"batch of {dataset_cfg.batch_size} examples: lower the batch size.")
  result = {"loss": float(totals[0] / totals[2]), "accuracy": float(totals[1] / totals[2]),
            "tokens": int(totals[2]), "examples": examples}
  if per_example:
    result["example_nll"] = by_example[0].tolist()
    result["example_tokens"] = by_example[2].astype(int).tolist()
  return result
