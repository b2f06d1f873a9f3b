"""validate: the record contract (pandera) between the data stages and training.

Rows that break a record check go to data/quarantine/validate.parquet with the check and
the failing value; the rest pass to data/validated/instar.parquet when their share is at
most `validate.max_invalid_fraction`. Otherwise the stage prints what failed and exits
non-zero, so nothing downstream runs on bad data.

Outside DVC: `python -m stages.validate PATH` checks any parquet/jsonl file in the schema.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
import pyarrow as pyarrow
import pyarrow.parquet as pq
from pandera.typing import Series
from rich.table import Table

from stages import config
from stages.console import StageError, console, parser, run
from stages.schema import FIELDS, ORIGINS, QUARANTINE_SCHEMA, RECORD_SCHEMA, TASKS, record_id
from stages.storage import atomic_path, write_json

IN = Path("data/dedup/instar.parquet")
OUT = Path("data/validated/instar.parquet")
QUARANTINE = Path("data/quarantine/validate.parquet")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class RecordModel(pa.DataFrameModel):
    """One row of InstAr, as every stage from ingest to shard writes it."""

    id: Series[str] = pa.Field(str_matches=r"^[0-9a-f]{32}$")
    instruction: Series[str] = pa.Field(str_length={"min_value": 1})
    input: Series[str]
    output: Series[str] = pa.Field(str_length={"min_value": 1})
    system: Series[str]
    task: Series[str] = pa.Field(isin=TASKS)
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

    @pa.dataframe_check(name="no_control_characters")
    def no_control_characters(cls, df: pd.DataFrame) -> Series[bool]:
        text = df["instruction"] + df["input"] + df["output"] + df["system"]
        return ~text.str.contains(CONTROL)

    @pa.check("meta", name="meta_is_json_object")
    def meta_is_json(cls, meta: Series[str]) -> Series[bool]:
        return meta.map(_is_json_object)

    class Config:
        strict = True
        coerce = False


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


def failures(df: pd.DataFrame) -> pd.DataFrame:
    """Every record-level failure at once: columns row, id, column, check, value."""
    try:
        RecordModel.validate(df, lazy=True)
    except pa.errors.SchemaErrors as e:
        fc = e.failure_cases
        out = pd.DataFrame(
            {
                "row": fc["index"],
                "column": fc["column"].fillna("(dataframe)"),
                "check": fc["check"].astype(str),
                "value": fc["failure_case"].astype(str).str.slice(0, 200),
            }
        )
        ids = df["id"] if "id" in df else pd.Series([""] * len(df))
        out["id"] = [ids.iloc[int(r)] if pd.notna(r) else "" for r in out["row"]]
        return out.reset_index(drop=True)
    return pd.DataFrame(columns=["row", "id", "column", "check", "value"])


def show(fails: pd.DataFrame, title: str) -> None:
    table = Table(title=title, show_lines=False)
    for col in ("check", "column", "failures", "sample rows", "sample value"):
        table.add_column(col)
    for (check, column), grp in fails.groupby(["check", "column"], dropna=False, sort=True):
        rows = ", ".join(str(int(r)) for r in grp["row"].dropna().head(3)) or "(whole table)"
        table.add_row(check, column, str(len(grp)), rows, str(grp["value"].iloc[0])[:60])
    console.print(table)


def validate(path: Path, params: config.ValidateParams, out: Path | None) -> dict[str, Any]:
    df = read_any(path)
    fails = failures(df)
    row_fails = fails.dropna(subset=["row"])
    table_fails = fails[fails["row"].isna()]
    bad_rows = sorted({int(r) for r in row_fails["row"]})
    invalid_fraction = len(bad_rows) / len(df) if len(df) else 0.0
    passed = df.drop(index=df.index[bad_rows]) if bad_rows else df
    problems = []
    if not table_fails.empty:
        problems.append("table-level checks failed")
    if invalid_fraction > params.max_invalid_fraction:
        problems.append(
            f"{len(bad_rows)} of {len(df)} rows invalid ({invalid_fraction:.1%} > "
            f"max_invalid_fraction {params.max_invalid_fraction:.1%})"
        )
    if len(passed) < params.min_rows:
        problems.append(f"{len(passed)} valid rows < min_rows {params.min_rows}")
    summary = {
        "records_in": int(len(df)),
        "records_out": int(len(passed)),
        "quarantined": len(bad_rows),
        "invalid_fraction": round(invalid_fraction, 6),
        "failures_by_check": {
            str(k): int(v) for k, v in fails.groupby("check").size().sort_index().items()
        },
        "passed": not problems,
    }
    if not fails.empty:
        show(fails, f"record checks that failed in {path}")
    if out is not None:
        write_quarantine(df, row_fails, bad_rows)
        if not problems:
            with atomic_path(out, ".parquet") as tmp:
                table = pyarrow.Table.from_pandas(passed[list(FIELDS)], preserve_index=False)
                pq.write_table(table.cast(RECORD_SCHEMA), tmp, compression="zstd")
    return {"summary": summary, "problems": problems}


def write_quarantine(df: pd.DataFrame, row_fails: pd.DataFrame, bad_rows: list[int]) -> None:
    first = row_fails.assign(row=row_fails["row"].astype(int)).drop_duplicates("row")
    first = first.set_index("row").loc[bad_rows] if bad_rows else first.set_index("row")
    q = df.iloc[bad_rows][list(FIELDS)].copy() if bad_rows else df.head(0)[list(FIELDS)].copy()
    q["stage"] = "validate"
    q["rule"] = (first["column"] + ":" + first["check"]).to_list() if bad_rows else []
    q["value"] = first["value"].to_list() if bad_rows else []
    with atomic_path(QUARANTINE, ".parquet") as tmp:
        table = pyarrow.Table.from_pandas(q, preserve_index=False)
        pq.write_table(table.cast(QUARANTINE_SCHEMA), tmp, compression="zstd")


def main() -> None:
    p = parser("validate", __doc__)
    p.add_argument(
        "path",
        nargs="?",
        type=Path,
        help="check this parquet/jsonl file only: no outputs written, and any failing row "
        "fails the run; default: the pipeline's dedup output",
    )
    args = p.parse_args()
    if args.path is not None:
        # Outside the pipeline every failure counts, and no params.yaml is needed.
        result = validate(
            args.path, config.ValidateParams(max_invalid_fraction=0, min_rows=0), None
        )
        if result["problems"]:
            raise StageError(f"{args.path}: " + "; ".join(result["problems"]))
        console.print(f"{args.path}: {result['summary']['records_in']} records, all valid")
        return
    result = validate(IN, config.section("validate"), OUT)
    write_json("metrics/validation.json", result["summary"])
    if result["problems"]:
        raise StageError("validation failed: " + "; ".join(result["problems"]))
    console.print(
        f"validate: {result['summary']['records_out']} records pass, "
        f"{result['summary']['quarantined']} quarantined"
    )


if __name__ == "__main__":
    run(main)
