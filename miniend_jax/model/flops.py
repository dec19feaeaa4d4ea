"""Analytic FLOPs of the T5 forward pass: what the model computes, counted by hand.

Only matrix multiplications are counted (2 FLOPs per multiply-add), as in the usual
"6 x parameters x tokens" accounting and the MiniEnD paper's GFLOPs column: projections,
MLPs, the output layer, and the attention products Q.K^T and P.V computed densely (a
causal mask does not halve them, since the model computes them in full). Norms,
softmaxes, activations and the relative position bias are left out; they are a few
percent of the total for real sizes.

    forward_flops(config, inputs_length=512, targets_length=114)   # one example
"""

from __future__ import annotations

import dataclasses

from miniend_jax.model.config import T5Config


@dataclasses.dataclass(frozen=True)
class ForwardFlops:
  """Forward-pass FLOPs of one example, by part of the model."""

  encoder: int
  decoder: int
  logits: int
  inputs_length: int
  targets_length: int

  @property
  def total(self) -> int:
    return self.encoder + self.decoder + self.logits

  @property
  def per_token(self) -> float:
    """FLOPs per token of the example (encoder inputs and decoder targets together)."""
    return self.total / (self.inputs_length + self.targets_length)


def _mlp(config: T5Config) -> int:
  """Per token: len(mlp_activations) input matrices (wi or wi_0, wi_1) and wo."""
  return 2 * (len(config.mlp_activations) + 1) * config.emb_dim * config.mlp_dim


def forward_flops(config: T5Config, *, inputs_length: int, targets_length: int,
                  decoder_layers: int | None = None, with_logits: bool = True) -> ForwardFlops:
  """FLOPs of one forward pass over an example of these lengths.

  Args:
    config: the architecture.
    inputs_length, targets_length: encoder and decoder lengths (TASK_FEATURE_LENGTHS).
    decoder_layers: count only the first N decoder layers (a teacher whose deepest tap is
      below the top); default all of them.
    with_logits: count the output layer (a teacher without a logit term skips it).
  """
  if inputs_length < 1 or targets_length < 1:
    raise ValueError(f"lengths must be positive, got inputs {inputs_length}, targets "
                     f"{targets_length}.")
  e, j = config.emb_dim, config.joined_kv_dim
  li, lt = inputs_length, targets_length
  layers = config.num_decoder_layers if decoder_layers is None else decoder_layers
  projection = 2 * e * j  # one of query, key, value or out, per token
  encoder_layer = li * (4 * projection + 2 * 2 * li * j + _mlp(config))
  decoder_layer = (lt * (4 * projection + 2 * 2 * lt * j)          # self-attention
                   + lt * 2 * projection + li * 2 * projection      # cross q, out; k, v
                   + lt * 2 * 2 * li * j                            # cross Q.K^T, P.V
                   + lt * _mlp(config))
  return ForwardFlops(encoder=config.num_encoder_layers * encoder_layer,
                      decoder=layers * decoder_layer,
                      logits=2 * lt * e * config.vocab_size if with_logits else 0,
                      inputs_length=li, targets_length=lt)


def training_flops(config: T5Config, *, inputs_length: int, targets_length: int) -> int:
  """FLOPs of one training example: forward + backward (twice the forward: gradients with
  respect to activations and to weights) = 3 x forward."""
  return 3 * forward_flops(config, inputs_length=inputs_length,
                           targets_length=targets_length).total
