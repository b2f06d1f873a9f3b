"""Params: the typed, documented sections of params.yaml, checked when a stage starts."""
