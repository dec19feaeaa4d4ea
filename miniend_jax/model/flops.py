"""Analytic FLOPs of the T5 forward pass: what the model computes, counted by hand.

Only matrix multiplications are counted (2 FLOPs per multiply-add), as in the usual
"6 x parameters x tokens" accounting and the MiniEnD paper's GFLOPs column: projections,
MLPs, the output layer, and the attention products Q.K^T and P.V computed densely (a
causal mask does not halve them, since the model computes them in full). Norms,
softmaxes, activations and the relative position bias are left out; they are a few
percent of the total for real sizes.

With `taps`, only the work those sites depend on is counted: a frozen teacher that is read
at decoder layer 5's self-attention queries needs the decoder's layers 0-4 (and so the
whole encoder, for their cross-attention) plus one query projection, and no output layer;
the "output_layer" site needs the whole decoder but not the output layer's product (the
loss that reads it computes that, chunk by chunk: see miniend_jax.distill.flops).
This is the minimum a step can compute (XLA removes the rest; tools/bench.py checks).

    forward_flops(config, inputs_length=512, targets_length=114)   # one example
    forward_flops(config, inputs_length=512, targets_length=114,
                  taps=[Tap("encoder", -1, "hidden")])              # encoder only
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from miniend_jax.model.config import T5Config
from miniend_jax.taps import OUTPUT_KINDS, Tap


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


def _layer_parts(config: T5Config, stack: str, inputs_length: int,
                 targets_length: int) -> dict[str, int]:
  """FLOPs of each part of one layer, for one example."""
  e, j = config.emb_dim, config.joined_kv_dim
  projection = 2 * e * j  # one of query, key, value or out, per token
  length = inputs_length if stack == "encoder" else targets_length
  parts = {"self_attention_q": length * projection, "self_attention_k": length * projection,
           "self_attention_v": length * projection,
           "self_attention_scores": 2 * length * length * j,        # Q.K^T
           "self_attention_rest": 2 * length * length * j + length * projection,  # P.V, out
           "mlp": length * _mlp(config)}
  if stack == "decoder":
    parts.update({
        "cross_attention_q": targets_length * projection,
        "cross_attention_k": inputs_length * projection,
        "cross_attention_v": inputs_length * projection,
        "cross_attention_scores": 2 * targets_length * inputs_length * j,
        "cross_attention_rest": (2 * targets_length * inputs_length * j
                                 + targets_length * projection)})
  return parts


_SELF_ATTENTION = ("self_attention_q", "self_attention_k", "self_attention_v",
                   "self_attention_scores", "self_attention_rest")


def _parts_for_site(stack: str, kind: str, all_parts: Iterable[str]) -> set[str]:
  """The parts of its own layer a site depends on (lower layers aside)."""
  if kind == "hidden":
    return set(all_parts)
  attention, _, letter = kind.rpartition("_")
  parts = {kind} if letter != "probs" else {f"{attention}_q", f"{attention}_k",
                                            f"{attention}_scores"}
  if attention == "cross_attention" and ({"cross_attention_q"} & parts):
    parts |= set(_SELF_ATTENTION)  # cross-attention queries read the self-attention output
  return parts


def forward_flops(config: T5Config, *, inputs_length: int, targets_length: int,
                  taps: Iterable[Tap] | None = None) -> ForwardFlops:
  """FLOPs of one forward pass over an example of these lengths.

  Args:
    config: the architecture.
    inputs_length, targets_length: encoder and decoder lengths (TASK_FEATURE_LENGTHS).
    taps: count only what these sites need (see the module docstring); None counts the
      whole forward pass, output layer included.
  """
  if inputs_length < 1 or targets_length < 1:
    raise ValueError(f"lengths must be positive, got inputs {inputs_length}, targets "
                     f"{targets_length}.")
  depths = {"encoder": config.num_encoder_layers, "decoder": config.num_decoder_layers}
  parts = {stack: _layer_parts(config, stack, inputs_length, targets_length)
           for stack in depths}
  needed = {stack: [set() for _ in range(depth)] for stack, depth in depths.items()}
  # Layers below these indices run in full.
  full_below = {"encoder": 0, "decoder": depths["decoder"] if taps is None else 0}
  with_logits = taps is None
  for tap in () if taps is None else taps:
    if tap.kind in OUTPUT_KINDS:  # the final states; "logits" also the output layer
      with_logits = with_logits or tap.kind == "logits"
      full_below["decoder"] = depths["decoder"]
      continue
    tap = tap.resolve(config)
    needed[tap.stack][tap.layer] |= _parts_for_site(tap.stack, tap.kind,
                                                    parts[tap.stack])
    if tap.kind not in ("cross_attention_k", "cross_attention_v"):
      full_below[tap.stack] = max(full_below[tap.stack], tap.layer)
  for stack in depths:
    for layer in range(full_below[stack]):
      needed[stack][layer] = set(parts[stack])
  if any(part.startswith("cross") for layer in needed["decoder"] for part in layer):
    needed["encoder"] = [set(parts["encoder"])] * depths["encoder"]
  count = {stack: sum(parts[stack][part] for layer in needed[stack] for part in layer)
           for stack in depths}
  return ForwardFlops(
      encoder=count["encoder"], decoder=count["decoder"],
      logits=2 * targets_length * config.emb_dim * config.vocab_size if with_logits else 0,
      inputs_length=inputs_length, targets_length=targets_length)


def training_flops(config: T5Config, *, inputs_length: int, targets_length: int) -> int:
  """FLOPs of one training example: forward + backward (twice the forward: gradients with
  respect to activations and to weights) = 3 x forward."""
  return 3 * forward_flops(config, inputs_length=inputs_length,
                           targets_length=targets_length).total
