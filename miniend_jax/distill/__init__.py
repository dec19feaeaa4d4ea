"""Distillation: losses, objectives over taps, student initialisation, interpolation."""

from miniend_jax.distill.forward import distillation_loss, tapped_forward
from miniend_jax.distill.interpolation import BlendSchedule, TargetBlend, TeacherAssistantChain
from miniend_jax.distill.losses import (blended_logit_kl, cross_entropy, hidden_mse, logit_kl,
                                        relation_kl)
from miniend_jax.distill.objectives import (AttentionRelations, CrossEntropy, HiddenMSE,
                                            LogitKL, Objective, ObjectiveError, Term)
from miniend_jax.distill.student_init import init_student, uniform_layer_map

__all__ = ["AttentionRelations", "BlendSchedule", "CrossEntropy", "HiddenMSE", "LogitKL",
           "Objective", "ObjectiveError", "TargetBlend", "TeacherAssistantChain", "Term",
           "blended_logit_kl", "cross_entropy", "distillation_loss", "hidden_mse",
           "init_student", "logit_kl", "relation_kl", "tapped_forward", "uniform_layer_map"]
