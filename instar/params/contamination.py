"""Params `contamination`."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from instar.params.core import Section


class ContaminationParams(Section):
    """Benchmark items whose normalised question text is in the training split."""

    SECTION: ClassVar[str] = "contamination"

    files: dict[str, str] = Field(
        default_factory=lambda: {
            "data/benchmarks/alghafa.jsonl": "query",
            "data/benchmarks/acva.jsonl": "question",
            "data/benchmarks/mmlu.jsonl": "question",
        },
        description="benchmark file (jsonl) -> the field holding the question",
    )
    min_words: Annotated[int, Field(ge=1)] = Field(
        5,
        description="a shorter question counts only when a whole training field equals it; "
        "a longer one also when it occurs inside a training field",
    )
