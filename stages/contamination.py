"""contamination: benchmark items whose question is in the InstAr training split.

The benchmarks are those `evaluate.benchmarks.tasks` names (`contamination.fields` gives each
one's question field), and their items are the test-split files of their task YAMLs
(instar/evaluation/taskfiles.py): jsonl or Parquet, the project's own sets or hub@'s. A
question and every training record's instruction, input and output are reduced to the
dedup key (instar/text/arabic.py: no diacritics, letter variants folded, no punctuation). An item
counts when a training field equals its key, or, for a question of at least
`contamination.min_words` words, when the key occurs in a field on word boundaries.
Writes metrics/contamination.json (`contamination.items_in_train`, per benchmark too) and
reports/contamination.jsonl (the items found, for people to read).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from instar.console import StageError, console, parser, progress, run
from instar.evaluation.taskfiles import benchmark_files
from instar.params import core as config
from instar.params.contamination import ContaminationParams
from instar.params.evaluate import BenchmarkParams, EvaluateParams
from instar.records.storage import atomic_path, write_json
from instar.text.arabic import dedup_key

TRAIN = Path("data/instar/train")
FIELDS = ["instruction", "input", "output"]


def questions(path: Path, field: str) -> list[dict[str, Any]]:
    """The items of one benchmark file (jsonl or Parquet): id and dedup key of the question."""
    if not path.is_file():
        hint = " (hub@ writes it: `dvc repro` or `dvc pull`)" if "data/hub/" in str(path) else ""
        raise StageError(f"{path}: no such benchmark file{hint}")
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        if field not in table.column_names:
            raise StageError(f"{path}: no column {field!r} (contamination.fields)")
        ids = table.column("id").to_pylist() if "id" in table.column_names else None
        return [
            {"file": str(path), "id": ids[n] if ids else n + 1, "key": dedup_key(str(text or ""))}
            for n, text in enumerate(table.column(field).to_pylist())
        ]
    items = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text = row[field]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise StageError(f"{path}:{n}: not a JSON object with {field!r} ({e})") from None
            items.append({"file": str(path), "id": row.get("id", n), "key": dedup_key(text)})
    return items


def find(items: list[dict[str, Any]], train: Path, min_words: int, batch_size: int = 8192):
    """The items whose key is in the training split (each item's first hit only)."""
    shards = sorted(train.glob("*.parquet"))
    if not shards:
        raise StageError(f"{train}: no shards; run `dvc repro shard` first")
    found: dict[int, dict[str, Any]] = {}
    batches = [
        b
        for s in shards
        for b in pq.ParquetFile(s).iter_batches(batch_size=batch_size, columns=FIELDS + ["id"])
    ]
    for batch in progress(batches, "contamination", len(batches)):
        ids = batch.column("id").to_pylist()
        keys = [
            (ids[i], dedup_key(t))
            for f in FIELDS
            for i, t in enumerate(batch.column(f).to_pylist())
            if t
        ]
        exact = {k: rid for rid, k in keys}
        # One string per batch, fields fenced by spaces: `in` on it is C-speed substring search.
        haystack = " \n ".join(k for _, k in keys)
        haystack = f" {haystack} "
        for n, item in enumerate(items):
            key = item["key"]
            if n in found or not key:
                continue
            if key in exact:
                found[n] = {**item, "train_id": exact[key], "match": "exact"}
            elif len(key.split()) >= min_words and f" {key} " in haystack:
                rid = next(r for r, k in keys if f" {key} " in f" {k} ")
                found[n] = {**item, "train_id": rid, "match": "contained"}
    return [found[n] for n in sorted(found)]


def check(
    params: ContaminationParams, benchmarks: BenchmarkParams, train: Path = TRAIN
) -> tuple[dict, list[dict]]:
    unknown = [b for b in params.fields if b not in benchmarks.tasks]
    if unknown:
        raise StageError(
            f"contamination.fields: {unknown} not in evaluate.benchmarks.tasks "
            f"({', '.join(benchmarks.tasks)})"
        )
    items: list[dict[str, Any]] = []
    for name, field in params.fields.items():
        for path in benchmark_files(benchmarks.tasks[name], benchmarks.include_path):
            items += [{"benchmark": name, **q} for q in questions(path, field)]
    hits = find(items, train, params.min_words)
    metrics: dict[str, Any] = {
        "contamination.items_checked": len(items),
        "contamination.items_in_train": len(hits),
    }
    for name in params.fields:
        metrics[f"contamination.{name}.items_in_train"] = sum(h["benchmark"] == name for h in hits)
    return metrics, hits


def main() -> None:
    p = parser("contamination", __doc__)
    p.parse_args()
    params = config.read_params()
    metrics, hits = check(ContaminationParams.load(params), EvaluateParams.load(params).benchmarks)
    write_json(Path("metrics/contamination.json"), metrics)
    with atomic_path(Path("reports/contamination.jsonl")) as tmp:
        tmp.write_text("".join(json.dumps(h, ensure_ascii=False) + "\n" for h in hits))
    console.print(
        f"contamination: {metrics['contamination.items_in_train']} of "
        f"{metrics['contamination.items_checked']} benchmark items are in the training split"
    )


if __name__ == "__main__":
    run(main)
