"""The quickstart's assistant stage: `--objectives=miniend_d_interpolated_assistant` adds
a stage that distils the teacher into an assistant, and that objective's students read
it beside the teacher. Run stage by stage at miniature size with 4-step budgets (the
whole quickstart is tests/test_quickstart.py's)."""

import io
import os

from miniend_jax.quickstart import pipeline, sizes
from miniend_jax.quickstart.workspace import Workspace
from tests.training_runs import read_metrics

OBJECTIVE = "miniend_d_interpolated_assistant"


def test_assistant_stage_feeds_the_interpolated_student(tmp_path):
  size = sizes.size("miniature", teacher_steps=4, student_steps=4, warmup_steps=2)
  objectives = pipeline.parse_objectives(OBJECTIVE)
  assert objectives == ("scratch", OBJECTIVE)
  assert pipeline.blends_with_assistant(OBJECTIVE)
  assert not pipeline.blends_with_assistant("miniend_d_interpolated")
  workspace = Workspace(str(tmp_path / "quickstart"),
                        pipeline.run_settings(size, seed=0, finetune_teacher=False),
                        stream=io.StringIO())
  run = pipeline.Pipeline(workspace, size, objectives, finetune_teacher=False)
  without = pipeline.Pipeline(workspace, size, ("scratch", "miniend_d_interpolated"),
                              finetune_teacher=False)
  assert run.stage_count() == without.stage_count() + 1
  run._train_vocabulary()  # pylint: disable=protected-access
  run._pretrain_teacher()  # pylint: disable=protected-access
  run._train_assistant()  # pylint: disable=protected-access
  student = run._train_student(OBJECTIVE, 0)  # pylint: disable=protected-access
  with open(os.path.join(student["run_dir"], "config.gin")) as f:
    record = f.read()
  assert f"# Assistant: loaded from {run.run_dir('assistant')}" in record
  assert f"# Teacher: loaded from {run.run_dir('teacher')}" in record
  assert [m["step"] for m in read_metrics(student["run_dir"])] == [1, 2, 3, 4]
  assistant_info = open(os.path.join(run.run_dir("assistant"), "model-info.txt")).read()
  width = size.teacher.emb_dim
  assert f"({size.vocab_size}, {width})" in assistant_info
