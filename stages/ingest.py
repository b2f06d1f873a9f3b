"""ingest@<source>: one raw source -> records in the shared schema (data/raw/<source>.parquet).

Instruction sources are mapped column by column; task sources (labelled items) become
instructions through the Arabic phrasings of the templates file, several per item, all of
one item sharing a split group; records sources (what `generate` wrote) are already in the
schema and keep their origin and meta, renamed to this source.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from instar.console import StageError, console, parser, progress, run
from instar.params import core as config
from instar.params.ingest import IngestParams
from instar.params.sources import SourceParams
from instar.params.tasks import load as load_tasks
from instar.params.tasks import require
from instar.records.paths import quarantine_path, raw_path
from instar.records.quarantine import Drop, Quarantine
from instar.records.readers import columns_of, read_rows
from instar.records.schema import FIELDS, ORIGINS, dump_meta, load_meta, make_record
from instar.records.storage import RecordWriter, write_json

REQUIRED = ("instruction", "output")
OPTIONAL = ("input", "system", "task", "topic")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


# What a mapper yields: (row number, a record or the Drop of a row it cannot map).
Mapped = Iterator[tuple[int, dict | Drop]]


def _as_text(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False, default=str)


def _missing(row: dict, column: str) -> Drop:
    return Drop("missing value", _as_text(row), f"column {column!r}")


TEXT_FIELDS = (*REQUIRED, *OPTIONAL)


def _wrong_type(row: dict, columns: dict[str, str]) -> Drop | None:
    """A text field that holds a number, list or object: kept as a string it would pass for
    text (`42`, `['a', 'b']`), so the row is rejected with the value as it came."""
    for field in TEXT_FIELDS:
        value = row.get(columns[field])
        if value is not None and not isinstance(value, str):
            kind = type(value).__name__
            return Drop("wrong_type", json.dumps(value, ensure_ascii=False, default=str),
                        f"column {columns[field]!r} holds a {kind}, not text")  # fmt: skip
    return None


def instruction_records(name: str, src: SourceParams, rows: Iterator) -> Mapped:
    """Map instruction rows onto the schema."""
    col = {f: src.columns.get(f, f) for f in (*REQUIRED, *OPTIONAL)}
    for i, row in rows:
        if isinstance(row, Drop):
            yield i, row
            continue
        # Absent or null is a broken row; an empty string is a value that clean will judge.
        missing = [col[f] for f in REQUIRED if row.get(col[f]) is None]
        if missing:
            yield i, _missing(row, missing[0])
            continue
        if wrong := _wrong_type(row, col):
            yield i, wrong
            continue
        origin = src.origin
        if src.origin_column:
            origin = src.origin_map.get(str(row.get(src.origin_column)), src.origin)
        meta = {c: row.get(c) for c in src.meta_columns}
        yield (
            i,
            make_record(
                instruction=_text(row[col["instruction"]]),
                output=_text(row[col["output"]]),
                input=_text(row.get(col["input"])) or "",
                system=_text(row.get(col["system"])) or "",
                task=_text(row.get(col["task"])) or src.default_task,
                topic=_text(row.get(col["topic"])) or "",
                source=name,
                source_row=i,
                origin=origin,
                meta=meta,
            ),
        )


def records_records(name: str, src: SourceParams, rows: Iterator) -> Mapped:
    """Rows already in the record schema: checked, renamed to this source, id recomputed.
    Where they came from before (a text source's row) stays in meta as `from_source`."""
    for i, row in rows:
        if isinstance(row, Drop):
            yield i, row
            continue
        raw = _as_text(row)
        if row.get("origin") not in ORIGINS:
            yield i, Drop("unknown origin", raw, repr(row.get("origin")))
            continue
        try:
            meta = load_meta(row.get("meta") or "")
        except json.JSONDecodeError as e:
            yield i, Drop("meta not JSON", raw, e.msg)
            continue
        if not isinstance(meta, dict):
            yield i, Drop("meta not JSON", raw, "not an object")
            continue
        missing = [f for f in ("instruction", "output", "task") if row.get(f) is None]
        if missing:
            yield i, _missing(row, missing[0])
            continue
        if wrong := _wrong_type(row, {f: f for f in TEXT_FIELDS}):
            yield i, wrong
            continue
        meta.setdefault("from_source", row.get("source"))
        meta.setdefault("from_row", row.get("source_row"))
        yield (
            i,
            make_record(
                instruction=_text(row["instruction"]),
                output=_text(row["output"]),
                input=_text(row.get("input")) or "",
                system=_text(row.get("system")) or "",
                task=_text(row["task"]),
                topic=_text(row.get("topic")) or "",
                source=name,
                source_row=i,
                origin=row["origin"],
                meta=meta,
            ),
        )


def load_template(path: Path, entry: str) -> dict[str, Any]:
    try:
        templates = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StageError(f"{path}: templates file not found") from None
    if entry not in templates:
        raise StageError(f"{path}: no template {entry!r} (has: {', '.join(templates)})")
    return templates[entry]


def task_records(
    name: str, src: SourceParams, rows: Iterator, template: dict, per_item: int, seed: int
) -> Mapped:
    """Render `per_item` phrasings of each labelled item, chosen reproducibly per item."""
    phrasings = template["phrasings"]
    labels = template.get("labels") or {}
    k = min(per_item, len(phrasings))
    for i, row in rows:
        if isinstance(row, Drop):
            yield i, row
            continue
        values = {p: _text(row.get(src.columns.get(p, p))) for p in _placeholders(phrasings)}
        empty = [p for p, v in values.items() if p != "label" and not v] + (
            ["label"] if "label" in values and not values["label"] else []
        )
        if empty:
            yield i, _missing(row, src.columns.get(empty[0], empty[0]))
            continue
        if labels:
            label = values.get("label")
            if label not in labels:
                yield i, Drop("unknown label", str(label), f"{label!r}; known: {', '.join(labels)}")
                continue
            values["label"] = labels[values["label"]]
        item_key = hashlib.sha256(dump_meta(values).encode()).hexdigest()[:16]
        rng = random.Random(f"{seed}:{name}:{item_key}")
        meta_extra = {c: row.get(c) for c in src.meta_columns}
        for ph in rng.sample(phrasings, k):
            yield (
                i,
                make_record(
                    instruction=ph["instruction"].format_map(values),
                    input=ph.get("input", "").format_map(values),
                    output=ph["output"].format_map(values),
                    task=template["task"],
                    topic=template.get("topic", ""),
                    source=name,
                    source_row=i,
                    origin=src.origin,
                    meta={"group": f"{name}:{item_key}", "template": ph["id"], **meta_extra},
                ),
            )


def _placeholders(phrasings: list[dict]) -> list[str]:
    import string

    names = []
    for ph in phrasings:
        for field in ("instruction", "input", "output"):
            for _, fname, _, _ in string.Formatter().parse(ph.get(field, "")):
                if fname and fname not in names:
                    names.append(fname)
    return names


def column_set(name: str, src: SourceParams, header: list[str]) -> SourceParams:
    """`src` with the mapping of the column set its file has; another set is refused by name
    (a hub set renamed a column between commits: a silent mis-mapping would lose it)."""
    if not src.column_sets:
        return src
    for cs in src.column_sets:
        if set(cs.found) == set(header):
            return src.model_copy(update={"columns": cs.columns})
    known = " | ".join(", ".join(cs.found) for cs in src.column_sets)
    raise StageError(
        f"{src.path}: its columns ({', '.join(header)}) are none of sources.{name}.column_sets "
        f"(known: {known}); add this set with its mapping to read it"
    )


def ingest(name: str, src: SourceParams, params: IngestParams) -> dict[str, int]:
    path = Path(src.path)
    template = load_template(Path(params.templates), src.template) if src.kind == "task" else None
    if not path.exists():
        hint = " (hub@ writes it: `dvc repro` or `dvc pull`)" if "data/hub/" in src.path else ""
        raise StageError(f"{path}: source file of {name!r} not found{hint}")
    if path.stat().st_size == 0:
        raise StageError(f"{path}: source {name!r} is empty")
    header = columns_of(path, src.format)
    if header is not None:
        src = column_set(name, src, header)
        needed = _needed_columns(src, template)
        absent = [c for c in needed if c not in header]
        if absent:
            raise StageError(
                f"{path}: required column {absent[0]!r} missing (columns: {', '.join(header)})"
            )
    seen: dict[str, None] = dict.fromkeys(header or [])  # the columns the rows have
    rows = _noting_columns(read_rows(path, src.format, params.batch_size), seen)
    if template is not None:
        records = task_records(name, src, rows, template, params.phrasings_per_item, params.seed)
    elif src.kind == "records":
        records = records_records(name, src, rows)
    else:
        records = instruction_records(name, src, rows)

    kept = bad = rows_kept = 0
    last_kept_row = first_drop = None
    with (
        RecordWriter(raw_path(name)) as out,
        Quarantine(quarantine_path("ingest", name), "ingest") as quarantine,
    ):
        for i, rec in progress(records, f"ingest {name}"):
            if not isinstance(rec, Drop):
                out.write(rec)
                kept += 1
                rows_kept += i != last_kept_row  # a task row makes several records
                last_kept_row = i
                continue
            if src.on_error == "fail":
                raise StageError(
                    f"{path}: row {i}: {rec} (set sources.{name}.on_error: quarantine "
                    "to set such rows aside and go on)"
                )
            bad += 1
            first_drop = first_drop or (i, rec)
            lineage = make_record(
                instruction="",
                output="",
                source=name,
                source_row=i,
                origin=src.origin,
                task=src.default_task,
            )
            quarantine.reject(lineage, rec)
        if kept == 0 and bad == 0:
            raise StageError(f"{path}: source {name!r} has no rows")
        check_rejected(name, src, path, rows_kept, bad, first_drop, list(seen), template)
    counts = {"records": kept, "quarantined": bad, "rules": quarantine.by_rule}
    console.print(f"ingest {name}: {kept} records, {bad} quarantined")
    return counts


def _noting_columns(rows, seen: dict[str, None], upto: int = 100):
    """The rows, unchanged; the columns of the first `upto` readable ones noted in `seen`."""
    for n, (i, row) in enumerate(rows):
        if n < upto and isinstance(row, dict):
            seen.update(dict.fromkeys(row))
        yield i, row


def check_rejected(
    name: str, src: SourceParams, path: Path, kept: int, bad: int, first, found: list[str],
    template: dict | None,
) -> None:  # fmt: skip
    """A source whose rows are all rejected, or more than `max_rejected_fraction` of them,
    fails: a wrong column mapping or a wrong file is not a few bad rows."""
    if not bad:
        return
    i, drop = first
    needed = _needed_columns(src, template)
    if kept == 0:
        hint = (
            f"; the rows have the columns {found}, the mapping expects {needed}: map them with "
            f"sources.{name}.columns (record field -> source column)"
            if found and not set(needed) <= set(found)
            else ""
        )
        raise StageError(
            f"{path}: all {bad} rows of source {name!r} were rejected (row {i}: {drop}){hint}"
        )
    share = bad / (kept + bad)
    if share > src.max_rejected_fraction:
        raise StageError(
            f"{path}: {bad} of {kept + bad} rows of source {name!r} rejected ({share:.1%} > "
            f"sources.{name}.max_rejected_fraction {src.max_rejected_fraction:.1%}; row {i}: "
            f"{drop}). Fix the source or its mapping, or raise the bound."
        )


def _needed_columns(src: SourceParams, template: dict | None) -> list[str]:
    if template is not None:
        return [src.columns.get(p, p) for p in _placeholders(template["phrasings"])]
    if src.kind == "records":
        return [f for f in FIELDS if f not in ("id", "source_row")]
    return [src.columns.get(f, f) for f in REQUIRED]


def main() -> None:
    p = parser("ingest", __doc__)
    p.add_argument("source", help="a key of `sources` in params.yaml")
    args = p.parse_args()
    params = config.read_params()
    src = SourceParams.named(args.source, params)
    ingest_params = IngestParams.load(params)
    # The tasks this source's records get without a task column of their own: known ones.
    tasks = load_tasks(params)
    if src.kind == "instructions":
        require([src.default_task], f"sources.{args.source}.default_task", tasks)
    elif src.kind == "task":
        template = load_template(Path(ingest_params.templates), src.template)
        require([template["task"]], f"{ingest_params.templates}, template {src.template}", tasks)
    counts = ingest(args.source, src, ingest_params)
    write_json(Path("metrics/ingest") / f"{args.source}.json", counts)


if __name__ == "__main__":
    run(main)
