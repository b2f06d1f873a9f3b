"""Params `contamination`."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from instar.params.core import Section


class ContaminationParams(Section):
    """Benchmark items whose normalised question text is in the training split. The
    benchmarks are those of `evaluate.benchmarks.tasks`, by the same names: the one list."""

    SECTION: ClassVar[str] = "contamination"

    fields: dict[str, str] = Field(
        default_factory=lambda: {"alghafa": "query", "acva": "question", "mmlu": "question"},
        description="benchmark (a name in evaluate.benchmarks.tasks) -> the field of its data "
        "files that holds the question; its test files are read from its task YAMLs",
    )
    min_words: Annotated[int, Field(ge=1)] = Field(
        5,
        description="a shorter question counts only when a whole training field equals it; "
        "a longer one also when it occurs inside a training field",
    )
