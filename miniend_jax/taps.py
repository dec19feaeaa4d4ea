"""Layer-mapping hooks ("taps"): name the internal sites of a T5 that an objective reads.

A `Tap` names one site: a stack ("encoder" or "decoder"), a layer index (negative counts
from the top, as in Python) and a kind. The model `sow`s exactly the requested sites into
the "intermediates" collection and nothing else; `collect` reads them back keyed by Tap.

    taps = [Tap("decoder", -1, "self_attention_q"), Tap("decoder", -1, "logits")]
    logits, state = model.apply(params, ..., taps=taps, mutable=["intermediates"])
    sites = collect(state["intermediates"], taps, config)   # {Tap: array}

Shapes: q/k/v taps are projections before the head split, [batch, length, heads*head_dim];
"*_probs" are attention probabilities [batch, heads, query_length, key_length]; "hidden"
is a block's output [batch, length, emb_dim]; "logits" are [batch, length, vocab] float32;
"output_layer" is the same logits left factored, an `OutputLayer(hidden, kernel)` with
logits = hidden @ kernel, so that a loss can compute them a few positions at a time and
never hold the whole [batch, length, vocab] tensor (the logit losses read this site).
Cross-attention k/v are the encoder output projected by that decoder layer's weights,
[batch, encoder_length, heads*head_dim].
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import jax
from flax import struct

from miniend_jax.errors import MiniendError

if TYPE_CHECKING:  # annotations only: miniend_jax.model imports this module
  from miniend_jax.model.config import T5Config

ATTENTION_KINDS = ("q", "k", "v", "probs")
SELF_ATTENTION_KINDS = tuple(f"self_attention_{k}" for k in ATTENTION_KINDS)
CROSS_ATTENTION_KINDS = tuple(f"cross_attention_{k}" for k in ATTENTION_KINDS)
KINDS_BY_STACK = {
    "encoder": SELF_ATTENTION_KINDS + ("hidden",),
    "decoder": SELF_ATTENTION_KINDS + CROSS_ATTENTION_KINDS + ("hidden", "logits",
                                                               "output_layer"),
}
# Sites of the decoder's top, not of a layer: their layer index is always -1.
OUTPUT_KINDS = ("logits", "output_layer")
# Module names, as in t5x's parameter tree, of the attention a kind reads.
ATTENTION_MODULE = {
    ("encoder", "self_attention"): "attention",
    ("decoder", "self_attention"): "self_attention",
    ("decoder", "cross_attention"): "encoder_decoder_attention",
}
INTERMEDIATES = "intermediates"


class TapError(MiniendError, ValueError):
  """A tap names a site the model does not have."""


@struct.dataclass
class OutputLayer:
  """The output layer left factored: logits = hidden @ kernel, float32.

  hidden: [batch, length, emb_dim], the decoder's final (normed) states that enter the
  output layer; kernel: [emb_dim, vocab] (for a tied output layer, the embedding
  transposed and scaled by emb_dim ** -0.5). Gradients flow to both.
  """

  hidden: jax.Array
  kernel: jax.Array

  def logits(self) -> jax.Array:
    return self.hidden @ self.kernel


@dataclasses.dataclass(frozen=True, order=True)
class Tap:
  """One site of a T5: (stack, layer, kind). `layer` is ignored for "logits" and
  "output_layer"."""

  stack: str
  layer: int
  kind: str

  def __post_init__(self):
    if self.stack not in KINDS_BY_STACK:
      raise TapError(f"Tap stack must be 'encoder' or 'decoder', got {self.stack!r}.")
    kinds = KINDS_BY_STACK[self.stack]
    if self.kind not in kinds:
      close = difflib.get_close_matches(self.kind, kinds, n=1)
      hint = f" Did you mean {close[0]!r}?" if close else ""
      raise TapError(
          f"Tap kind {self.kind!r} does not exist in the {self.stack}.{hint} "
          f"Kinds there: {', '.join(kinds)}.")
    if not isinstance(self.layer, int) or isinstance(self.layer, bool):
      raise TapError(f"Tap layer must be an integer, got {self.layer!r}.")
    if self.kind in OUTPUT_KINDS and self.layer != -1:
      object.__setattr__(self, "layer", -1)

  @classmethod
  def parse(cls, text: str) -> Tap:
    """Parse "decoder:-1:self_attention_q" (the form used in gin files and logs)."""
    parts = text.split(":")
    if len(parts) != 3:
      raise TapError(f"A tap is written 'stack:layer:kind', got {text!r}.")
    stack, layer, kind = parts
    try:
      layer_index = int(layer)
    except ValueError:
      raise TapError(f"Tap {text!r}: layer {layer!r} is not an integer.") from None
    return cls(stack, layer_index, kind)

  def __str__(self) -> str:
    return f"{self.stack}:{self.layer}:{self.kind}"

  def resolve(self, config: T5Config) -> Tap:
    """This tap with a non-negative layer index, checked against `config`'s depth."""
    if self.kind in OUTPUT_KINDS:
      return self
    depth = (config.num_encoder_layers if self.stack == "encoder"
             else config.num_decoder_layers)
    if not -depth <= self.layer < depth:
      raise TapError(
          f"Tap {self} is out of range: the {self.stack} has {depth} layers, so the layer "
          f"index must be in [{-depth}, {depth - 1}].")
    return dataclasses.replace(self, layer=self.layer % depth)

  def path(self) -> tuple[str, ...]:
    """Where the model sows this (resolved) tap inside the "intermediates" collection."""
    if self.kind in OUTPUT_KINDS:
      return ("decoder", self.kind)
    layer = f"layers_{self.layer}"
    if self.kind == "hidden":
      return (self.stack, layer, "hidden")
    attention, _, site = self.kind.rpartition("_")
    return (self.stack, layer, ATTENTION_MODULE[(self.stack, attention)], site)


@dataclasses.dataclass(frozen=True)
class TapPlan:
  """A resolved, hashable set of taps that the model's modules consult while tracing."""

  taps: frozenset[Tap] = frozenset()

  @classmethod
  def build(cls, taps: Iterable[Tap | str] | TapPlan | None, config: T5Config) -> TapPlan:
    if isinstance(taps, TapPlan):
      return taps
    parsed = [Tap.parse(t) if isinstance(t, str) else t for t in (taps or ())]
    return cls(frozenset(t.resolve(config) for t in parsed))

  def kinds(self, stack: str, layer: int) -> frozenset[str]:
    """The tap kinds requested at one layer (attention kinds and "hidden")."""
    return frozenset(t.kind for t in self.taps if t.stack == stack and t.layer == layer
                     and t.kind not in OUTPUT_KINDS)

  def attention_sites(self, stack: str, layer: int, attention: str) -> frozenset[str]:
    """Of "q", "k", "v", "probs": those requested for one attention module."""
    prefix = f"{attention}_"
    return frozenset(kind[len(prefix):] for kind in self.kinds(stack, layer)
                     if kind.startswith(prefix))

  def wants(self, stack: str, layer: int, kind: str) -> bool:
    return kind in self.kinds(stack, layer)

  @property
  def wants_logits(self) -> bool:
    return any(t.kind == "logits" for t in self.taps)

  @property
  def wants_output_layer(self) -> bool:
    return any(t.kind == "output_layer" for t in self.taps)


def collect(intermediates: Mapping[str, Any], taps: Iterable[Tap | str],
            config: T5Config) -> dict[Tap, Any]:
  """Read requested taps back from an "intermediates" collection, keyed by the given Tap."""
  result = {}
  for tap in taps:
    tap_obj = Tap.parse(tap) if isinstance(tap, str) else tap
    node: Any = intermediates
    path = tap_obj.resolve(config).path()
    for key in path:
      if not isinstance(node, Mapping) or key not in node:
        raise TapError(
            f"Tap {tap_obj} was not recorded: pass it in taps= when applying the model "
            f"and apply with mutable=['{INTERMEDIATES}'].")
      node = node[key]
    # `sow` stores a tuple of every value sown under the name; one forward pass sows once.
    result[tap] = node[-1] if isinstance(node, tuple) else node
  return result
