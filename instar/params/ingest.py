"""Params `ingest`."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from instar.params.core import Section


class IngestParams(Section):
    SECTION: ClassVar[str] = "ingest"
    batch_size: Annotated[int, Field(gt=0)] = 2048
    templates: str = Field("templates/tasks.yaml", description="Arabic phrasings for task sources")
    phrasings_per_item: Annotated[int, Field(ge=1)] = 2
    seed: int = 0
