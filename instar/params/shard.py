"""Params `shard`: splits and shards."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, model_validator

from instar.params.core import Section


class ShardParams(Section):
    SECTION: ClassVar[str] = "shard"
    validation_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.1
    test_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.1
    salt: str = Field("instar-v1", description="changing it reshuffles every split")
    rows_per_shard: Annotated[int, Field(gt=0)] = 100_000

    @model_validator(mode="after")
    def _fractions(self):
        if self.validation_fraction + self.test_fraction >= 1:
            raise ValueError("validation_fraction + test_fraction must leave rows for train")
        return self
