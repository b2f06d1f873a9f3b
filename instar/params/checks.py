"""Every params section at once, and the rules across sections: what `python -m
scripts.check_params` and `profile check` report. A stage imports only the sections it reads."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from instar.params.clean import CleanParams, for_source
from instar.params.contamination import ContaminationParams
from instar.params.core import ParamsError, cross_section_problems, load_yaml
from instar.params.dedup import DedupParams
from instar.params.evaluate import EvaluateParams
from instar.params.generate import (
    GenerateParams,
)
from instar.params.hub import HubDataParams, TokenizerParams
from instar.params.ingest import IngestParams
from instar.params.preflight import PreflightParams
from instar.params.report import ReportParams
from instar.params.shard import ShardParams
from instar.params.sources import SourceParams, TextSourceParams
from instar.params.tasks import TaskParams, language_problems, require
from instar.params.tasks import load as load_tasks
from instar.params.train import ModelParams
from instar.params.validate import ValidateParams

SECTIONS: dict[str, type[BaseModel]] = {
    "ingest": IngestParams,
    "clean": CleanParams,
    "dedup": DedupParams,
    "validate": ValidateParams,
    "shard": ShardParams,
    "generate": GenerateParams,
    "evaluate": EvaluateParams,
    "contamination": ContaminationParams,
    "report": ReportParams,
    "preflight": PreflightParams,
}
NAMED_SECTIONS: dict[str, type[BaseModel]] = {
    "sources": SourceParams,
    "text_sources": TextSourceParams,
    "models": ModelParams,
    "hub_data": HubDataParams,
    "tokenizers": TokenizerParams,
}


def check_all(params: dict[str, Any] | None = None) -> list[str]:
    """Validate every section and the rules across them; return the problems (empty when all
    is well)."""
    if params is None:
        try:
            params = load_yaml()
        except ParamsError as e:
            return [e.message]
    problems: list[str] = []
    for model in SECTIONS.values():
        try:
            model.load(params)
        except ParamsError as e:
            problems.append(e.message)
    for model in NAMED_SECTIONS.values():
        for key in params.get(model.SECTION) or {}:
            try:
                model.named(key, params)
            except (ParamsError, ValueError) as e:
                problems.append(getattr(e, "message", str(e)))
    try:
        tasks = load_tasks(params)
    except ParamsError as e:
        problems.append(e.message)
        tasks = None
    for name, source in (params.get("sources") or {}).items():  # clean as each source gets it
        try:
            clean = for_source(name, (source or {}).get("clean") or {}, params)
        except ParamsError as e:
            problems.append(e.message)
            continue
        if tasks is not None:
            problems += language_problems(tasks, clean.language.languages)
    if tasks is not None:
        problems += task_problems(params, tasks)
    return list(dict.fromkeys(problems)) + cross_section_problems(params)


def task_problems(params: dict[str, Any], tasks: dict[str, TaskParams]) -> list[str]:
    """The task names other sections give (generate's quotas, a source's default task) that
    the taxonomy lacks: what generate and ingest refuse when they start."""
    named = []
    try:
        named.append(("generate.quotas", list(GenerateParams.load(params).quotas)))
    except ParamsError:
        pass  # check_all has reported it
    for name in params.get("sources") or {}:
        try:
            src = SourceParams.named(name, params)
        except (ParamsError, ValueError):
            continue
        if src.kind == "instructions":
            named.append((f"sources.{name}.default_task", [src.default_task]))
    problems = []
    for where, names in named:
        try:
            require(names, where, tasks)
        except ParamsError as e:
            problems.append(e.message)
    return problems
