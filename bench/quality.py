"""What a cleaner kept of a corpus from `bench.corpus`, against its truth file.

Faults, each a share of the rows that could have had it: clean groups lost entirely,
duplicate copies left beyond one a group, junk kept (other languages, empty or too short
outputs), markup or personal data left in or thrown away instead of scrubbed. The score is
1 minus the mean fault, like the team's shared scorer.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq

TAG = re.compile(r"<[^>]+>|&[a-z]+;|&#\d+;")
PII = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+|\+?\d[\d\s-]{7,}\d|https?://\S+")
DUPS = ("exact_dup", "norm_dup", "near_dup")
JUNK = ("persian", "urdu", "english", "non_arabic", "empty_output", "too_short")
SCRUB = ("markup", "pii")


def score(truth_path: Path, kept_path: Path, source: str) -> dict:
    truth = [json.loads(line) for line in open(truth_path, encoding="utf-8")]
    label = {t["row"]: t["label"] for t in truth}
    kept: Counter = Counter()
    text: dict[int, str] = {}
    table = pq.read_table(
        kept_path, columns=["source", "source_row", "instruction", "input", "output"]
    )
    for rec in table.to_pylist():
        if rec["source"] == source:
            kept[rec["source_row"]] += 1
            text[rec["source_row"]] = " ".join((rec["instruction"], rec["input"], rec["output"]))
    groups: dict[int, list[int]] = defaultdict(list)
    for t in truth:
        if t["label"] == "clean":
            groups[t["row"]].append(t["row"])
        elif t["label"] in DUPS:
            groups[t["of"]].append(t["row"])
    n = Counter(label.values())
    lost = sum(1 for rows in groups.values() if not any(kept[r] for r in rows))
    left: Counter = Counter()
    for rows in groups.values():
        copies = sum(kept[r] for r in rows)
        for r in rows:
            if kept[r] and copies > 1 and label[r] != "clean":
                left[label[r]] += 1
                copies -= 1
    junk = Counter(label[r] for r in kept if label[r] in JUNK)
    missed = Counter(label[r] for r in kept if label[r] == "markup" and TAG.search(text[r]))
    missed += Counter(label[r] for r in kept if label[r] == "pii" and PII.search(text[r]))
    thrown = Counter(label[r] for r, lab in label.items() if lab in SCRUB and not kept[r])
    faults = [lost / max(1, len(groups))]
    faults += [left[k] / max(1, n[k]) for k in DUPS]
    faults += [junk[k] / max(1, n[k]) for k in JUNK]
    faults += [(missed[k] + thrown[k]) / max(1, n[k]) for k in SCRUB]
    return {
        "groups": len(groups),
        "groups_lost": lost,
        "dups_left": dict(left),
        "junk_kept": dict(junk),
        "scrub_missed": dict(missed),
        "scrub_lost": dict(thrown),
        "score": round(1 - sum(faults) / len(faults), 4),
    }
