"""Params `preflight`: the label-mask audit's sample and limits (read by the preflight and by
train@, which audits the split it trains on), and the rate the preflight times a run at."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from instar.params.core import Section


class PreflightParams(Section):
    SECTION: ClassVar[str] = "preflight"
    sample_rows: Annotated[int, Field(gt=0)] = Field(
        2000, description="rows of the train split the audit tokenizes (seeded; all if fewer)"
    )
    seed: int = 0
    max_truncated_share: Annotated[float, Field(ge=0, le=1)] = Field(
        0.05, description="refuse when train.max_length cuts the answer of more rows than this"
    )
    # torchtune's table: LoRA on Llama-3.1-8B, one A6000, batch 2, packed to 2048, compiled.
    tokens_per_second: Annotated[float, Field(gt=0)] = Field(
        4699, description="the training rate the preflight estimates a run's time at"
    )
