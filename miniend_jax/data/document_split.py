"""Deterministic train/validation split of a corpus, decided document by document.

A document goes to validation when a SHA-256 hash of its stable id falls into the first
`validation_percent` of 10,000 buckets. The hash is not Python's `hash()` (randomised per
process), so the split is the same on every run, host and Python version, and a document
never moves between splits when other documents are added or removed.
"""

from __future__ import annotations

import hashlib

from miniend_jax.data.errors import DataError

TRAIN = "train"
VALIDATION = "validation"
_BUCKETS = 10_000


def split_of(document_id: str, validation_percent: float) -> str:
  """The split ("train" or "validation") that the document `document_id` belongs to."""
  if not 0 <= validation_percent <= 100:
    raise DataError(f"validation_percent must be in [0, 100], got {validation_percent}.")
  digest = hashlib.sha256(document_id.encode("utf-8")).digest()
  bucket = int.from_bytes(digest[:8], "big") % _BUCKETS
  return VALIDATION if bucket < validation_percent * _BUCKETS / 100 else TRAIN
