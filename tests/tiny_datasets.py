"""Tiny stand-ins for the real datasets, written in the real formats, for offline tests.

TFDS datasets are written with TFDS itself, under the real names, versions and features
(taken from TFDS's own builder code), so the tasks read them exactly as they would read a
prepared data directory. Hugging Face datasets are JSON-lines files with the real fields.
"""

import json
import os

import tensorflow_datasets as tfds

# One labelled example per GLUE task and the T5 text-to-text form of docs/data.md, "GLUE".
# The sst2 sentence keeps its trailing space: the text is used as given.
GLUE_EXAMPLES = {
    "cola": ({"sentence": "The book was read by Mary ."}, 1,
             "cola sentence: The book was read by Mary .", "acceptable"),
    "sst2": ({"sentence": "it 's a charming journey . "}, 1,
             "sst2 sentence: it 's a charming journey . ", "positive"),
    "mrpc": ({"sentence1": "He said hello .", "sentence2": "He greeted them ."}, 1,
             "mrpc sentence1: He said hello . sentence2: He greeted them .", "equivalent"),
    "qqp": ({"question1": "How do I cook rice ?", "question2": "Why is the sky blue ?"}, 0,
            "qqp question1: How do I cook rice ? question2: Why is the sky blue ?",
            "not_duplicate"),
    "stsb": ({"sentence1": "A cat sits .", "sentence2": "A cat is sitting ."}, 3.7,
             "stsb sentence1: A cat sits . sentence2: A cat is sitting .", "3.6"),
    "mnli": ({"premise": "A man is sleeping .", "hypothesis": "A person rests ."}, 0,
             "mnli hypothesis: A person rests . premise: A man is sleeping .", "entailment"),
    "mnli_matched": ({"premise": "It rains .", "hypothesis": "It is dry ."}, 2,
                     "mnli hypothesis: It is dry . premise: It rains .", "contradiction"),
    "mnli_mismatched": ({"premise": "She ran .", "hypothesis": "She moved fast ."}, 1,
                        "mnli hypothesis: She moved fast . premise: She ran .", "neutral"),
    "qnli": ({"question": "What is it ?", "sentence": "It is a cat ."}, 1,
             "qnli question: What is it ? sentence: It is a cat .", "not_entailment"),
    "rte": ({"sentence1": "Paris is in France .", "sentence2": "Paris is French ."}, 0,
            "rte sentence1: Paris is in France . sentence2: Paris is French .",
            "entailment"),
    "wnli": ({"sentence1": "The cup fell and it broke .", "sentence2": "The cup broke ."}, 1,
             "wnli sentence1: The cup fell and it broke . sentence2: The cup broke .",
             "entailment"),
    "ax": ({"premise": "Some dogs bark .", "hypothesis": "All dogs bark ."}, 2,
           "mnli hypothesis: All dogs bark . premise: Some dogs bark .", "contradiction"),
}

_TEXT = ("Span corruption replaces random spans of a document with sentinels. The model "
         "learns to write the missing spans back. Short documents are joined in groups.")
DOCUMENTS = [f"Document {i}. {_TEXT}" for i in range(4)]
_SUMMARIES = {"article": DOCUMENTS[0], "highlights": "Spans are replaced.\nModels fill them.",
              "document": DOCUMENTS[1], "summary": "Spans come back."}


def _example(features, values: dict, index: int) -> dict:
  """`values` completed with every other feature of the real schema (empty texts)."""
  example = {}
  for name, feature in features.items():
    if name in values:
      example[name] = values[name]
    elif name == "idx":
      example[name] = index
    else:
      example[name] = ""
  return example


def _store(name: str, config: str | None, version: str, splits: dict, data_dir: str) -> None:
  builder = tfds.builder(f"{name}/{config}" if config else name)  # Code only: features.
  features = builder.info.features
  tfds.dataset_builders.store_as_tfds_dataset(
      name=name, version=version, config=config, features=features, data_dir=data_dir,
      split_datasets={split: [(i, _example(features, values, i))
                              for i, values in enumerate(examples)]
                      for split, examples in splits.items()})


def write_tfds_datasets(data_dir: str) -> None:
  """GLUE (all 12 configs), c4/en:3.0.1, cnn_dailymail:3.4.0 and xsum:1.1.0 under data_dir."""
  tfds.disable_progress_bar()
  from tasks import glue

  for task in glue.GLUE_TASKS:
    fields, label, _, _ = GLUE_EXAMPLES[task.config]
    labelled, unlabelled = {**fields, "label": label}, {**fields, "label": -1}
    splits = {split: [unlabelled if split.startswith("test") else labelled]
              for split in task.splits}
    _store("glue", task.config, "2.0.0", splits, data_dir)
  documents = [{"text": text} for text in DOCUMENTS]
  _store("c4", "en", "3.0.1", {"train": documents, "validation": documents[:2]}, data_dir)
  for name, version in (("cnn_dailymail", "3.4.0"), ("xsum", "1.1.0")):
    _store(name, None, version, {s: [_SUMMARIES] for s in ("train", "validation", "test")},
           data_dir)


HF_FILES = {  # Hugging Face dataset path -> (file name, JSON lines).
    "allenai/c4": ("c4.jsonl", [{"text": t, "url": "u", "timestamp": "t"} for t in DOCUMENTS]),
    "abisee/cnn_dailymail": ("cnn.jsonl", [{"article": DOCUMENTS[0], "id": "0",
                                            "highlights": _SUMMARIES["highlights"]}]),
    "EdinburghNLP/xsum": ("xsum.jsonl", [{"document": DOCUMENTS[1], "id": "0",
                                          "summary": _SUMMARIES["summary"]}]),
}


def write_hf_files(directory: str) -> dict[str, str]:
  """The JSON-lines stand-ins of HF_FILES; returns {dataset path: file}."""
  paths = {}
  for dataset, (file_name, rows) in HF_FILES.items():
    paths[dataset] = os.path.join(directory, file_name)
    with open(paths[dataset], "w") as stream:
      stream.writelines(json.dumps(row) + "\n" for row in rows)
  return paths
