"""The data layer: SeqIO vocabularies, span corruption, corpora, metrics and batches.

Modules (import the one you need; nothing here registers tasks, see the top-level `tasks`):
- vocabulary: SentencePiece models as seqio vocabularies with T5's 100 sentinels.
- sentencepiece_training: training a T5-style SentencePiece model (function and command).
- span_corruption: T5's pretraining objective as a seqio preprocessor.
- embedded_corpus / stdlib_docstrings: the offline corpus of Python's own documentation.
- corpus_files, sources, document_split: local files, Hugging Face and in-memory sources.
- metrics: seqio metric functions and the GLUE score.
- dataset: the t5x-style DatasetConfig and the resumable per-host BatchIterator.
- errors: the user-facing errors of all of the above.
"""
