"""Validation: the Great Expectations suite and its Data Docs."""
