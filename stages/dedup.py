"""dedup: remove records that repeat across all cleaned sources (data/dedup/instar.parquet).

Two passes in one stream: exact duplicates on the dedup key (no diacritics, folded letter
variants, no punctuation), then near-duplicates with MinHash LSH over word n-grams of that
key (datasketch's MinHash and band layout; see NearIndex). Of each cluster the record that
comes first survives: sources in params.yaml order, then `source_row`. Phrasings of one
labelled item (one `meta.group`) are near-identical by design and are never
near-duplicates of each other.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import xxhash
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from instar.console import StageError, console, parser, progress, run
from instar.params import core as config
from instar.params.dedup import DedupParams, NearDedupParams
from instar.records.paths import clean_path, source_names
from instar.records.quarantine import Drop, Quarantine
from instar.records.schema import load_meta
from instar.records.storage import (
    RecordWriter,
    count_rows,
    iter_records,
    write_json,
    write_text,
)
from instar.text.arabic import dedup_key

OUT = Path("data/dedup/instar.parquet")
QUARANTINE = Path("data/quarantine/dedup.parquet")
EXAMPLES = Path("reports/dedup_examples.md")


def key_text(rec: dict[str, Any]) -> str:
    return " ".join(dedup_key(rec[f]) for f in ("instruction", "input", "output"))


def shingles(text: str, n: int) -> list[bytes]:
    toks = text.split()
    if len(toks) <= n:
        return [" ".join(toks).encode()]
    return list({" ".join(toks[i : i + n]).encode() for i in range(len(toks) - n + 1)})


def signatures(
    texts: list[tuple[str, str, str]], near: NearDedupParams | None
) -> tuple[list[bytes], np.ndarray | None]:
    """Exact keys (16 bytes) and MinHash signatures (uint32) of a batch: the costly part,
    run in worker processes."""
    keys, sigs = [], []
    for fields in texts:
        text = " ".join(dedup_key(f) for f in fields)
        keys.append(hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest())
        if near is not None:
            m = MinHash(num_perm=near.num_perm, seed=near.seed, hashfunc=xxhash.xxh32_intdigest)
            m.update_batch(shingles(text, near.ngram))
            sigs.append(m.hashvalues)
    return keys, (np.asarray(sigs, dtype=np.uint32) if near is not None else None)


class NearIndex:
    """Near-duplicate lookup over kept records: LSH band tables over MinHash signatures,
    with the estimated Jaccard checked on each candidate, so that a band collision alone
    never drops a record.

    The bands and rows come from datasketch (`MinHashLSH`'s own optimum for the threshold),
    but the tables are plain dicts of band hash -> record index: datasketch's in-memory
    storage keeps a Python set per bucket, about 4.6 kB a record at 14 bands, which is 1.9 GB
    for 400k records; these take about a tenth of that. Signatures live in one growing
    uint32 array, not in objects."""

    def __init__(self, p: NearDedupParams):
        self.p = p
        self.b, self.r = _optimal_param(p.threshold, p.num_perm, 0.5, 0.5)
        self.tables: list[dict[int, int | list[int]]] = [{} for _ in range(self.b)]
        self.sigs = np.empty((1024, p.num_perm), dtype=np.uint32)
        self.groups: dict[int, str] = {}  # only records that belong to a labelled item
        self.n = 0

    def _bands(self, sig: np.ndarray) -> list[int]:
        raw = sig.tobytes()
        w = 4 * self.r
        return [xxhash.xxh64_intdigest(raw[i * w : (i + 1) * w]) for i in range(self.b)]

    def match(self, sig: np.ndarray, group: str | None) -> tuple[int, float] | None:
        """The kept record (index) this one nearly duplicates, and the estimated Jaccard."""
        candidates: set[int] = set()
        for table, band in zip(self.tables, self._bands(sig), strict=True):
            hit = table.get(band)
            if hit is not None:
                candidates.update(hit if isinstance(hit, list) else (hit,))
        best = None
        for other in sorted(candidates):  # earliest first: ties go to the earlier record
            if group is not None and self.groups.get(other) == group:
                continue
            j = float(np.mean(self.sigs[other] == sig))
            if j >= self.p.threshold and (best is None or j > best[1]):
                best = (other, j)
        return best

    def add(self, sig: np.ndarray, group: str | None) -> int:
        if self.n == len(self.sigs):
            self.sigs = np.resize(self.sigs, (2 * self.n, self.p.num_perm))
        index = self.n
        self.sigs[index] = sig
        for table, band in zip(self.tables, self._bands(sig), strict=True):
            hit = table.setdefault(band, index)
            if hit != index:  # a shared bucket becomes a list; most stay a single int
                if isinstance(hit, list):
                    hit.append(index)
                else:
                    table[band] = [hit, index]
        if group is not None:
            self.groups[index] = group
        self.n += 1
        return index


def signed_records(paths: list[Path], params: DedupParams):
    """(record, exact key, signature) in stream order; signatures are computed by a pool of
    `workers` processes a batch at a time, with a bounded number of batches in flight."""
    near = params.near if params.near.enabled else None
    batches = (
        b.to_pylist()
        for p in paths
        for b in pq.ParquetFile(p).iter_batches(batch_size=params.batch_size)
    )

    def texts(batch):
        return [(r["instruction"], r["input"], r["output"]) for r in batch]

    def emit(batch, keys, sigs):
        for i, rec in enumerate(batch):
            yield rec, keys[i], (sigs[i] if sigs is not None else None)

    if params.workers <= 1:
        for batch in batches:
            yield from emit(batch, *signatures(texts(batch), near))
        return
    import multiprocessing as mp
    from collections import deque

    with mp.get_context("fork").Pool(params.workers) as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append((batch, pool.apply_async(signatures, (texts(batch), near))))
            if len(pending) > 2 * params.workers:
                batch, job = pending.popleft()
                yield from emit(batch, *job.get())
        while pending:
            batch, job = pending.popleft()
            yield from emit(batch, *job.get())


def dedup(sources: list[str], params: DedupParams) -> dict[str, Any]:
    paths = [clean_path(s) for s in sources]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise StageError(f"cleaned sources missing: {', '.join(missing)}; run `dvc repro` first")
    total = sum(count_rows(p) for p in paths)
    seen: dict[bytes, int] = {}  # exact key -> index of the survivor
    survivors: list[tuple[str, str]] = []  # index -> (id, source)
    near = NearIndex(params.near) if params.near.enabled else None
    per_source: dict[str, Counter] = {s: Counter() for s in sources}
    pairs: Counter = Counter()
    pair_clusters: dict[str, set[int]] = {}  # source pair -> survivors with such duplicates
    clusters: dict[str, list] = {}  # survivor id -> duplicates, for the first few clusters
    with (
        RecordWriter(OUT) as out,
        Quarantine(QUARANTINE, "dedup") as quarantine,
    ):
        for rec, key, sig in progress(signed_records(paths, params), "dedup", total):
            src = rec["source"]
            per_source[src]["in"] += 1
            group = labelled_group(rec)
            hit = None
            if (k := seen.get(key)) is not None:
                hit = ("exact_duplicate", k, 1.0)
            elif near is not None and (match := near.match(sig, group)):
                hit = ("near_duplicate", *match)
            if hit:
                rule, k, jaccard = hit
                survivor, kept_source = survivors[k]
                quarantine.reject(rec, Drop(rule, f"{survivor} (jaccard {jaccard:.2f})"))
                per_source[src][rule] += 1
                pairs[f"{kept_source}|{src}"] += 1
                pair_clusters.setdefault(f"{kept_source}|{src}", set()).add(k)
                if survivor in clusters or len(clusters) < params.examples:
                    clusters.setdefault(survivor, []).append((rule, jaccard, rec))
                continue
            seen[key] = near.add(sig, group) if near is not None else len(survivors)
            survivors.append((rec["id"], src))
            out.write(rec)
            per_source[src]["out"] += 1
    # Survivors of the sample clusters, read back from the output rather than all held.
    heads = {r["id"]: r for r in iter_records(OUT, params.batch_size) if r["id"] in clusters}
    write_text(EXAMPLES, examples_report(clusters, heads))
    console.print(
        f"dedup: {total} in, {out.rows} kept, "
        f"{quarantine.by_rule.get('exact_duplicate', 0)} exact and "
        f"{quarantine.by_rule.get('near_duplicate', 0)} near duplicates"
    )
    return {
        "records_in": total,
        "records_out": out.rows,
        "duplicates": quarantine.rows,
        "exact_duplicates": quarantine.by_rule.get("exact_duplicate", 0),
        "near_duplicates": quarantine.by_rule.get("near_duplicate", 0),
        "by_source": {
            s: {k: c[k] for k in ("in", "out", "exact_duplicate", "near_duplicate")}
            for s, c in per_source.items()
        },
        # "a|b": records of b dropped as duplicates of a survivor from a, and the clusters
        # (distinct survivors) they form.
        "duplicate_pairs": dict(sorted(pairs.items())),
        "clusters_by_source_pair": {p: len(c) for p, c in sorted(pair_clusters.items())},
    }


def labelled_group(rec: dict[str, Any]) -> str | None:
    """The labelled item a record was phrased from, if any (see schema.group_key)."""
    return load_meta(rec["meta"]).get("group") if '"group"' in rec["meta"] else None


def _snippet(rec: dict) -> str:
    text = " / ".join(rec[f] for f in ("instruction", "input", "output") if rec[f])
    return text.replace("\n", " ").replace("|", "\\|")[:160]


def examples_report(clusters: dict[str, list], heads: dict[str, dict]) -> str:
    lines = [
        "# Dedup: sample clusters",
        "",
        "Written by the `dedup` stage: the first clusters met in the stream, each with the",
        "record that survived and the ones dropped as its duplicates, for a person to check.",
        "",
    ]
    if not clusters:
        lines.append("No duplicates were found.")
    for n, (survivor, dups) in enumerate(clusters.items(), 1):
        head = heads.get(survivor)
        lines += [f"## Cluster {n}", "", "| | source:row | Jaccard | text |", "|---|---|---:|---|"]
        if head:
            lines.append(f"| kept | {head['source']}:{head['source_row']} | | {_snippet(head)} |")
        for rule, jaccard, rec in dups:
            kind = "exact" if rule == "exact_duplicate" else "near"
            where = f"{rec['source']}:{rec['source_row']}"
            lines.append(f"| {kind} | {where} | {jaccard:.2f} | {_snippet(rec)} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = parser("dedup", __doc__)
    p.parse_args()
    params = config.read_params()
    write_json("metrics/dedup.json", dedup(source_names(), DedupParams.load(params)))


if __name__ == "__main__":
    run(main)
