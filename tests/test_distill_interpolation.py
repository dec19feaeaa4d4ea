"""Schedules, blends, chains of docs/method.md, "Interpolated distillation" (our reading)."""

import math

import gin
import numpy as np
import pytest

from miniend_jax.distill import interpolation
from miniend_jax.model import preset


def test_linear_schedule_rises_from_zero_to_one():
  schedule = interpolation.BlendSchedule(ramp_steps=100, start_step=20)
  values = [float(schedule(step)) for step in (0, 20, 45, 70, 120, 10**6)]
  np.testing.assert_allclose(values, [0.0, 0.0, 0.25, 0.5, 1.0, 1.0], atol=1e-7)


def test_cosine_schedule_follows_half_cosine():
  schedule = interpolation.BlendSchedule(ramp_steps=10, shape="cosine")
  for step in (0, 3, 5, 10, 11):
    expected = 0.5 * (1 - math.cos(math.pi * min(step / 10, 1.0)))
    np.testing.assert_allclose(float(schedule(step)), expected, atol=1e-6)


def test_bad_blend_settings_are_refused():
  with pytest.raises(interpolation.InterpolationError, match="shape must be one of"):
    interpolation.BlendSchedule(shape="exponential")
  with pytest.raises(interpolation.InterpolationError, match="ramp_steps"):
    interpolation.BlendSchedule(ramp_steps=0)
  with pytest.raises(interpolation.InterpolationError, match="partner must be one of"):
    interpolation.TargetBlend(partner="teacher")


def test_teacher_assistant_chain_stages():
  chain = interpolation.TeacherAssistantChain(models=("t5_3b", "t5_base", "student"),
                                              steps=(100, 50))
  assert chain.stages() == (interpolation.Stage("t5_3b", "t5_base", 0, 100),
                            interpolation.Stage("t5_base", "student", 100, 50))
  assert chain.stage_at(99).student == "t5_base" and chain.stage_at(100).teacher == "t5_base"
  with pytest.raises(interpolation.InterpolationError, match="past the chain"):
    chain.stage_at(150)
  with pytest.raises(interpolation.InterpolationError, match="one entry per stage"):
    interpolation.TeacherAssistantChain(models=("a", "b", "c"), steps=(1,))
  tiny = preset("tiny")
  chain.check_configs([tiny, tiny, tiny])
  with pytest.raises(interpolation.InterpolationError, match="'student' has vocab_size 64"):
    chain.check_configs([tiny, tiny, tiny.replace(vocab_size=64)])


def test_chain_and_blend_from_gin():
  gin.clear_config()
  gin.parse_config("""
      from __gin__ import dynamic_registration
      from miniend_jax.distill import interpolation
      interpolation.TeacherAssistantChain.models = ["teacher", "assistant", "student"]
      interpolation.TeacherAssistantChain.steps = [30, 20]
      interpolation.BlendSchedule.ramp_steps = 7
      interpolation.BlendSchedule.shape = "cosine"
      interpolation.TargetBlend.partner = "assistant"
      interpolation.TargetBlend.schedule = @interpolation.BlendSchedule()
  """)
  try:
    chain = gin.get_configurable(interpolation.TeacherAssistantChain)()
    blend = gin.get_configurable(interpolation.TargetBlend)()
  finally:
    gin.clear_config()
  assert chain.steps == (30, 20) and chain.models[1] == "assistant"
  assert blend == interpolation.TargetBlend(
      partner="assistant", schedule=interpolation.BlendSchedule(ramp_steps=7, shape="cosine"))
