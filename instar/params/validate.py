"""Params `validate`: the record contract and the dataset expectations."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from instar.params.core import Section

Share = Annotated[float, Field(ge=0, le=1)]
Chars = Annotated[int, Field(ge=0)]
ShareRange = tuple[Share, Share]
CharRange = tuple[Chars, Chars]
# A quantile's bounds; null is "no bound" (a high quantile usually needs only a max).
QuantileRange = tuple[Chars | None, Chars | None]
# Percentiles by name (p50, p95), not 0.5-style keys: DVC flattens params with dots, and
# "validate.chars_quantiles.output.0.5" would be ambiguous in `dvc params diff` and `-S`.
Percentile = Annotated[str, Field(pattern=r"^p[1-9][0-9]?$")]
TextField = Literal["instruction", "input", "output", "system"]


def _check_ranges(ranges: dict[str, tuple], where: str) -> None:
    for key, (lo, hi) in ranges.items():
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"{where}{key}: [{lo}, {hi}] has min above max")


class FieldChars(Section):
    """Per record: [min, max] characters of each text field (a record check)."""

    instruction: CharRange = (2, 32_000)
    input: CharRange = (0, 32_000)
    output: CharRange = (1, 32_000)
    system: CharRange = (0, 8_000)

    @model_validator(mode="after")
    def _ordered(self):
        _check_ranges(self.model_dump(), "chars.")
        return self


class ValidateParams(Section):
    """The gate before training. Record checks (pandera) run on every row: failing rows go to
    quarantine. Dataset expectations (great-expectations) run on the rows that pass, and any
    failure stops the pipeline; their Data Docs go to reports/validation/."""

    SECTION: ClassVar[str] = "validate"

    min_rows: Annotated[int, Field(ge=0)] = Field(
        1, description="dataset: fewer valid rows than this stops the pipeline"
    )
    max_invalid_fraction: Share = Field(
        0.01, description="a larger share of rows failing a record check stops the pipeline"
    )
    min_arabic_ratio: Share = Field(
        0.5,
        description="record: Arabic letters / all letters, of the instruction and of the output "
        "(each on its own; a text without letters, such as a number, passes)",
    )
    chars: FieldChars = FieldChars()
    max_task_share: Annotated[float, Field(gt=0, le=1)] = Field(
        0.8, description="dataset: no task may be more than this share of the rows"
    )
    min_source_share: Share = Field(
        0.0, description="dataset: each source in params `sources` gives at least this share"
    )
    source_share: dict[str, ShareRange] = Field(
        default_factory=dict,
        description="dataset: [min, max] share of named sources (their min replaces "
        "min_source_share)",
    )
    synthetic_share: ShareRange = Field(
        (0.0, 1.0), description="dataset: [min, max] share of rows of origin `synthetic`"
    )
    max_empty_share: dict[Literal["input", "system", "topic"], Share] = Field(
        default_factory=lambda: {"input": 0.9},
        description="dataset: the largest share of rows whose field is empty",
    )
    chars_quantiles: dict[TextField, dict[Percentile, QuantileRange]] = Field(
        default_factory=lambda: {"instruction": {"p50": (10, 2000)}, "output": {"p50": (2, 4000)}},
        description="dataset: per field, percentile (p50, p95, ...) -> [min, max] characters; "
        "null for no bound",
    )

    @model_validator(mode="after")
    def _consistent(self):
        _check_ranges(self.source_share, "source_share.")
        _check_ranges({"": self.synthetic_share}, "synthetic_share")
        for field, quantiles in self.chars_quantiles.items():
            _check_ranges(quantiles, f"chars_quantiles.{field}.")
        return self
