"""Params `dedup`: exact and near duplicates."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from instar.params.core import Section


class NearDedupParams(Section):
    """MinHash LSH (datasketch) over word n-grams of the dedup key."""

    enabled: bool = True
    ngram: Annotated[int, Field(ge=1)] = 3
    num_perm: Annotated[int, Field(ge=16, le=1024)] = 128
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.7
    seed: int = 1


class DedupParams(Section):
    SECTION: ClassVar[str] = "dedup"
    batch_size: Annotated[int, Field(gt=0)] = 4096
    workers: Annotated[int, Field(ge=1)] = Field(2, description="processes computing signatures")
    near: NearDedupParams = NearDedupParams()
    examples: Annotated[int, Field(ge=0)] = 20
