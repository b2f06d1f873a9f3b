"""Evaluation: lm-eval on local task files, and the text metrics of generated answers."""
