"""Test-only: put on PYTHONPATH with INSTAR_PAUSE=<file> to make a training process stop
after its first checkpoint is written and wait while <file> exists, so a test can kill it
at a known point (the project's own code is unchanged). Nothing happens without the
variable, and only `transformers.trainer` is touched, once it is imported."""

import importlib.abc
import os
import sys
import time
from pathlib import Path


def _patch(trainer_module) -> None:
    original = trainer_module.Trainer._save_checkpoint

    def save_then_pause(self, *args, **kwargs):
        original(self, *args, **kwargs)
        hold = Path(os.environ["INSTAR_PAUSE"])
        if hold.exists():
            Path(f"{hold}.reached").write_text(str(self.state.global_step))
        while hold.exists():
            time.sleep(0.1)

    trainer_module.Trainer._save_checkpoint = save_then_pause


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "transformers.trainer":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module):
            run(module)
            _patch(module)

        loader.exec_module = exec_module
        return spec


if os.environ.get("INSTAR_PAUSE"):
    import importlib.util

    sys.meta_path.insert(0, _Finder())
