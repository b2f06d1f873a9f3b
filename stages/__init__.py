"""The DVC entry points, one module a stage of dvc.yaml: each reads its args and its own
params, calls the library (the `instar` package), and writes its outputs and metrics."""

import instar  # noqa: F401  (its environment settings come before any other import)
from instar.reproducible import pin_cpu

# `python -m stages.<name>` runs this before the stage module's own imports, so the CPU pins
# are in the environment before torch is imported (by `dvc repro` too, which skips the Makefile).
pin_cpu()
