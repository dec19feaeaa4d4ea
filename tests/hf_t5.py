"""Random Hugging Face T5 models written to disk, as the independent reference in tests."""

from __future__ import annotations

import json
import os

import torch
import transformers
from safetensors.torch import save_file


def write_random_hf_t5(directory: str, *, seed: int = 0,
                       **config_kwargs) -> transformers.T5ForConditionalGeneration:
  """Build a random T5ForConditionalGeneration, write it to `directory`, return it (eval).

  Layer-norm scales are randomised too (transformers initialises them to 1, which would
  hide a mislabelled norm). Untied models are written as safetensors + config.json by hand:
  transformers 5.x's own save_pretrained records tie_word_embeddings=True for them.
  """
  config_kwargs.setdefault("dropout_rate", 0.0)
  config_kwargs.setdefault("decoder_start_token_id", 0)
  tied = config_kwargs.get("tie_word_embeddings", True)
  torch.manual_seed(seed)
  config = transformers.T5Config(**config_kwargs)
  model = transformers.T5ForConditionalGeneration(config).eval()
  with torch.no_grad():
    for name, parameter in model.named_parameters():
      if "layer_norm" in name:
        parameter.add_(0.2 * torch.randn_like(parameter))
    if not tied:
      model.lm_head.weight = torch.nn.Parameter(
          torch.randn(config.vocab_size, config.d_model) * config.d_model ** -0.5)
  os.makedirs(directory, exist_ok=True)
  if tied:
    model.save_pretrained(directory)
  else:
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
             if "embed_tokens" not in k}
    save_file(state, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    values = config.to_dict()
    values["tie_word_embeddings"] = False
    with open(os.path.join(directory, "config.json"), "w") as f:
      json.dump(values, f)
  return model
