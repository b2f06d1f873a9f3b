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


# Batches sorted together at a time: enough that a batch's rows are of one length, few enough
# that the order stays a shuffle of the split, not a walk from short to long.
GROUP_BATCHES = 64
TEXT_COLUMNS = ("system", "instruction", "input", "output")


def text_lengths(ds) -> list[int]:
    """Each record's characters over the columns a conversation is made of, from Arrow
    (a stand-in for its tokens: grouping needs their order, not their count)."""
    import pyarrow.compute as pc

    table = ds.data.table
    total = None
    for name in TEXT_COLUMNS:
        n = pc.fill_null(pc.utf8_length(table[name]), 0)
        total = n if total is None else pc.add(total, n)
    return total.to_pylist()


def length_grouped(lengths: list[int], batch_size: int, seed: int) -> list[int]:
    """A row order in which each run of `batch_size` rows holds rows of similar length (less
    padding, the same rows): a seeded shuffle, sorted by length within windows of
    GROUP_BATCHES batches, cut into batches, whose order is shuffled again. It depends on
    the seed and the lengths only, so a resumed run skips the same batches it trained on."""
    import numpy as np

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths)).tolist()
    window = batch_size * GROUP_BATCHES
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    return [i for b in rng.permutation(len(batches)).tolist() for i in batches[b]]


def as_messages(ds, system_role: bool):
    from instar.modeling.chat import to_messages

    return ds.map(
        lambda r: {"messages": to_messages(r, system_role)},
        remove_columns=ds.column_names,
        desc="chat format",
    )
