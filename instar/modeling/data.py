"""InstAr splits as Hugging Face datasets of chat messages, for training and evaluation."""

from __future__ import annotations

from pathlib import Path

INSTAR = Path("data/instar")


def split_files(split: str) -> list[str]:
    files = sorted(str(p) for p in (INSTAR / split).glob("*.parquet"))
    if not files:
        from instar.console import StageError

        raise StageError(f"{INSTAR / split}: no shards; run `dvc repro shard` first")
    return files


def load_split(split: str, limit: int | None = None):
    """A split as a memory-mapped Arrow dataset (never a list of Python dicts)."""
    import datasets

    ds = datasets.Dataset.from_parquet(split_files(split), keep_in_memory=False)
    return ds.select(range(min(limit, len(ds)))) if limit else ds


def as_messages(ds, system_role: bool):
    from instar.modeling.chat import to_messages

    return ds.map(
        lambda r: {"messages": to_messages(r, system_role)},
        remove_columns=ds.column_names,
        desc="chat format",
    )
