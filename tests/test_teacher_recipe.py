"""The quickstart's teacher recipe keeps attention alive; the recipe it replaced did not.

The regression test of the teacher's finetuning collapse (docs/method.md, "Attention
collapse"): a model of the quickstart teacher's width (128, heads of 32), pretrained by the
quickstart's own teacher stage, keeps every attention layer's normalized entropy high,
while the same model under the old recipe (runs/distill.gin's AdamW at the students' peak
rate 3e-3) heads for collapse within the same 150 steps (entropies at a third of the new
recipe's, input-independent encoder outputs), its queries grown several times their
initial scale. Both runs log attention health at every checkpoint (trainer.py).
"""

import dataclasses
import os

import numpy as np
import pytest

from miniend_jax.evaluation.attention_health import COLLAPSE_THRESHOLD
from miniend_jax.evaluation.metrics_files import read_jsonl
from miniend_jax.quickstart import pipeline, sizes
from miniend_jax.quickstart.workspace import Workspace

STEPS = 150
WIDE = sizes.ModelShape(emb_dim=128, num_heads=4, head_dim=32, mlp_dim=256,
                        num_encoder_layers=1, num_decoder_layers=1)


def _normalized_entropies(record):
  return {k.split("/", 1)[1]: v for k, v in record.items()
          if k.startswith("attention_normalized_entropy/")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """(quickstart pipeline, {"t5x_recipe": final record, "adamw_3e-3": final record})."""
  size = dataclasses.replace(sizes.SIZES["miniature"], teacher=WIDE, teacher_steps=STEPS,
                             pretrain_inputs_length=64, batch_size=16)
  root = str(tmp_path_factory.mktemp("teacher_recipe"))
  workspace = Workspace(root, pipeline.run_settings(size, seed=0, finetune_teacher=False))
  run = pipeline.Pipeline(workspace, size, ["scratch"])
  run._train_vocabulary()  # pylint: disable=protected-access
  run._pretrain_teacher()  # pylint: disable=protected-access
  # The recipe the quickstart used before: the students' AdamW, cosine decay, peak 3e-3.
  run._train(  # pylint: disable=protected-access
      "old_teacher", "the old teacher recipe", ["runs/distill.gin", "objectives/scratch.gin"],
      {"TASK_FEATURE_LENGTHS": size.pretrain_lengths,
       **run._common_macros(STEPS, 0),  # pylint: disable=protected-access
       "LEARNING_RATE": 3e-3, "WARMUP_STEPS": size.warmup_steps, "LOG_PERIOD": STEPS // 4},
      {"STUDENT_CONFIG": size.teacher_config()}, run.corpus.pretraining_bindings())
  final = {name: read_jsonl(os.path.join(root, stage, "metrics.jsonl"))[-1]
           for name, stage in (("t5x_recipe", "teacher"), ("adamw_3e-3", "old_teacher"))}
  return run, final


def test_the_quickstart_teacher_keeps_every_attention_layer_alive(runs):
  _, final = runs
  entropies = _normalized_entropies(final["t5x_recipe"])
  assert len(entropies) == 3  # encoder self, decoder self, cross: one layer each
  assert min(entropies.values()) > 2 * COLLAPSE_THRESHOLD, entropies
  assert final["t5x_recipe"]["step"] == STEPS


def test_the_old_recipe_collapses_attention(runs):
  """The regression itself: the recipe the teacher had before is well on its way to
  collapse within the same steps (the 1000-step quickstart teacher ended at 0.07-0.14,
  docs/method.md), with encoder outputs that barely depend on the input."""
  _, final = runs
  old = _normalized_entropies(final["adamw_3e-3"])
  new = _normalized_entropies(final["t5x_recipe"])
  for site in ("encoder_self_attention/0", "decoder_cross_attention/0"):
    assert old[site] < 0.4 and old[site] < 0.6 * new[site], (old, new)
  assert final["adamw_3e-3"]["encoder_output_cosine"] > 0.95
  assert final["t5x_recipe"]["encoder_output_cosine"] < 0.9
  # ... and it models span corruption worse over the same steps.
  assert final["adamw_3e-3"]["cross_ent_loss"] > final["t5x_recipe"]["cross_ent_loss"]


def test_adamw_grows_the_small_query_kernel_adafactor_keeps_its_scale(runs):
  """The mechanism: AdamW's step has about the same size for every weight, so the query
  kernel, initialised head_dim ** 0.5 times smaller than the key kernel, grows by a large
  part of its scale, and the attention logits q.k with it (the spectral norm of
  W_q W_k^T); Adafactor scales each step by its weight's RMS."""
  from miniend_jax.convert.checkpoint_loading import load_model
  run, _ = runs
  init_scale = (WIDE.emb_dim * WIDE.head_dim) ** -0.5  # t5x's query init std
  query_rms, logit_scale = {}, {}
  for stage in ("teacher", "old_teacher"):
    _, params = load_model(run.run_dir(stage))
    attention = params["encoder"]["layers_0"]["attention"]
    query = np.asarray(attention["query"]["kernel"])
    key = np.asarray(attention["key"]["kernel"])
    query_rms[stage] = float(np.sqrt(np.mean(query ** 2)))
    logit_scale[stage] = float(np.linalg.norm(query @ key.T, 2))
  assert query_rms["teacher"] < 1.1 * init_scale, query_rms
  assert query_rms["old_teacher"] > 1.5 * init_scale, query_rms
  assert logit_scale["old_teacher"] > 3 * logit_scale["teacher"], logit_scale
