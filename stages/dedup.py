"""dedup: remove records that repeat across all cleaned sources (data/dedup/instar.parquet).

The comparison key is the dedup normalisation of instruction, input and output (no
diacritics, folded letter variants, no punctuation). Of each cluster the record that comes
first survives: sources in params.yaml order, then `source_row`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

from stages import config
from stages.arabic import dedup_key
from stages.clean import clean_path
from stages.console import StageError, console, parser, progress, run
from stages.storage import Quarantine, RecordWriter, count_rows, iter_records, write_json

OUT = Path("data/dedup/instar.parquet")
QUARANTINE = Path("data/quarantine/dedup.parquet")


def content_key(rec: dict[str, Any]) -> bytes:
    """16 bytes per record: the set of seen keys stays small even for millions of rows."""
    joined = "\x1f".join(dedup_key(rec[f]) for f in ("instruction", "input", "output"))
    return hashlib.blake2b(joined.encode("utf-8"), digest_size=16).digest()


def dedup(sources: list[str], params: config.DedupParams) -> dict[str, Any]:
    paths = [clean_path(s) for s in sources]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise StageError(f"cleaned sources missing: {', '.join(missing)}; run `dvc repro` first")
    total = sum(count_rows(p) for p in paths)
    seen: dict[bytes, tuple[str, str]] = {}  # key -> (source, id) of the survivor
    per_source: dict[str, Counter] = {s: Counter() for s in sources}
    pairs: Counter = Counter()
    clustered: set[bytes] = set()  # keys that had at least one duplicate
    with (
        RecordWriter(OUT, batch_size=params.batch_size) as out,
        Quarantine(QUARANTINE, "dedup", params.batch_size) as quarantine,
    ):
        records = (r for p in paths for r in iter_records(p, params.batch_size))
        for rec in progress(records, "dedup", total):
            per_source[rec["source"]]["in"] += 1
            key = content_key(rec)
            if key in seen:
                kept_source, kept_id = seen[key]
                quarantine.reject(rec, "exact_duplicate", kept_id)
                per_source[rec["source"]]["duplicates"] += 1
                pairs[f"{kept_source}|{rec['source']}"] += 1
                clustered.add(key)
                continue
            seen[key] = (rec["source"], rec["id"])
            out.write(rec)
            per_source[rec["source"]]["out"] += 1
    console.print(f"dedup: {total} in, {out.rows} kept, {quarantine.rows} duplicates")
    return {
        "records_in": total,
        "records_out": out.rows,
        "duplicates": quarantine.rows,
        "clusters": len(clustered),
        "by_source": {
            s: {k: c[k] for k in ("in", "out", "duplicates")} for s, c in per_source.items()
        },
        "duplicate_pairs": dict(sorted(pairs.items())),
    }


def main() -> None:
    p = parser("dedup", __doc__)
    p.parse_args()
    params = config.read_params()
    sources = list(params.get("sources") or {})
    for name in sources:
        config.named("sources", name, params)
    write_json("metrics/dedup.json", dedup(sources, config.section("dedup", params)))


if __name__ == "__main__":
    run(main)
