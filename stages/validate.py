"""validate: the gate between the data stages and training, in two contracts.

Record checks (pandera, `RecordModel` plus the params-bound checks of `contract`) judge
every row: types, nulls, ids, task and origin sets, lengths, Arabic-letter ratio, control
characters, known sources. Failing rows go to data/quarantine/validate.parquet with the
check and the failing value; the rest pass to data/validated/instar.parquet when their share
is at most `validate.max_invalid_fraction`.

Dataset expectations (great-expectations, instar/validation/expectations.py) judge the rows
that pass as a whole: row count, task, source and synthetic shares, nulls and empties, length
quantiles, leftover e-mails and phone numbers, unique ids. Their Data Docs go to
reports/validation/ (open index.html) and a summary to metrics/validation.json.

metrics/data.json holds the dataset totals that experiments compare (`dvc exp show`): rows
kept, rows quarantined by ingest, clean and validate, and duplicates dropped by dedup. The
per-source counts it adds up (metrics/ingest/, metrics/clean/, metrics/dedup.json) are
plain outputs, read with `dvc metrics show PATH`.

On any failure the stage prints what failed (check, expected, observed, sample rows), still
writes the Data Docs, and exits non-zero, so nothing downstream runs on bad data.

Outside DVC: `python -m stages.validate PATH` checks any parquet/jsonl file in the schema.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
import pyarrow as pyarrow
import pyarrow.parquet as pq
from pandera.typing import Series
from rich.table import Table

from instar.console import StageError, console, parser, run
from instar.params import core as config
from instar.params.tasks import ARABIC, TaskParams
from instar.params.tasks import load as load_tasks
from instar.params.validate import ValidateParams
from instar.records import paths
from instar.records.quarantine import Drop, Quarantine
from instar.records.schema import (
    FIELDS,
    ORIGINS,
    TEXT_FIELDS,
    record_id,
)
from instar.records.storage import RecordWriter, count_rows, write_json
from instar.text.arabic import arabic_enough

IN = Path("data/dedup/instar.parquet")
OUT = Path("data/validated/instar.parquet")
QUARANTINE = Path("data/quarantine/validate.parquet")
METRICS = Path("metrics/validation.json")
TOTALS = Path("metrics/data.json")
DOCS = Path("reports/validation")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# pandera reports a dataframe-level check once per column of a failing row; the failure is
# about one column, and only that one is kept.
DATAFRAME_CHECK_COLUMN = {"id_matches_content": "id", "arabic_ratio": "output"}


class RecordModel(pa.DataFrameModel):
    """One row of InstAr, as every stage from ingest to shard writes it.

    The checks whose bounds live in params (lengths, Arabic ratio, known tasks and sources)
    are added by `contract`.
    """

    id: Series[str] = pa.Field(str_matches=r"^[0-9a-f]{32}$")
    instruction: Series[str]
    input: Series[str]
    output: Series[str]
    system: Series[str]
    task: Series[str]
    topic: Series[str]
    source: Series[str] = pa.Field(str_matches=r"^[A-Za-z0-9_-]+$")
    source_row: Series[int] = pa.Field(ge=0)
    origin: Series[str] = pa.Field(isin=ORIGINS)
    meta: Series[str]

    @pa.dataframe_check(name="id_matches_content")
    def id_matches_content(cls, df: pd.DataFrame) -> Series[bool]:
        return pd.Series(
            [
                record_id(i, n, o) == r
                for i, n, o, r in zip(
                    df["instruction"], df["input"], df["output"], df["id"], strict=True
                )
            ],
            index=df.index,
        )

    @pa.check("id", name="id_unique")
    def id_unique(cls, ids: Series[str]) -> Series[bool]:
        return ~ids.duplicated(keep="first")  # the first of duplicates passes, the rest fail

    @pa.check(*TEXT_FIELDS, name="no_control_characters")
    def no_control_characters(cls, text: Series[str]) -> Series[bool]:
        return ~text.str.contains(CONTROL)

    @pa.check("meta", name="meta_is_json_object")
    def meta_is_json_object(cls, meta: Series[str]) -> Series[bool]:
        return meta.map(_is_json_object)

    class Config:
        strict = True
        coerce = False


# pandera names an inherited check by its method, not by its `name`: in RecordModel the two
# are kept equal, so a check reads the same in the contract that subclasses it.


def contract(
    params: ValidateParams,
    sources: Collection[str] | None = None,
    tasks: dict[str, TaskParams] | None = None,
) -> type[RecordModel]:
    """RecordModel with the checks bound to params; `sources=None` skips the source check,
    `tasks=None` knows the published taxonomy."""
    chars = params.chars.model_dump()
    tasks = load_tasks({}) if tasks is None else tasks
    known = list(tasks)
    # The output of a task whose output language is not Arabic skips the Arabic-ratio check
    # (clean's language rule has checked it as its own language); the instruction does not.
    exempt = [t for t, task in tasks.items() if task.output_language != ARABIC]

    class RecordContract(RecordModel):
        task: Series[str] = pa.Field(isin=known)

        @pa.check(*TEXT_FIELDS, name="chars_in_bounds")
        def chars_in_bounds(cls, text: Series[str]) -> Series[bool]:
            lo, hi = chars[text.name]
            return text.str.len().between(lo, hi)

        @pa.check("instruction", name="arabic_ratio")
        def instruction_arabic(cls, text: Series[str]) -> Series[bool]:
            return text.map(lambda t: arabic_enough(t, params.min_arabic_ratio))

        # A dataframe check because it reads the task; reported under `output`.
        @pa.dataframe_check(name="arabic_ratio")
        def output_arabic(cls, df: pd.DataFrame) -> Series[bool]:
            ok = df["output"].map(lambda t: arabic_enough(t, params.min_arabic_ratio))
            return ok | df["task"].isin(exempt)

        if sources is not None:

            @pa.check("source", name="source_known")
            def source_known(cls, source: Series[str]) -> Series[bool]:
                return source.isin(list(sources))

    return RecordContract


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (TypeError, ValueError):
        return False


def read_any(path: Path) -> pd.DataFrame:
    """A parquet or jsonl file as a DataFrame with pandas' plain string/int columns."""
    if not path.exists():
        raise StageError(f"{path}: not found")
    if path.suffix == ".parquet":
        df = pq.read_table(path).to_pandas()
    elif path.suffix in (".jsonl", ".json"):
        df = pd.read_json(path, lines=True, dtype=False)
    else:
        raise StageError(f"{path}: expected .parquet or .jsonl")
    for col in df.columns:
        if col != "source_row":
            df[col] = df[col].astype(object)
    return df


def failures(df: pd.DataFrame, model: type[RecordModel] | None = None) -> pd.DataFrame:
    """Every record-level failure at once: columns row, id, column, check, value.

    `row` is the 0-based position; it is empty for a failure of the whole table (a wrong
    type, a missing column). The default model is the contract of the default params.
    """
    model = model or contract(ValidateParams())
    try:
        model.validate(df, lazy=True)
    except pa.errors.SchemaErrors as e:
        fc = e.failure_cases
        column_of = fc["check"].map(DATAFRAME_CHECK_COLUMN)
        own_column = (fc["schema_context"] != "DataFrameSchema") | column_of.isna()
        fc = fc[own_column | (fc["column"] == column_of)]
        out = pd.DataFrame(
            {
                "row": pd.array(fc["index"], dtype="Int64"),
                "column": fc["column"].fillna("(dataframe)").astype(str),
                "check": fc["check"].astype(str),
                "value": fc["failure_case"].astype(str).str.slice(0, 200),
            }
        )
        ids = df["id"] if "id" in df else pd.Series([""] * len(df))
        out["id"] = [str(ids.iloc[int(r)]) if pd.notna(r) else "" for r in out["row"]]
        return out.sort_values(["row", "column", "check"], na_position="first").reset_index(
            drop=True
        )
    return pd.DataFrame(columns=["row", "id", "column", "check", "value"])


def check_label(check: str) -> tuple[str, str]:
    """A pandera check string as (name, argument): "isin(('a', 'b'))" -> ("isin", "a, b")."""
    name, _, arg = check.partition("(")
    arg = arg[:-1] if arg.endswith(")") else arg
    try:
        value = ast.literal_eval(arg) if arg else None
    except (ValueError, SyntaxError):
        value = arg
    if isinstance(value, (tuple, list)):
        value = ", ".join(str(v) for v in value)
    return name, "" if value is None else str(value)


def expected_text(
    check: str, column: str, params: ValidateParams, sources: Collection[str] | None
) -> str:
    """What a record check wants, in words, for the failure table."""
    if check == "chars_in_bounds" and column in TEXT_FIELDS:
        lo, hi = getattr(params.chars, column)
        return f"{lo} to {hi} characters"
    name, arg = check_label(check)
    words = {
        "id_unique": "no earlier row with this id",
        "id_matches_content": "id == record_id(instruction, input, output)",
        "no_control_characters": "no control characters (tab, newline allowed)",
        "meta_is_json_object": "a JSON object",
        "source_known": "a source in params.yaml: " + ", ".join(sorted(sources or ())),
        "arabic_ratio": f"Arabic letters >= {params.min_arabic_ratio:g} of letters",
        "not_nullable": "no null",
        "column_in_dataframe": "the column is there",
        "column_in_schema": "no column outside the schema",
        "isin": f"one of {arg}" + (" (params.yaml `tasks`)" if column == "task" else ""),
        "dtype": f"type {arg}",
        "str_matches": f"matches {arg}",
        "greater_than_or_equal_to": f">= {arg}",
    }
    return words.get(name, check)[:200]


def show(table_rows: list[tuple[str, str, str, str]], title: str) -> None:
    """A failure table a person can act on: check, expected, observed, sample rows."""
    table = Table(title=title, show_lines=True, title_justify="left")
    for col, ratio in (("check", 3), ("expected", 3), ("observed", 3), ("sample rows", 3)):
        table.add_column(col, ratio=ratio, overflow="fold")
    for row in table_rows:
        table.add_row(*row)
    console.print(table)


def record_table(
    fails: pd.DataFrame, params: ValidateParams, sources: Collection[str] | None
) -> list[tuple[str, str, str, str]]:
    rows = []
    for (column, check), grp in fails.groupby(["column", "check"], dropna=False, sort=True):
        located = grp.dropna(subset=["row"]).head(3)
        samples = [
            f"row {int(r)} ({i})" for r, i in zip(located["row"], located["id"], strict=True)
        ]
        value = str(grp["value"].iloc[0])[:60]
        observed = f"{len(grp)} row{'s' if len(grp) > 1 else ''}, e.g. {value!r}"
        if grp["row"].isna().all():
            observed = value
        rows.append(
            (
                f"{column}:{check_label(check)[0]}",
                expected_text(check, column, params, sources),
                observed,
                ", ".join(samples) or "(whole table)",
            )
        )
    return rows


def dataset_table(outcomes) -> list[tuple[str, str, str, str]]:
    return [
        (o.name, o.expected, o.observed, ", ".join(o.samples) or "-")
        for o in outcomes
        if not o.success
    ]


def record_status(df: pd.DataFrame, row_fails: pd.DataFrame) -> pd.DataFrame:
    """Every row's id and the first record check it failed ("passed" if none), for GX:
    its Data Docs then list the failing checks (e.g. "task:isin") with their counts."""
    status = pd.Series("passed", index=range(len(df)), dtype=object)
    first = row_fails.drop_duplicates("row")
    labels = [
        f"{c}:{check_label(k)[0]}" for c, k in zip(first["column"], first["check"], strict=True)
    ]
    status.iloc[first["row"].astype(int).to_list()] = labels
    ids = df["id"].astype(str).to_list() if "id" in df else [""] * len(df)
    return pd.DataFrame({"id": ids, "record_check": status.to_list()})


def validate(
    path: Path,
    params: ValidateParams,
    out: Path | None,
    *,
    sources: Collection[str] | None = None,
    tasks: dict[str, TaskParams] | None = None,
    dataset: bool = False,
    docs: Path | None = None,
) -> dict[str, Any]:
    """Check `path`; with `out`, write the quarantine and (if all is well) the passing rows.

    `dataset` adds the great-expectations suites over the rows that pass, and `docs` their
    Data Docs folder. Returns the metrics summary and the list of problems (empty: passed).
    """
    df = read_any(path)
    tasks = load_tasks({}) if tasks is None else tasks
    fails = failures(df, contract(params, sources, tasks))
    row_fails = fails.dropna(subset=["row"])
    table_fails = fails[fails["row"].isna()]
    bad_rows = sorted({int(r) for r in row_fails["row"]})
    invalid_fraction = len(bad_rows) / len(df) if len(df) else 0.0
    passed = df.drop(index=df.index[bad_rows]) if bad_rows else df
    problems = []
    if not table_fails.empty:
        checks = sorted(set(table_fails["column"] + ":" + table_fails["check"]))
        problems.append("table-level checks failed: " + ", ".join(checks))
    if invalid_fraction > params.max_invalid_fraction:
        problems.append(
            f"{len(bad_rows)} of {len(df)} rows invalid ({invalid_fraction:.1%} > "
            f"max_invalid_fraction {params.max_invalid_fraction:.1%})"
        )
    outcomes = []
    if dataset:
        from instar.validation import expectations  # GX takes seconds to import: only when needed

        outcomes = expectations.run(
            record_status(df, row_fails), passed, params, sources, docs, tasks=list(tasks)
        )
        failed = [o.name for o in outcomes if not o.success and o.name != "record_contract"]
        if failed:
            problems.append("dataset expectations failed: " + ", ".join(failed))
    elif len(passed) < params.min_rows:
        problems.append(f"{len(passed)} valid rows < min_rows {params.min_rows}")
    summary = summarise(df, passed, bad_rows, fails, problems)
    if dataset:
        summary |= summarise_expectations(outcomes)
    if not fails.empty:
        show(record_table(fails, params, sources), f"record checks that failed in {path}")
    if dataset and not all(o.success for o in outcomes):
        show(dataset_table(outcomes), "dataset expectations that failed")
    if out is not None:
        write_quarantine(df, row_fails, bad_rows)
        if problems:
            # DVC removes it before the run; by hand, a stale file would still feed shard.
            out.unlink(missing_ok=True)
        else:
            with RecordWriter(out) as w:
                w.write_table(pyarrow.Table.from_pandas(passed[list(FIELDS)], preserve_index=False))
    return {"summary": summary, "problems": problems}


def summarise(
    df: pd.DataFrame,
    passed: pd.DataFrame,
    bad_rows: list[int],
    fails: pd.DataFrame,
    problems: list[str],
) -> dict[str, Any]:
    return {
        "records_in": int(len(df)),
        "records_out": int(len(passed)),
        "quarantined": len(bad_rows),
        "invalid_fraction": round(len(bad_rows) / len(df), 6) if len(df) else 0.0,
        "failures_by_check": {
            str(k): int(v) for k, v in fails.groupby("check").size().sort_index().items()
        },
        "passed": not problems,
    }


def summarise_expectations(outcomes) -> dict[str, Any]:
    """The GX results in flat, stable keys: one boolean per expectation, by its name."""
    return {
        "expectations_evaluated": len(outcomes),
        "expectations_passed": sum(o.success for o in outcomes),
        "expectation_success": {o.name: o.success for o in outcomes},
    }


def write_quarantine(df: pd.DataFrame, row_fails: pd.DataFrame, bad_rows: list[int]) -> None:
    """Each failing row with its first failure (`column:check`) and the value that failed."""
    first = row_fails.assign(row=row_fails["row"].astype(int)).drop_duplicates("row")
    first = first.set_index("row")
    with Quarantine(QUARANTINE, "validate") as quarantine:
        for row in bad_rows:
            f = first.loc[row]
            rec = df.iloc[row][list(FIELDS)].to_dict()
            quarantine.reject(rec, Drop(f"{f['column']}:{f['check']}", f["value"]))


def dataset_totals(sources: list[str], summary: dict[str, Any]) -> dict[str, int]:
    """The few dataset figures `dvc exp show` lists: rows kept, quarantined, duplicates."""

    def counts(path: Path) -> dict[str, Any]:
        return json.loads(path.read_text(encoding="utf-8"))

    # From the quarantine files themselves, not the stages' metrics: a metrics file may
    # change (clean's shows a source's overrides) while the rows set aside do not.
    quarantined = summary["quarantined"]
    for s in sources:
        quarantined += count_rows(paths.quarantine_path("ingest", s))
        quarantined += count_rows(paths.quarantine_path("clean", s))
    return {
        "data.records": summary["records_out"],
        "data.quarantined": quarantined,
        "data.duplicates": counts(Path("metrics/dedup.json"))["duplicates"],
    }


def source_names(params: dict[str, Any], names: list[str] | None = None) -> list[str]:
    """The sources (params.yaml's, or `names`); a `source_share` bound on any other name is
    a typo."""
    names = list(params.get("sources") or {}) if names is None else names
    unknown = sorted(set((params.get("validate") or {}).get("source_share") or {}) - set(names))
    if unknown:
        raise config.ParamsError(
            f"invalid validate in params.yaml:\n  validate.source_share: {unknown} "
            f"not in sources ({', '.join(names)})"
        )
    return names


def main() -> None:
    p = parser("validate", __doc__)
    p.add_argument(
        "path",
        nargs="?",
        type=Path,
        help="check this parquet/jsonl file only (no outputs written); default: the "
        "pipeline's dedup output, with every output of the stage",
    )
    p.add_argument(
        "--params",
        type=Path,
        help="with PATH: judge it as the pipeline would, by this params file's `validate` "
        "bounds and `sources`, dataset expectations included; without it, the record checks "
        "only, with default bounds, and any failing row fails the run",
    )
    p.add_argument("--docs", type=Path, help="with --params: write the Data Docs to this folder")
    args = p.parse_args()
    if args.docs is not None and args.params is None:
        p.error("--docs needs --params (the Data Docs show the dataset expectations)")
    if args.path is None:
        raw = config.read_params()
        result = validate(
            IN,
            ValidateParams.load(raw),
            OUT,
            sources=source_names(raw, paths.source_names()),
            tasks=load_tasks(raw),
            dataset=True,
            docs=DOCS,
        )
        write_json(METRICS, result["summary"])
        write_json(TOTALS, dataset_totals(paths.source_names(), result["summary"]))
        if result["problems"]:
            raise StageError(
                "validation failed: " + "; ".join(result["problems"]) + f"\n  Data Docs: {DOCS}/"
                "index.html; rows that failed a record check: " + str(QUARANTINE)
            )
        console.print(
            f"validate: {result['summary']['records_out']} records pass, "
            f"{result['summary']['quarantined']} quarantined; Data Docs: {DOCS}/index.html"
        )
        return
    if args.params is not None:
        raw = config.read_params(args.params)
        params = ValidateParams.load(raw)
        result = validate(
            args.path,
            params,
            None,
            sources=source_names(raw),
            tasks=load_tasks(raw),
            dataset=True,
            docs=args.docs,
        )
    else:
        # No params: every failure counts, and no params.yaml is needed.
        params = ValidateParams(max_invalid_fraction=0, min_rows=0)
        result = validate(args.path, params, None)
    if result["problems"]:
        raise StageError(f"{args.path}: " + "; ".join(result["problems"]))
    s = result["summary"]
    console.print(
        f"{args.path}: valid ({s['records_in']} records, {s['quarantined']} failing a record "
        "check, within max_invalid_fraction)"
        if s["quarantined"]
        else f"{args.path}: {s['records_in']} records, all valid"
    )


if __name__ == "__main__":
    run(main)
