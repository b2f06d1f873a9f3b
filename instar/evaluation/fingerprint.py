"""The evaluation fingerprint: what moves benchmark scores besides the weights' quality.

Scores move with the harness version, its task files, the few-shot count, the batch size,
the dtype and quantisation, the chat template, the base's revision and the device
(lm-eval #1841, #2583). Every metrics/eval*/<model>.json carries these as strings, so that
`dvc metrics diff` shows a changed one beside the scores, and `report` flags a model whose
fingerprint differs from the last committed run's.
"""

from __future__ import annotations

import hashlib
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

KEY = "fingerprint"
_NAMED = re.compile(r"^(?:task|group):[ \t]*['\"]?([^'\"\s#]+)", re.MULTILINE)
_INCLUDE = re.compile(r"^include:[ \t]*['\"]?([^'\"\s#]+)", re.MULTILINE)


def task_files(include: Path, task: str) -> list[Path]:
    """The files that define `task` in the include path: the YAML naming it, the YAMLs it
    includes, and the Python files beside it (utils)."""
    found: list[Path] = []
    for path in sorted(include.rglob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        if task not in _NAMED.findall(text):
            continue
        found.append(path)
        for name in _INCLUDE.findall(text):
            if (path.parent / name).is_file():
                found.append(path.parent / name)
        found += sorted(path.parent.glob("*.py"))
    return sorted(set(found))


def files_hash(files: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for path in files:
        h.update(f"{path.relative_to(root)}\n".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:12]


def fingerprint(
    bench, root: Path, *, dtype: str, quantization: str, chat_template: str | None,
    base: str, adapter: str, device: str,
) -> dict[str, str]:  # fmt: skip
    """The fields as strings (`bench`: params evaluate.benchmarks). A task outside the
    include path is lm-eval's own, versioned with it."""
    include = root / bench.include_path if bench.include_path else None
    tasks = {}
    for name, task in bench.tasks.items():
        files = task_files(include, task) if include else []
        tasks[f"tasks.{name}"] = files_hash(files, root) if files else "lm-eval built-in"
    applied = bench.apply_chat_template and chat_template
    return {
        "lm_eval": version("lm-eval"),
        **tasks,
        "num_fewshot": str(bench.num_fewshot),
        "limit": "all" if bench.limit is None else str(bench.limit),
        "batch_size": str(bench.batch_size),
        "dtype": dtype,
        "quantization": quantization,
        "chat_template": hashlib.sha256(applied.encode()).hexdigest()[:12]
        if applied
        else "not applied",
        "base": base,
        "adapter": adapter,
        "device": device,
    }


# What is measured rather than how: it differs between runs by design, so it is recorded
# (which adapter these scores are of) but never flagged.
MEASURED = ("adapter",)


def differences(now: dict[str, Any], before: dict[str, Any]) -> list[str]:
    """`field: old -> new` for each field of two metrics files' fingerprints that differs,
    but the adapter's; nothing when either has none (a run from before fingerprints)."""
    a, b = before.get(KEY), now.get(KEY)
    if not a or not b:
        return []
    return [
        f"{k}: {a.get(k, '(none)')} -> {b.get(k, '(none)')}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k) and k not in MEASURED
    ]
