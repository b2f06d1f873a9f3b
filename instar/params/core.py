"""Typed params: what every section model shares, and how a stage reads its sections.

params.yaml is the single source of truth; the models (one module a section, beside this
one) only give its keys types, defaults and documentation, and turn a typo into a clear
error before any work is done. A stage imports the modules of the sections it reads and no
other, so that editing one section's model reruns only the stages that read that section.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PARAMS_FILE = Path("params.yaml")
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# A hub revision must be a commit: a branch or tag can move under the same params.
Revision = Annotated[
    str | None,
    Field(pattern=r"^[0-9a-f]{40}$", description="a 40-hex commit hash; null until pinned"),
]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # The params.yaml key a top-level section model reads (`sources` for SourceParams,
    # whose entries are `sources.<name>`); nested models have none.
    SECTION: ClassVar[str] = ""

    @classmethod
    def load(cls, params: dict[str, Any] | None = None):
        """This section of params.yaml (or of `params`), validated: e.g. CleanParams.load()."""
        params = read_params() if params is None else params
        return validate(cls, params.get(cls.SECTION), cls.SECTION)

    @classmethod
    def named(cls, key: str, params: dict[str, Any] | None = None):
        """One validated entry of a named section: e.g. SourceParams.named("qa")."""
        return validate(cls, entry(cls.SECTION, key, params), f"{cls.SECTION}.{key}")


def entry(section: str, key: str, params: dict[str, Any] | None = None) -> Any:
    """The raw entry `section.key` of a named section, its name checked (it becomes a path)."""
    params = read_params() if params is None else params
    entries = params.get(section) or {}
    if key not in entries:
        raise ParamsError(f"{section}.{key} is not in params.yaml (known: {', '.join(entries)})")
    check_name(key, section.rstrip("s"))
    return entries[key]


def check_name(name: str, what: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(
            f"{what} name {name!r} may use only letters, digits, '-' and '_' (it becomes a path)"
        )
    return name


class ParamsError(SystemExit):
    """A params problem: one readable message, exit status 2 (printed by `console.run`)."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def load_yaml(path: Path = PARAMS_FILE) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path} not found: run stages from the repository root") from None


def read_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """params.yaml, refused at once when a rule across its sections fails."""
    params = load_yaml(path)
    problems = cross_section_problems(params)
    if problems:
        raise ParamsError(f"{path}: " + "; ".join(problems))
    return params


def cross_section_problems(params: dict[str, Any]) -> list[str]:
    """The rules that no one section can check, over the raw params: every stage runs them
    when it reads params.yaml, before any work."""
    problems = []
    wanted = (params.get("generate") or {}).get("text_sources") or []
    unknown = [t for t in wanted if t not in (params.get("text_sources") or {})]
    if unknown:
        problems.append(f"generate.text_sources names unknown text sources: {unknown}")
    overlap = set(params.get("sources") or {}) & set(params.get("text_sources") or {})
    if overlap:
        problems.append(f"names used by both sources and text_sources: {sorted(overlap)}")
    # One list of benchmarks: contamination checks some of those evaluation scores.
    checked = (params.get("contamination") or {}).get("fields") or {}
    # (Without the key, evaluate's default list: the contamination stage checks against it.)
    benchmarks = ((params.get("evaluate") or {}).get("benchmarks") or {}).get("tasks") or {}
    unknown = [b for b in checked if benchmarks and b not in benchmarks]
    if unknown:
        problems.append(
            f"contamination.fields names benchmarks that evaluate.benchmarks.tasks lacks: {unknown}"
        )
    return problems


def validate(model: type[BaseModel], data: Any, where: str):
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as e:
        lines = [
            f"  {where}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        ]
        raise ParamsError(f"invalid {where} in params.yaml:\n" + "\n".join(lines)) from None
