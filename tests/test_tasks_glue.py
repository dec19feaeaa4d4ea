"""GLUE in T5's text-to-text format (docs/data.md, "GLUE"), postprocessors and metrics wiring."""

import numpy as np
import pytest
import seqio
import tensorflow as tf

from miniend_jax.data import metrics
from tasks import glue
from tests.tiny_datasets import GLUE_EXAMPLES


@pytest.fixture(scope="module", autouse=True)
def _data(tiny_tfds_data_dir):
  return tiny_tfds_data_dir


def _formatted(task: glue.GlueTask, split: str) -> dict:
  source = seqio.TaskRegistry.get(task.task_name).source
  dataset = glue.glue_text_to_text(source.get_dataset(split, shuffle=False),
                                   benchmark=task.benchmark, label_names=task.label_names)
  return {k: v.numpy() for k, v in next(iter(dataset)).items()}


@pytest.mark.parametrize("task", glue.GLUE_TASKS, ids=lambda task: task.config)
def test_examples_read_from_tfds_format_exactly(task):
  _, _, inputs, targets = GLUE_EXAMPLES[task.config]
  labelled = [s for s in task.splits if not s.startswith("test")]
  for split in labelled:
    example = _formatted(task, split)
    assert example["inputs"].decode() == inputs
    assert example["targets"].decode() == targets
  unlabelled = _formatted(task, next(s for s in task.splits if s.startswith("test")))
  assert unlabelled["inputs"].decode() == inputs
  # T5: a class task's unlabelled target is "<unk>"; STS-B's label -1 is a number, "-1.0".
  assert unlabelled["targets"].decode() == ("-1.0" if task.config == "stsb" else "<unk>")


def test_label_names_are_tfds_class_labels():
  import tensorflow_datasets as tfds

  for task in glue.GLUE_TASKS:
    label = tfds.builder(f"glue/{task.config}").info.features["label"]
    names = getattr(label, "names", None)
    assert (tuple(names) if names else None) == task.label_names, task.config


def test_stsb_targets_round_to_the_nearest_fifth_half_to_even():
  labels = np.array([0.0, 0.5, 1.1, 2.3, 3.7, 3.9, 4.9, 5.0, 2.75], np.float32)
  expected = [f"{value:.1f}" for value in np.round(labels * np.float32(5)) / np.float32(5)]
  assert [t.decode() for t in glue.stsb_target(tf.constant(labels)).numpy()] == expected
  assert expected[:2] == ["0.0", "0.4"]  # 0.5 * 5 = 2.5 rounds to 2 (half to even).


def test_postprocessors_map_text_back_to_labels():
  mnli = glue.GLUE_TASKS[5]
  assert mnli.config == "mnli"
  assert glue.label_to_class_id(b"neutral", label_names=mnli.label_names) == 1
  assert glue.label_to_class_id("contradiction ", label_names=mnli.label_names) == 2
  assert glue.label_to_class_id("maybe", label_names=mnli.label_names) == metrics.INVALID
  assert glue.label_to_class_id("<unk>", label_names=mnli.label_names) == metrics.INVALID
  assert glue.string_to_float(b"3.8") == pytest.approx(3.8)
  assert glue.string_to_float("three") == -1.0


def test_tasks_score_with_the_glue_metrics():
  expected = {"cola": {"matthews_corrcoef"}, "sst2": {"accuracy"},
              "mrpc": {"f1", "accuracy"}, "qqp": {"f1", "accuracy"},
              "stsb": {"pearson_corrcoef", "spearman_corrcoef"}, "mnli_matched": {"accuracy"},
              "qnli": {"accuracy"}, "rte": {"accuracy"}, "wnli": {"accuracy"}}
  for config, names in expected.items():
    task = seqio.TaskRegistry.get(f"glue_{config}_v002")
    targets = [task.postprocess_fn(t, is_target=True) for t in ("3.0", "1.0", "2.4")] if (
        config == "stsb") else [0, 1, 1]
    predictions = [2.8, 1.2, 2.6] if config == "stsb" else [0, 1, 0]
    scores = {}
    for metric_fn in task.metric_fns:
      scores.update(metric_fn(targets, predictions))
    assert set(scores) == names, config
  assert metrics.glue_score({"glue_sst2_v002": {"accuracy": 50.0}})["glue_score"] == 50.0
