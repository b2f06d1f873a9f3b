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
from instar.params.report import ReportParams
from instar.params.shard import ShardParams
from instar.params.sources import SourceParams, TextSourceParams
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
    for name, source in (params.get("sources") or {}).items():  # clean as each source gets it
        try:
            for_source(name, (source or {}).get("clean") or {}, params)
        except ParamsError as e:
            problems.append(e.message)
    return problems + cross_section_problems(params)
