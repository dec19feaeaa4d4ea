"""PyTorch reference of the miniend_jax.distill objectives, for Hugging Face T5 models.

An independent implementation (PyTorch, transformers' T5ForConditionalGeneration) of the
same losses, used by the tests as an oracle and by benchmarks as the baseline to time
our JAX step against. Sites are captured with forward hooks on the q/k/v Linear modules
(and blocks, for hidden states) of exactly the layers the terms name.

Terms are plain dicts (`spec_from_objective` turns a miniend_jax Objective into them):

  {"kind": "cross_entropy", "name", "weight", "z_loss"}
  {"kind": "logit_kl", "name", "weight", "temperature",
   "blend": None or {"partner": "student" | "assistant", "teacher_fraction": float}}
  {"kind": "relations", "name", "weight", "stack", "attention", "pairs", "pair_weights",
   "num_relation_heads", "teacher_layer", "student_layer", "causal"}
  {"kind": "hidden_mse", "name", "weight", "stack", "teacher_layer", "student_layer",
   "projection": None or a [student_width, teacher_width] tensor}

    total, terms = objective_loss(teacher, student, batch, spec, backward=True)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

Site = tuple[str, int, str]  # (stack, layer >= 0, kind), kind as in miniend_jax.taps
LOGITS: Site = ("decoder", -1, "logits")


# ----------------------------------------------------------------------------- losses


def relation_kl(teacher_a, teacher_b, student_a, student_b, *, num_relation_heads: int,
                key_mask, query_mask=None, causal: bool = False):
  """MiniLMv2 relation KL(teacher || student), mean over relation heads and valid rows."""

  def log_relations(a, b):
    batch, q_length, width = a.shape
    head = width // num_relation_heads
    a = a.float().reshape(batch, q_length, num_relation_heads, head).transpose(1, 2)
    b = b.float().reshape(batch, b.shape[1], num_relation_heads, head).transpose(1, 2)
    scores = torch.matmul(a, b.transpose(-1, -2)) / math.sqrt(head)  # [b, r, q, k]
    return torch.log_softmax(scores.masked_fill(~allowed[:, None], -1e9), dim=-1)

  q_length, k_length = teacher_a.shape[1], teacher_b.shape[1]
  allowed = key_mask.bool()[:, None, :].expand(-1, q_length, -1)
  if causal:
    allowed = allowed & torch.ones(q_length, k_length, dtype=torch.bool,
                                   device=allowed.device).tril()[None]
  with torch.no_grad():
    teacher_log = log_relations(teacher_a, teacher_b)
  student_log = log_relations(student_a, student_b)
  pointwise = torch.where(allowed[:, None], teacher_log.exp() * (teacher_log - student_log),
                          torch.zeros((), device=allowed.device))
  row_kl = pointwise.sum(-1)  # [batch, heads, q]
  rows = allowed.any(-1)
  if query_mask is not None:
    rows = rows & query_mask.bool()
  rows = rows.float()
  return (row_kl * rows[:, None]).sum() / (rows.sum() * num_relation_heads).clamp(min=1.0)


def logit_kl(teacher_logits, student_logits, weights, *, temperature: float = 1.0,
             partner_logits=None, teacher_fraction: float = 1.0):
  """tau^2 * weighted mean KL(p_target || softmax(z_S / tau)); p_target is the teacher's
  softmax, or (1 - a) * partner + a * teacher when partner_logits are given."""
  with torch.no_grad():
    log_p = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if partner_logits is not None:
      log_partner = torch.log_softmax(partner_logits.float() / temperature, dim=-1)
      log_p = torch.logaddexp(log_p + math.log(max(teacher_fraction, 1e-30)),
                              log_partner + math.log(max(1.0 - teacher_fraction, 1e-30)))
  log_q = torch.log_softmax(student_logits.float() / temperature, dim=-1)
  kl = F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(-1)
  weights = weights.float()
  return temperature ** 2 * (kl * weights).sum() / weights.sum().clamp(min=1e-30)


def cross_entropy(logits, targets, weights, *, z_loss: float = 0.0):
  logits = logits.float()
  log_z = torch.logsumexp(logits, dim=-1)
  nll = log_z - logits.gather(-1, targets.long()[..., None])[..., 0]
  weights = weights.float()
  return ((nll + z_loss * log_z ** 2) * weights).sum() / weights.sum().clamp(min=1e-30)


def hidden_mse(teacher_hidden, student_hidden, weights, projection=None):
  student = student_hidden.float()
  if projection is not None:
    student = student @ projection.float()
  squared = (student - teacher_hidden.detach().float()).pow(2).mean(-1)
  weights = weights.float()
  return (squared * weights).sum() / weights.sum().clamp(min=1e-30)


# ----------------------------------------------------------------------------- taps


def _resolve(model, site: Site) -> Site:
  stack, layer, kind = site
  if kind == "logits":
    return LOGITS
  depth = len(getattr(model, stack).block)
  if not -depth <= layer < depth:
    raise ValueError(f"Layer {layer} is outside the {stack}'s {depth} layers.")
  return stack, layer % depth, kind


def _module(model, site: Site) -> torch.nn.Module:
  stack, layer, kind = site
  block = getattr(model, stack).block[layer]
  if kind == "hidden":
    return block
  attention, _, letter = kind.rpartition("_")
  if attention == "cross_attention":
    return getattr(block.layer[1].EncDecAttention, letter)
  return getattr(block.layer[0].SelfAttention, letter)


@contextlib.contextmanager
def recording(model, sites: Iterable[Site]):
  """Record the outputs of the modules behind `sites` into the yielded dict."""
  records: dict[Site, torch.Tensor] = {}
  handles = []
  for site in {_resolve(model, s) for s in sites if s[2] != "logits"}:

    def hook(module, inputs, output, site=site):
      records[site] = output[0] if isinstance(output, tuple) else output

    handles.append(_module(model, site).register_forward_hook(hook))
  try:
    yield records
  finally:
    for handle in handles:
      handle.remove()


def tapped_forward(model, batch: Mapping[str, torch.Tensor], sites: Iterable[Site]
                   ) -> dict[Site, torch.Tensor]:
  """Run a HF T5 on a t5x-style batch; -> {resolved site: tensor} (logits included)."""
  sites = list(sites)
  with recording(model, sites) as records:
    logits = model(input_ids=batch["encoder_input_tokens"],
                   attention_mask=(batch["encoder_input_tokens"] != 0).long(),
                   decoder_input_ids=batch["decoder_input_tokens"],
                   decoder_attention_mask=(batch["decoder_target_tokens"] != 0).long(),
                   use_cache=False).logits
  records = dict(records)
  records[LOGITS] = logits
  return records


# ----------------------------------------------------------------------------- objective


def _term_sites(term: Mapping[str, Any], role: str) -> list[Site]:
  kind = term["kind"]
  if kind == "cross_entropy":
    return [LOGITS] if role == "student" else []
  if kind == "logit_kl":
    blend = term.get("blend")
    if role == "assistant":
      return [LOGITS] if blend and blend["partner"] == "assistant" else []
    return [LOGITS]
  if role == "assistant":
    return []
  layer = term[f"{role}_layer"]
  if kind == "hidden_mse":
    return [(term["stack"], layer, "hidden")]
  letters = sorted({letter for pair in term["pairs"] for letter in pair})
  return [(term["stack"], layer, f"{term['attention']}_attention_{letter.lower()}")
          for letter in letters]


def objective_loss(teacher, student, batch: Mapping[str, torch.Tensor],
                   spec: Sequence[Mapping[str, Any]], *, backward: bool = False,
                   assistant=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
  """The objective `spec` for HF T5 models: -> (total, {term name: value}).

  The teacher (and assistant) run in eval mode under no_grad; the student runs in
  whatever mode the caller set. With `backward=True` the total is back-propagated into
  the student's .grad (and into projections that require grad).
  """
  needs_teacher = any(t["kind"] != "cross_entropy" for t in spec)
  teacher_sites: dict[Site, torch.Tensor] = {}
  if needs_teacher:
    teacher.eval()
    with torch.no_grad():
      teacher_sites = tapped_forward(
          teacher, batch, [s for t in spec for s in _term_sites(t, "teacher")])
  assistant_sites: dict[Site, torch.Tensor] = {}
  if any(_term_sites(t, "assistant") for t in spec):
    assistant.eval()
    with torch.no_grad():
      assistant_sites = tapped_forward(assistant, batch, [LOGITS])
  student_sites = tapped_forward(student, batch,
                                 [s for t in spec for s in _term_sites(t, "student")])

  targets = batch["decoder_target_tokens"]
  masks = {"encoder": batch["encoder_input_tokens"] != 0, "decoder": targets != 0}
  weights = batch.get("decoder_loss_weights")
  weights = masks["decoder"].float() if weights is None else weights.float()

  def get(sites, model, stack, layer, kind):
    return sites[_resolve(model, (stack, layer, kind))]

  values: dict[str, torch.Tensor] = {}
  total = torch.zeros((), device=targets.device)
  for term in spec:
    kind = term["kind"]
    if kind == "cross_entropy":
      value = cross_entropy(student_sites[LOGITS], targets, weights, z_loss=term["z_loss"])
    elif kind == "logit_kl":
      blend = term.get("blend")
      partner, fraction = None, 1.0
      if blend is not None:
        fraction = blend["teacher_fraction"]
        partner = (assistant_sites[LOGITS] if blend["partner"] == "assistant"
                   else student_sites[LOGITS].detach())
      value = logit_kl(teacher_sites[LOGITS], student_sites[LOGITS], weights,
                       temperature=term["temperature"], partner_logits=partner,
                       teacher_fraction=fraction)
    elif kind == "hidden_mse":
      value = hidden_mse(
          get(teacher_sites, teacher, term["stack"], term["teacher_layer"], "hidden"),
          get(student_sites, student, term["stack"], term["student_layer"], "hidden"),
          masks[term["stack"]].float(), term.get("projection"))
    elif kind == "relations":
      pairs = term["pairs"]
      pair_weights = term.get("pair_weights") or [1.0 / len(pairs)] * len(pairs)
      value = torch.zeros((), device=targets.device)
      for (a, b), pair_weight in zip(pairs, pair_weights):
        side = {letter: ("decoder" if term["attention"] == "cross" and letter == "Q"
                         else "encoder" if term["attention"] == "cross" else term["stack"])
                for letter in (a, b)}
        kinds = [f"{term['attention']}_attention_{letter.lower()}" for letter in (a, b)]
        value = value + pair_weight * relation_kl(
            *(get(teacher_sites, teacher, term["stack"], term["teacher_layer"], k)
              for k in kinds),
            *(get(student_sites, student, term["stack"], term["student_layer"], k)
              for k in kinds),
            num_relation_heads=term["num_relation_heads"], key_mask=masks[side[b]],
            query_mask=masks[side[a]],
            causal=term["causal"] and side[a] == side[b] == "decoder")
    else:
      raise ValueError(f"Unknown term kind {kind!r}.")
    values[term["name"]] = value
    total = total + term["weight"] * value
  if backward:
    total.backward()
  return total, values


def spec_from_objective(objective, objective_params=None, *, step=None) -> list[dict]:
  """The dict spec of a miniend_jax.distill Objective (its settings only, no code)."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  spec = []
  for term in objective.terms:
    kind = type(term).__name__
    entry: dict[str, Any] = {"name": term.name, "weight": float(term.weight)}
    if kind == "CrossEntropy":
      entry.update(kind="cross_entropy", z_loss=term.z_loss)
    elif kind == "LogitKL":
      entry.update(kind="logit_kl", temperature=term.temperature, blend=None)
      if term.blend is not None:
        entry["blend"] = {"partner": term.blend.partner,
                          "teacher_fraction": float(term.blend.schedule(step))}
    elif kind == "AttentionRelations":
      entry.update(kind="relations", stack=term.stack, attention=term.attention,
                   pairs=list(term.pairs), pair_weights=term.pair_weights,
                   num_relation_heads=term.num_relation_heads,
                   teacher_layer=term.teacher_layer, student_layer=term.student_layer,
                   causal=term.causal)
    elif kind == "HiddenMSE":
      projection = None
      if term.project:
        projection = torch.tensor(np.asarray(objective_params[term.name]["kernel"]))
      entry.update(kind="hidden_mse", stack=term.stack, teacher_layer=term.teacher_layer,
                   student_layer=term.student_layer, projection=projection)
    else:
      raise ValueError(f"No reference for term type {kind}.")
    spec.append(entry)
  return spec
