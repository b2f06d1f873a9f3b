"""shard: the validated records -> InstAr splits, its manifest and its dataset card.

A record's split is fixed by a hash of its group key (see `schema.group_key`) and the salt,
never by its position: adding a source never moves an existing record to another split,
and all phrasings made from one labelled item land together.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from instar.cards.dataset_card import card_charts, dataset_card
from instar.console import StageError, console, parser, progress, run
from instar.params import core as config
from instar.params.shard import ShardParams
from instar.params.tasks import TaskParams
from instar.params.tasks import load as load_tasks
from instar.records.paths import clean_languages_path, source_names
from instar.records.schema import group_key
from instar.records.storage import (
    RecordWriter,
    atomic_dir,
    count_rows,
    file_digest,
    iter_records,
    write_json,
    write_text,
)

IN = Path("data/validated/instar.parquet")
OUT = Path("data/instar")
SPLITS = ("train", "validation", "test")
# shard's DVC outputs, all in OUT; anything else there (DVC's .gitignore) is kept.
OUTPUTS = (*SPLITS, "manifest.json", "README.md", "card")


def split_of(key: str, params: ShardParams) -> str:
    """A uniform number in [0, 1) from the salted key, cut at the split fractions."""
    h = hashlib.sha256(f"{params.salt}\x1f{key}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    if u < params.test_fraction:
        return "test"
    if u < params.test_fraction + params.validation_fraction:
        return "validation"
    return "train"


def shard(params: ShardParams, tasks: dict[str, TaskParams] | None = None) -> dict[str, Any]:
    if not IN.exists():
        raise StageError(f"{IN}: not found; run `dvc repro validate` first")
    # The splits, manifest and card go in together: a reader never sees a manifest of one
    # run beside the shards of another, and an interrupted run leaves the old ones.
    others = [p.name for p in OUT.iterdir() if p.name not in OUTPUTS] if OUT.is_dir() else []
    with atomic_dir(OUT, carry=others) as tmp:
        manifest = build(tmp, params, load_tasks({}) if tasks is None else tasks)
    console.print("shard: " + ", ".join(f"{s} {manifest['splits'][s]['records']}" for s in SPLITS))
    return manifest


def build(tmp: Path, params: ShardParams, tasks: dict[str, TaskParams]) -> dict[str, Any]:
    counts: dict[str, Counter] = {s: Counter() for s in SPLITS}
    lengths: dict[str, list[int]] = {"instruction": [], "output": []}
    with ExitStack() as stack:
        writers = {
            s: stack.enter_context(RecordWriter(tmp / s, rows_per_file=params.rows_per_shard))
            for s in SPLITS
        }
        for rec in progress(iter_records(IN), "shard", count_rows(IN)):
            split = split_of(group_key(rec), params)
            writers[split].write(rec)
            c = counts[split]
            c["records"] += 1
            c[f"task/{rec['task']}"] += 1
            c[f"source/{rec['source']}"] += 1
            c[f"origin/{rec['origin']}"] += 1
            for f in lengths:
                lengths[f].append(len(rec[f].split()))
    manifest = {
        "params": params.model_dump(),
        "records": sum(c["records"] for c in counts.values()),
        "clean_languages": clean_languages(),
        "splits": {s: _nest(counts[s]) for s in SPLITS},
        "shards": {
            str(f.relative_to(tmp)): {"rows": count_rows(f), "sha256": file_digest(f)}
            for w in writers.values()
            for f in w.files
        },
    }
    write_json(tmp / "manifest.json", manifest)
    write_text(tmp / "README.md", dataset_card(manifest, lengths, tasks))
    card_charts(tmp / "card", manifest, lengths)
    return manifest


def clean_languages() -> dict[str, dict[str, int]]:
    """clean@'s language counts over every source: the published set's quirks (an English
    system prompt on many rows, English answers in Arabic rows), for the card."""
    totals: dict[str, Counter] = {}
    for source in source_names():
        path = clean_languages_path(source)
        if not path.is_file():
            raise StageError(f"{path}: missing; run `dvc repro clean@{source}` first")
        for key, counts in json.loads(path.read_text(encoding="utf-8")).items():
            totals.setdefault(key, Counter()).update(counts)
    return {k: dict(sorted(c.items())) for k, c in sorted(totals.items())}


def _nest(c: Counter) -> dict[str, Any]:
    out: dict[str, Any] = {"records": c["records"]}
    for key, n in sorted(c.items()):
        if "/" in key:
            kind, value = key.split("/", 1)
            out.setdefault(f"by_{kind}", {})[value] = n
    return out


def main() -> None:
    p = parser("shard", __doc__)
    p.parse_args()
    raw = config.read_params()
    shard(ShardParams.load(raw), load_tasks(raw))


if __name__ == "__main__":
    run(main)
