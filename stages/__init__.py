"""The DVC entry points, one module a stage of dvc.yaml: each reads its args and its own
params, calls the library (the `instar` package), and writes its outputs and metrics."""

import instar  # noqa: F401  (its environment settings come before any other import)
