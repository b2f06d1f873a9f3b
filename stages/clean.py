"""clean@<source>: normalise Arabic text and drop records that fail the quality rules.

Every dropped record goes to data/quarantine/clean/<source>.parquet with the rule and the
value that failed; metrics/clean/<source>.json counts each rule.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from stages import config
from stages.arabic import arabic_ratio, dedup_key, normalise, words
from stages.console import StageError, console, parser, progress, run
from stages.ingest import quarantine_path, raw_path
from stages.schema import TEXT_FIELDS, with_id
from stages.storage import Quarantine, RecordWriter, count_rows, iter_records, write_json

Rule = Callable[[dict[str, Any], config.CleanParams], Any]


def clean_path(source: str) -> Path:
    return Path("data/clean") / f"{source}.parquet"


def normalise_record(rec: dict[str, Any], params: config.CleanParams) -> dict[str, Any]:
    for f in TEXT_FIELDS:
        rec[f] = normalise(rec[f], params.keep_diacritics)
    return with_id(rec)


# Each rule returns None when the record passes, else the value that failed. Order matters:
# the first failing rule is the one recorded.
def _empty_output(r, p):
    return "" if not r["output"] else None


def _short_output(r, p):
    n = words(r["output"])
    return n if n < p.min_output_words else None


def _short_instruction(r, p):
    n = words(r["instruction"])
    return n if n < p.min_instruction_words else None


def _too_long(r, p):
    n = sum(words(r[f]) for f in TEXT_FIELDS)
    return n if n > p.max_words else None


def _arabic_ratio(r, p):
    x = arabic_ratio(" ".join(r[f] for f in ("instruction", "input", "output")))
    return round(x, 3) if x < p.min_arabic_ratio else None


def _instruction_equals_output(r, p):
    return r["output"][:80] if dedup_key(r["instruction"]) == dedup_key(r["output"]) else None


RULES: dict[str, Rule] = {
    "empty_output": _empty_output,
    "short_output": _short_output,
    "short_instruction": _short_instruction,
    "too_long": _too_long,
    "arabic_ratio": _arabic_ratio,
    "instruction_equals_output": _instruction_equals_output,
}


def first_failure(rec: dict[str, Any], params: config.CleanParams) -> tuple[str, Any] | None:
    for name, rule in RULES.items():
        value = rule(rec, params)
        if value is not None:
            return name, value
    return None


def clean(source: str, params: config.CleanParams) -> dict[str, Any]:
    src = raw_path(source)
    if not src.exists():
        raise StageError(f"{src}: not found; run `dvc repro ingest@{source}` first")
    total = count_rows(src)
    kept = 0
    with (
        RecordWriter(clean_path(source), batch_size=params.batch_size) as out,
        Quarantine(quarantine_path("clean", source), "clean", params.batch_size) as quarantine,
    ):
        for rec in progress(iter_records(src, params.batch_size), f"clean {source}", total):
            rec = normalise_record(rec, params)
            failed = first_failure(rec, params)
            if failed:
                quarantine.reject(rec, *failed)
            else:
                out.write(rec)
                kept += 1
    dropped = quarantine.rows
    console.print(f"clean {source}: {total} in, {kept} kept, {dropped} quarantined")
    return {
        "records_in": total,
        "records_out": kept,
        "quarantined": dropped,
        "dropped": {rule: quarantine.by_rule.get(rule, 0) for rule in RULES},
    }


def main() -> None:
    p = parser("clean", __doc__)
    p.add_argument("source", help="a key of `sources` in params.yaml")
    args = p.parse_args()
    params = config.read_params()
    config.named("sources", args.source, params)  # checks the name before it becomes a path
    metrics = clean(args.source, config.section("clean", params))
    write_json(Path("metrics/clean") / f"{args.source}.json", metrics)


if __name__ == "__main__":
    run(main)
