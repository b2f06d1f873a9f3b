"""Where a benchmark's items are: the data files of the test split of every task an lm-eval
task or group stands for, read from the local task YAMLs through lm-eval's own index
(includes merged, groups and tags expanded as lm-eval expands them), so contamination checks
exactly what evaluation scores."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from instar.console import StageError


@cache
def _index(include_path: str) -> dict:
    from lm_eval.tasks import TaskManager

    # Only the local folder: lm-eval's own tasks read the hub, which a stage never does.
    return TaskManager(include_path=include_path, include_defaults=False).task_index


def benchmark_files(task: str, include_path: str | None) -> list[Path]:
    """The test-split data files of `task` (a task, group or tag), in the index's order."""
    if include_path is None or not Path(include_path).is_dir():
        raise StageError(
            f"{task}: no local task folder to read it from (evaluate.benchmarks.include_path "
            f"is {include_path!r})"
        )
    index = _index(include_path)
    files: list[Path] = []
    for entry in _leaves(index, task, include_path):
        cfg = entry.cfg
        data_files = (cfg.get("dataset_kwargs") or {}).get("data_files") or {}
        split = cfg.get("test_split") or "test"
        paths = data_files.get(split) if isinstance(data_files, dict) else data_files
        if not paths:
            raise StageError(
                f"{entry.yaml_path}: task {entry.name} has no data_files for {split!r}"
            )
        for p in [paths] if isinstance(paths, str) else paths:
            if Path(p) not in files:
                files.append(Path(p))
    return files


def _leaves(index: dict, name: str, include_path: str):
    from lm_eval.tasks._index import Kind

    entry = index.get(name)
    if entry is None:
        raise StageError(f"{include_path}: no task, group or tag {name!r}")
    if entry.kind == Kind.TASK:
        yield entry
    elif entry.kind == Kind.GROUP:
        for sub in entry.cfg.get("task") or []:
            yield from _leaves(index, sub if isinstance(sub, str) else sub["task"], include_path)
    elif entry.kind == Kind.TAG:
        for member in sorted(n for n, e in index.items() if name in (e.tags or ())):
            yield from _leaves(index, member, include_path)
    else:
        raise StageError(f"{entry.yaml_path}: {name} is a {entry.kind.name} task; only YAML ones")
