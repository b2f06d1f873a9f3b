"""The raw sources (params `sources`) and the text sources (`text_sources`)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from instar.params.core import Revision, Section


class HubDataset(Section):
    """A dataset on the Hugging Face hub, pinned to a commit."""

    repo_id: str
    revision: Revision = None
    config: str | None = None
    split: str = "train"


class ColumnSet(Section):
    """One published layout of a source: exactly these columns, read with this mapping."""

    found: list[str] = Field(description="the source's columns, all of them (any order)")
    columns: dict[str, str] = Field(
        default_factory=dict, description="record field -> source column for this layout"
    )


class SourceParams(Section):
    """One raw source that `ingest` turns into records (params `sources.<name>`)."""

    SECTION: ClassVar[str] = "sources"  # a named section: sources.<name>

    kind: Literal["instructions", "task", "records"] = Field(
        "instructions",
        description="instructions: mapped column by column; task: labelled items phrased by "
        "templates; records: a parquet already in the record schema (the `generate` output), "
        "taken as it is with its origin and meta",
    )
    format: Literal["jsonl", "csv", "parquet"]
    path: str = Field(
        description="the file DVC tracks; a hub dataset's is hub@<name>'s Parquet, "
        "data/hub/<name>/<config>/<split>.parquet (params `hub_data`)"
    )
    origin: Literal["collected", "synthetic"] = "collected"
    origin_column: str | None = Field(None, description="column whose values give the origin")
    origin_map: dict[str, Literal["collected", "synthetic"]] = Field(
        default_factory=dict, description="value of origin_column -> origin; others: `origin`"
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="record field (or template placeholder) -> source column; identity if absent",
    )
    column_sets: list[ColumnSet] = Field(
        default_factory=list,
        description="the layouts a source has had (a hub set's columns change between "
        "commits): its columns must be one set exactly, whose mapping replaces `columns`; "
        "empty: any columns, mapped by `columns`",
    )
    meta_columns: list[str] = Field(
        default_factory=list, description="source columns kept verbatim in `meta`"
    )
    default_task: str = Field("open_qa", description="task of rows that have no task column")
    template: str | None = Field(None, description="kind task: the entry of the templates file")
    on_error: Literal["fail", "quarantine"] = "fail"
    clean: dict[str, Any] = Field(
        default_factory=dict,
        description="keys of the `clean` section that differ for this source (nested keys "
        "merge: `repetition: {enabled: false}`); checked as the section is when clean@ starts",
    )
    # Measured: the shipped samples reject 0 to 4.8% of their rows (web_sample, 1 of 21), the
    # shared bench corpus (make_corpus.py, 20k rows) 0%. A quarter is five times the worst
    # of them; above it the mapping or the file is wrong, not some rows.
    max_rejected_fraction: Annotated[float, Field(ge=0, le=1)] = Field(
        0.25,
        description="with on_error quarantine: the stage fails when more of the source's rows "
        "than this are rejected (a source whose rows are all rejected fails whatever it says)",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_hub_format(cls, data):
        if isinstance(data, dict) and data.get("format") == "hf":
            raise ValueError(
                "a source is read from a file: list the hub dataset in `hub_data` (hub@<name> "
                "writes it as Parquet under data/hub/<name>/) and read that with format parquet"
            )
        return data

    @model_validator(mode="after")
    def _kind_fields(self):
        if self.kind == "task" and not self.template:
            raise ValueError("a source of kind 'task' needs `template`")
        if self.column_sets and self.format == "jsonl":
            raise ValueError("column_sets need a format whose columns are known up front")
        if self.kind == "records" and self.format != "parquet":
            raise ValueError("a source of kind 'records' must be format 'parquet'")
        return self


class TextSourceParams(Section):
    """Paragraphs read by the generation stage (params `text_sources.<name>`)."""

    SECTION: ClassVar[str] = "text_sources"  # a named section: text_sources.<name>

    kind: Literal["text"] = "text"
    format: Literal["jsonl", "csv", "parquet", "hf"]
    path: str | None = Field(None, description="the file DVC tracks (not for format hf)")
    hf: HubDataset | None = Field(None, description="format hf: streamed from the hub")
    text_column: str = "text"
    id_column: str | None = Field(
        None, description="column naming a paragraph in lineage; null: its row number"
    )

    @model_validator(mode="after")
    def _where(self):
        if self.format == "hf" and self.hf is None:
            raise ValueError("a text source of format 'hf' needs `hf: {repo_id, revision, split}`")
        if self.format != "hf" and not self.path:
            raise ValueError(f"a text source of format {self.format!r} needs `path`")
        return self
