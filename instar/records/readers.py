"""Read raw sources row by row in bounded memory, and say exactly where a row is bad.

Each reader yields `(row_number, row)`: `row` is a dict, or for a broken row a `Drop` whose
value is the row's raw text (so the quarantine keeps what the source held) and whose rule
names what is wrong, so that `ingest` can stop with a clear error or quarantine the row and
go on.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from instar.records.quarantine import Drop

Row = tuple[int, dict[str, Any] | Drop]


BOM = b"\xef\xbb\xbf"


def read_jsonl(path: Path) -> Iterator[Row]:
    with open(path, "rb") as f:
        for i, raw in enumerate(f):
            if i == 0 and raw.startswith(BOM):  # an encoding mark (Excel, Notepad), not data
                raw = raw[len(BOM) :]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                text = raw.decode("utf-8", "backslashreplace").rstrip("\n")
                yield i, Drop("not UTF-8", text, f"byte {e.start}: {raw[e.start : e.start + 1]!r}")
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield i, Drop("malformed JSON", line.rstrip("\n"), f"{e.msg} at column {e.colno}")
                continue
            if not isinstance(obj, dict):
                why = f"a line must be an object, not {type(obj).__name__}"
                yield i, Drop("malformed JSON", line.rstrip("\n"), why)
                continue
            yield i, obj


SURROGATE = re.compile("[\udc80-\udcff]")


def read_csv(path: Path) -> Iterator[Row]:
    # Undecodable bytes become lone surrogates rather than an exception, so one bad byte
    # costs one row (named, or quarantined) and reading goes on after it.
    # utf-8-sig: a leading BOM is read as the encoding mark, not as part of the first name.
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(f, strict=True)
        header = reader.fieldnames
        if not header:
            return
        if any(SURROGATE.search(h) for h in header):
            yield 0, Drop("not UTF-8 in the header", _escaped(",".join(header)))
            return
        i = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield i, Drop("malformed CSV", str(e), str(e))
                i += 1
                continue
            if None in row or any(v is None for v in row.values()):
                yield i, Drop("malformed CSV", _raw(row), f"{len(header)} fields expected")
            elif bad := next((v for v in row.values() if SURROGATE.search(v)), None):
                byte = SURROGATE.search(bad).group().encode("utf-8", "surrogateescape")
                yield i, Drop("not UTF-8", _raw(row), f"byte {byte!r}")
            else:
                yield i, row
            i += 1


def _raw(row: dict) -> str:
    """A broken CSV row as text again, undecodable bytes as \\x escapes."""
    values = [v for k, v in row.items() if k is not None] + (row.get(None) or [])
    return _escaped(",".join(v if isinstance(v, str) else "" for v in values))


def _escaped(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def read_parquet(path: Path, batch_size: int) -> Iterator[Row]:
    i = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
        for row in batch.to_pylist():
            yield i, row
            i += 1


def columns_of(path: Path, fmt: str) -> list[str] | None:
    """Column names without reading the data (None where the format cannot say up front)."""
    if fmt == "csv":
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
            return next(csv.reader(f), [])
    if fmt == "parquet":
        return pq.ParquetFile(path).schema_arrow.names
    return None


def read_rows(path: Path, fmt: str, batch_size: int = 2048) -> Iterator[Row]:
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "csv":
        return read_csv(path)
    if fmt == "parquet":
        return read_parquet(path, batch_size)
    raise ValueError(f"unknown format {fmt!r}")
