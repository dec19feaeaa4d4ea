"""SeqIO task and mixture registrations; importing this package registers them all.

Import it from Python or a gin file (`import tasks`) before naming a task. The library
itself (`miniend_jax`) never imports it, so importing the library registers nothing.

Tasks (all text-to-text, inputs/targets in the shared vocabulary of tasks/vocabulary.py):
- pretraining: c4_v220_span_corruption (TFDS), c4_hf_span_corruption (Hugging Face),
  embedded_span_corruption (offline);
- GLUE: glue_{cola,sst2,mrpc,qqp,stsb,mnli,mnli_matched,mnli_mismatched,qnli,rte,wnli,ax}
  _v002 and the mixture glue_v002_proportional;
- summarization: cnn_dailymail_v002, xsum_v110 (TFDS), cnn_dailymail_hf, xsum_hf;
- offline downstream: embedded_summarization, embedded_topic_classification.

Tasks on your own files are registered when a run asks for them (a gin file calls the
function): corpus_span_corruption (pretraining.corpus_span_corruption) and
downstream_files (downstream_files.downstream_files_task).
"""

from tasks import downstream_files, embedded, glue, pretraining, summarization, vocabulary


def register_all(*, tfds_data_dir: str | None = None) -> None:
  """Registers every task and mixture again (e.g. after a test reset the registries),
  optionally reading TFDS datasets from `tfds_data_dir`."""
  pretraining.register(tfds_data_dir=tfds_data_dir)
  glue.register(tfds_data_dir=tfds_data_dir)
  summarization.register(tfds_data_dir=tfds_data_dir)
  embedded.register()


__all__ = ["downstream_files", "embedded", "glue", "pretraining", "register_all",
           "summarization", "vocabulary"]
