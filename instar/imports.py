"""The project files a module runs when it is imported: its own imports at any depth,
imports inside functions included, and the `__init__.py` of every package on the way. This is
what a stage's `deps` in dvc.yaml list (scripts/code_deps.py writes them, a test checks them)
and what a training run's key hashes, so that no list of code files is kept by hand."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("instar", "stages")  # the project's own; scripts/ and tests/ import these, not back


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The file of a project module (package: its __init__.py), or None for any other."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = root.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def imported(path: Path, package: str) -> set[str]:
    """The module names a file imports anywhere in its body (`from a import b` counts b too,
    as b may be a module); relative imports are resolved against `package`."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(parent + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@cache
def closure(module: str, root: Path = ROOT) -> tuple[str, ...]:
    """Every project file that `import module` runs, as sorted paths relative to `root`."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        for part in _with_parents(name):
            path = module_file(part, root)
            if path is None or part in seen:
                continue
            seen[part] = path
            package = part if path.name == "__init__.py" else part.rpartition(".")[0]
            todo.extend(imported(path, package))
    return tuple(sorted(str(p.relative_to(root)) for p in seen.values()))
