"""Objectives: every gin preset against the PyTorch reference on Hugging Face T5 models."""

import glob
import os

import gin
import jax
import numpy as np
import pytest
import torch

from miniend_jax.convert import hf
from miniend_jax.distill import forward, interpolation, objectives
from miniend_jax.distill.objectives import OUTPUT_LAYER
from miniend_jax import gin_cli
from miniend_jax.taps import Tap
from tests.hf_t5 import write_random_hf_t5
from tools import torch_reference

PRESET_DIR = os.path.join(gin_cli.PACKAGE_GIN_DIR, "objectives")
PAPER_PRESETS = ("scratch", "mlmkd", "minilm", "implicit", "miniend_d", "miniend_d_nologit",
                 "miniend_e", "miniend_e_nologit")
ALL_PRESETS = sorted(os.path.basename(f)[:-4] for f in glob.glob(f"{PRESET_DIR}/*.gin"))
VOCAB = 80
# The tiny models' attention widths are 32 (teacher) and 16 (student): bound in tests.
TEST_BINDINGS = ["RELATION_HEADS = 4"]


def write_random_t5(directory, *, seed, tied, **config_kwargs):
  return write_random_hf_t5(directory, seed=seed, vocab_size=VOCAB,
                            relative_attention_num_buckets=8,
                            relative_attention_max_distance=20, tie_word_embeddings=tied,
                            **config_kwargs)


def _batch():
  rng = np.random.default_rng(0)
  inputs = rng.integers(2, VOCAB, (3, 9))
  targets = rng.integers(2, VOCAB, (3, 6))
  for row, (input_length, target_length) in enumerate([(9, 6), (5, 3), (7, 5)]):
    inputs[row, input_length:] = 0
    inputs[row, input_length - 1] = 1
    targets[row, target_length:] = 0
    targets[row, target_length - 1] = 1
  decoder_inputs = np.concatenate([np.zeros((3, 1), np.int64), targets[:, :-1]], axis=1)
  return {"encoder_input_tokens": inputs, "decoder_input_tokens": decoder_inputs,
          "decoder_target_tokens": targets}


def _all_taps(config_layers=-1):
  kinds = [f"{a}_attention_{x}" for a in ("self", "cross") for x in "qkv"] + ["hidden"]
  taps = [Tap("decoder", config_layers, k) for k in kinds] + [Tap("decoder", -1, "logits"),
                                                              OUTPUT_LAYER]
  taps += [Tap("encoder", config_layers, k) for k in ("self_attention_q", "self_attention_k",
                                                      "self_attention_v", "hidden")]
  return tuple(taps)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  """Teacher (T5 1.1, untied, 3+2 layers), student (T5 1.0, tied, narrower, 2+1 layers)
  and an assistant (student-sized), each as HF model, our config and our params."""
  root = tmp_path_factory.mktemp("hf")
  common = dict(num_heads=4)
  specs = {
      "teacher": dict(seed=0, tied=False, d_model=32, d_kv=8, d_ff=48, num_layers=3,
                      num_decoder_layers=2, feed_forward_proj="gated-gelu", **common),
      "student": dict(seed=1, tied=True, d_model=24, d_kv=4, d_ff=32, num_layers=2,
                      num_decoder_layers=1, feed_forward_proj="relu", **common),
      "assistant": dict(seed=2, tied=True, d_model=24, d_kv=4, d_ff=32, num_layers=2,
                        num_decoder_layers=1, feed_forward_proj="relu", **common),
  }
  result = {}
  batch = _batch()
  for name, spec in specs.items():
    torch_model = write_random_t5(str(root / name), **spec)
    config, params = hf.load(str(root / name))
    sites = jax.jit(forward.tapped_forward, static_argnums=(0, 3))(
        config, params, batch, _all_taps())
    result[name] = (torch_model, config, params, sites)
  return result


def build(preset, *extra):
  gin.clear_config()
  gin.add_config_file_search_path(gin_cli.PACKAGE_GIN_DIR)   # for an objective's includes
  gin.parse_config_file(os.path.join(PRESET_DIR, f"{preset}.gin"))
  gin.parse_config(["from __gin__ import dynamic_registration",
                    "from miniend_jax.distill import objectives",
                    "from miniend_jax.distill import interpolation", *TEST_BINDINGS, *extra])
  try:
    return gin.get_configurable(objectives.Objective)()
  finally:
    gin.clear_config()


def _torch_batch():
  return {k: torch.tensor(v) for k, v in _batch().items()}


@pytest.mark.parametrize("preset", ALL_PRESETS)
def test_preset_matches_pytorch_reference(models, preset):
  teacher_torch, teacher_config, _, teacher_sites = models["teacher"]
  student_torch, student_config, _, student_sites = models["student"]
  assistant_torch, assistant_config, _, assistant_sites = models["assistant"]
  objective = build(preset)
  objective.check(teacher_config, student_config, assistant_config)
  params = objective.init_params(jax.random.key(3), teacher_config, student_config)
  step = 2500
  total, terms = objective(teacher_sites, student_sites, _batch(), params=params, step=step,
                           assistant_sites=assistant_sites)
  spec = torch_reference.spec_from_objective(objective, params, step=step)
  with torch.no_grad():
    ref_total, ref_terms = torch_reference.objective_loss(
        teacher_torch, student_torch, _torch_batch(), spec, assistant=assistant_torch)
  assert set(terms) == set(ref_terms)
  for name, value in terms.items():
    assert float(value) > 1e-4, name  # random models differ: every term is non-trivial
    np.testing.assert_allclose(value, ref_terms[name].item(), rtol=1e-4, err_msg=name)
  np.testing.assert_allclose(total, ref_total.item(), rtol=1e-4)


def test_blend_with_assistant_matches_pytorch_reference(models):
  objective = build("miniend_d_interpolated", 'interpolation.TargetBlend.partner = "assistant"',
                    'interpolation.BlendSchedule.shape = "cosine"')
  assert objective.uses_assistant
  teacher_torch, teacher_config, _, teacher_sites = models["teacher"]
  student_torch, student_config, _, student_sites = models["student"]
  assistant_torch, assistant_config, _, assistant_sites = models["assistant"]
  assert objective.assistant_taps(assistant_config) == (OUTPUT_LAYER,)
  _, terms = objective(teacher_sites, student_sites, _batch(), step=3000,
                       assistant_sites=assistant_sites)
  spec = torch_reference.spec_from_objective(objective, step=3000)
  assert abs(spec[0]["blend"]["teacher_fraction"] - 0.5 * (1 - np.cos(np.pi * 0.3))) < 1e-6
  with torch.no_grad():
    _, ref_terms = torch_reference.objective_loss(
        teacher_torch, student_torch, _torch_batch(), spec, assistant=assistant_torch)
  np.testing.assert_allclose(terms["logit_kl"], ref_terms["logit_kl"].item(), rtol=1e-4)


@pytest.mark.parametrize("preset", [p for p in ALL_PRESETS if p != "scratch"])
def test_teacher_as_its_own_student_gives_zero(models, preset):
  _, teacher_config, _, teacher_sites = models["teacher"]
  objective = build(preset)
  objective.check(teacher_config, teacher_config, teacher_config)   # the teacher assists too
  params = objective.init_params(jax.random.key(0), teacher_config, teacher_config)
  total, terms = objective(teacher_sites, teacher_sites, _batch(), params=params, step=10**6,
                           assistant_sites=teacher_sites)
  for name, value in terms.items():
    assert abs(float(value)) < 1e-6, name
  assert abs(float(total)) < 1e-6


PRESET_TERMS = {
    "scratch": [("cross_entropy", objectives.CrossEntropy)],
    "mlmkd": [("logit_kl", objectives.LogitKL)],
    "minilm": [("decoder_self_relations", objectives.AttentionRelations)],
    "implicit": [("logit_kl", objectives.LogitKL),
                 ("decoder_self_relations", objectives.AttentionRelations)],
    "miniend_d": [("logit_kl", objectives.LogitKL),
                  ("decoder_self_relations", objectives.AttentionRelations),
                  ("cross_relations", objectives.AttentionRelations)],
    "miniend_d_nologit": [("decoder_self_relations", objectives.AttentionRelations),
                          ("cross_relations", objectives.AttentionRelations)],
    "miniend_e": [("logit_kl", objectives.LogitKL),
                  ("decoder_self_relations", objectives.AttentionRelations),
                  ("encoder_self_relations", objectives.AttentionRelations)],
    "miniend_e_nologit": [("decoder_self_relations", objectives.AttentionRelations),
                          ("encoder_self_relations", objectives.AttentionRelations)],
}


@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_gin_preset_builds_the_paper_objective(preset):
  gin.clear_config()
  gin.add_config_file_search_path(gin_cli.PACKAGE_GIN_DIR)   # for an objective's includes
  gin.parse_config_file(os.path.join(PRESET_DIR, f"{preset}.gin"))
  objective = gin.get_configurable(objectives.Objective)()
  gin.clear_config()
  assert [(t.name, type(t)) for t in objective.terms] == PRESET_TERMS[preset]
  for term in objective.terms:
    assert term.weight == 1.0
    if isinstance(term, objectives.AttentionRelations):
      assert (term.num_relation_heads, term.teacher_layer, term.student_layer) == (32, -1, -1)
      expected = {"decoder_self_relations": ("decoder", "self", ("QQ", "KK", "VV")),
                  "encoder_self_relations": ("encoder", "self", ("QQ", "KK", "VV")),
                  "cross_relations": ("decoder", "cross", ("QK", "VV"))}[term.name]
      assert (term.stack, term.attention, term.pairs) == expected
    if isinstance(term, objectives.LogitKL):
      assert term.temperature == 1.0 and term.blend is None
    if isinstance(term, objectives.CrossEntropy):
      assert term.z_loss == 1e-4
  assert objective.uses_teacher == (preset != "scratch")


def test_gin_settings_reach_the_terms():
  objective = build("miniend_d", 'CROSS_PAIRS = ["QQ", "KK"]', "TEACHER_LAYER = -2",
                    "dec_self/objectives.AttentionRelations.weight = 0.5")
  cross = objective.terms[2]
  assert cross.pairs == ("QQ", "KK") and cross.teacher_layer == -2
  assert objective.terms[1].weight == 0.5 and objective.terms[1].num_relation_heads == 4
  interpolated = build("miniend_d_interpolated", "BLEND_STEPS = 50")
  assert interpolated.terms[0].blend == interpolation.TargetBlend(
      partner="student", schedule=interpolation.BlendSchedule(ramp_steps=50))


def test_objective_asks_only_for_its_taps(models):
  _, teacher_config, _, _ = models["teacher"]
  objective = build("miniend_d", "TEACHER_LAYER = 1")
  names = sorted(str(t) for t in objective.teacher_taps(teacher_config))
  assert names == ["decoder:-1:output_layer", "decoder:1:cross_attention_k",
                   "decoder:1:cross_attention_q", "decoder:1:cross_attention_v",
                   "decoder:1:self_attention_k", "decoder:1:self_attention_q",
                   "decoder:1:self_attention_v"]
  assert build("scratch").teacher_taps(teacher_config) == ()


# ----------------------------------------------------------------------------- jitted step


def test_gradients_reach_only_the_student_and_match_pytorch(models):
  teacher_torch, teacher_config, teacher_params, _ = models["teacher"]
  student_torch, student_config, student_params, _ = models["student"]
  objective = objectives.Objective([
      objectives.CrossEntropy(z_loss=1e-4), objectives.LogitKL(temperature=2.0),
      objectives.AttentionRelations(num_relation_heads=4),
      objectives.AttentionRelations(attention="cross", pairs=("QK", "VV", "QQ"),
                                    num_relation_heads=4),
      objectives.AttentionRelations(stack="encoder", num_relation_heads=4),
      objectives.HiddenMSE(stack="encoder")])
  objective_params = objective.init_params(jax.random.key(0), teacher_config, student_config)
  batch = _batch()

  @jax.jit
  def step(student_params, objective_params, teacher_params):
    def loss(student_params, objective_params, teacher_params):
      return forward.distillation_loss(
          objective, student_params, batch, student_config=student_config,
          teacher_config=teacher_config, teacher_params=teacher_params,
          objective_params=objective_params)
    return jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(
        student_params, objective_params, teacher_params)

  (total, terms), (student_grads, objective_grads, teacher_grads) = step(
      student_params, objective_params, teacher_params)
  assert all(not np.any(np.asarray(g)) for g in jax.tree.leaves(teacher_grads))
  student_norms = {"/".join(str(k.key) for k in path): float(np.linalg.norm(np.asarray(g)))
                   for path, g in jax.tree_util.tree_leaves_with_path(student_grads)}
  assert all(np.isfinite(v) for v in student_norms.values())
  # Every stack gets gradient (encoder terms, decoder terms, the output layer).
  for name in ("encoder/layers_0/attention/query/kernel", "decoder/layers_0/mlp/wo/kernel",
               "token_embedder/embedding"):
    assert student_norms[name] > 0, name
  assert np.any(np.asarray(objective_grads["encoder_hidden_mse"]["kernel"]))
  # The same value as the objective on the sites the fixture collected separately.
  expected, _ = objective(models["teacher"][3], models["student"][3], batch,
                          params=objective_params)
  np.testing.assert_allclose(total, expected, rtol=1e-5)
  assert set(terms) == {t.name for t in objective.terms}

  # Every student gradient (and the projection's) equals PyTorch autograd's.
  spec = torch_reference.spec_from_objective(objective, objective_params)
  projection = spec[-1]["projection"].requires_grad_(True)
  student_torch.zero_grad(set_to_none=True)
  try:
    torch_reference.objective_loss(teacher_torch, student_torch, _torch_batch(), spec,
                                   backward=True)
    torch_grads = {name: p.grad for name, p in student_torch.named_parameters()}
    assert all(p.grad is None for p in teacher_torch.parameters())
    flat = {tuple(k.key for k in path): np.asarray(g)
            for path, g in jax.tree_util.tree_leaves_with_path(student_grads)}
    for path, (key, transpose) in hf.parameter_map(student_config).items():
      expected = torch_grads[key].numpy()
      expected = expected.T if transpose else expected
      np.testing.assert_allclose(flat[path], expected, rtol=1e-3,
                                 atol=1e-4 * np.abs(expected).max(), err_msg=key)
    np.testing.assert_allclose(objective_grads["encoder_hidden_mse"]["kernel"],
                               projection.grad.numpy(), rtol=1e-3, atol=1e-6)
  finally:
    student_torch.zero_grad(set_to_none=True)


# ----------------------------------------------------------------------------- errors


def test_vocabulary_mismatch_with_a_logit_term_is_refused(models):
  _, teacher_config, _, _ = models["teacher"]
  _, student_config, _, _ = models["student"]
  other = student_config.replace(vocab_size=VOCAB + 8)
  with pytest.raises(objectives.ObjectiveError, match="vocab_size 80, the student 88"):
    build("mlmkd").check(teacher_config, other)
  build("miniend_d_nologit").check(teacher_config, other)  # no logits, no constraint


def test_relation_heads_that_do_not_divide_a_width_are_refused(models):
  _, teacher_config, _, _ = models["teacher"]
  _, student_config, _, _ = models["student"]
  with pytest.raises(objectives.ObjectiveError,
                     match="num_relation_heads=32 does not divide the student's attention "
                           "width 16"):
    objectives.Objective([objectives.AttentionRelations()]).check(teacher_config,
                                                                   student_config)


def test_tap_outside_the_model_is_refused(models):
  _, teacher_config, _, _ = models["teacher"]
  objective = objectives.Objective([objectives.AttentionRelations(teacher_layer=2,
                                                                  num_relation_heads=4)])
  with pytest.raises(objectives.ObjectiveError, match="decoder:2:self_attention_.*out of "
                                                      "range.*2 layers"):
    objective.teacher_taps(teacher_config)
  with pytest.raises(objectives.ObjectiveError, match="decoder_self_relations"):
    objective.check(teacher_config, teacher_config)


def test_bad_term_settings_are_refused():
  with pytest.raises(objectives.ObjectiveError, match="Unknown relation pair 'QX'"):
    objectives.AttentionRelations(pairs=("QQ", "QX"))
  with pytest.raises(objectives.ObjectiveError, match="only in the decoder"):
    objectives.AttentionRelations(stack="encoder", attention="cross")
  with pytest.raises(objectives.ObjectiveError, match="pair_weights"):
    objectives.AttentionRelations(pair_weights=(1.0,))
  with pytest.raises(objectives.ObjectiveError, match="distinct `name`"):
    objectives.Objective([objectives.LogitKL(), objectives.LogitKL(temperature=2.0)])
  with pytest.raises(objectives.ObjectiveError, match="empty"):
    objectives.Objective([])


def test_blend_without_step_is_refused(models):
  _, teacher_config, _, teacher_sites = models["teacher"]
  objective = build("miniend_d_interpolated")
  with pytest.raises(objectives.ObjectiveError, match="pass step="):
    objective(teacher_sites, teacher_sites, _batch())
