"""Where stages write: one place for the path conventions that dvc.yaml also spells out."""

from __future__ import annotations

from pathlib import Path


def raw_path(source: str) -> Path:
    return Path("data/raw") / f"{source}.parquet"


def clean_path(source: str) -> Path:
    return Path("data/clean") / f"{source}.parquet"


def quarantine_path(stage: str, source: str | None = None) -> Path:
    """data/quarantine/<stage>/<source>.parquet, or <stage>.parquet for all-source stages."""
    if source:
        return Path("data/quarantine") / stage / f"{source}.parquet"
    return Path("data/quarantine") / f"{stage}.parquet"
