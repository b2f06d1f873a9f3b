"""Where stages write: one place for the path conventions that dvc.yaml also spells out."""

from __future__ import annotations

from pathlib import Path


def raw_path(source: str) -> Path:
    return Path("data/raw") / f"{source}.parquet"


def clean_path(source: str) -> Path:
    return Path("data/clean") / f"{source}.parquet"


# clean@<source>'s language counts (system prompts by language, language drops by published
# source), apart from its metrics: shard puts them in the dataset card, and a file of its
# own keeps an override edit (shown in the metrics) from rerunning shard.
CLEAN_LANGUAGES = Path("data/clean_languages")


def clean_languages_path(source: str) -> Path:
    return CLEAN_LANGUAGES / f"{source}.json"


def quarantine_path(stage: str, source: str | None = None) -> Path:
    """data/quarantine/<stage>/<source>.parquet, or <stage>.parquet for all-source stages."""
    if source:
        return Path("data/quarantine") / stage / f"{source}.parquet"
    return Path("data/quarantine") / f"{stage}.parquet"


# Written by the source_list stage: the source names in params.yaml order, and each
# source's `clean` overrides (one file a source, so that clean@<source> depends on its own).
SOURCE_LIST = Path("data/source_list.json")
CLEAN_OVERRIDES = Path("data/clean_overrides")


def clean_overrides_path(source: str) -> Path:
    return CLEAN_OVERRIDES / f"{source}.json"


def source_names() -> list[str]:
    import json

    from instar.console import StageError

    if not SOURCE_LIST.exists():
        raise StageError(f"{SOURCE_LIST} is missing; run `dvc repro source_list` first")
    return json.loads(SOURCE_LIST.read_text(encoding="utf-8"))["sources"]
