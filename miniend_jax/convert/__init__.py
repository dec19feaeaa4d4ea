"""Checkpoint conversion to and from other T5 implementations."""
