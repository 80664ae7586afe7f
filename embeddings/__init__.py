"""Sentence-transformers encoders with an on-disk cache keyed by (model, text hash)."""
