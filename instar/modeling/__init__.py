"""Modeling: base builders, loading (precision, 4-bit, device), chat templates, training
data, checkpoints."""
