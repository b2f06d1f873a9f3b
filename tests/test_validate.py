import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stages.config import ValidateParams
from stages.schema import RECORD_SCHEMA, make_record
from stages.validate import OUT, QUARANTINE, failures, validate


def records(n=20):
    return [
        make_record(
            instruction=f"اشرح الفكرة رقم {i}.",
            output=f"هذه الفكرة رقم {i}.",
            source="s",
            source_row=i,
            origin="collected",
            task="explanation",
        )
        for i in range(n)
    ]


def frame(recs):
    return pa.Table.from_pylist(recs, schema=RECORD_SCHEMA).to_pandas()


def checks(df: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(failures(df)["column"], failures(df)["check"], strict=True))


def test_clean_records_pass():
    assert failures(frame(records())).empty


def test_each_broken_record_is_named_by_column_and_check():
    recs = records()
    recs[1]["id"] = recs[0]["id"]  # duplicate id (and so also a tampered one)
    recs[2]["output"] = recs[2]["output"] + " معدل"  # tampered: id no longer matches
    recs[3]["task"] = "poetry"
    recs[4]["origin"] = "scraped"
    recs[5]["meta"] = "not json"
    recs[6]["instruction"] = "سؤال\x07"
    found = checks(frame(recs))
    assert ("id", "id_unique") in found
    assert any(c == "task" and k.startswith("isin") for c, k in found)
    assert any(c == "origin" and k.startswith("isin") for c, k in found)
    assert ("meta", "meta_is_json_object") in found
    assert any(k == "id_matches_content" for _, k in found)
    assert any(k == "no_control_characters" for _, k in found)
    rows = set(failures(frame(recs))["row"].astype(int))
    assert rows == {1, 2, 3, 4, 5, 6}


def test_wrong_type_is_reported():
    df = frame(records())
    df["source_row"] = df["source_row"].astype(str)
    assert any(c == "source_row" for c, _ in checks(df))


def test_few_bad_rows_are_quarantined_and_the_rest_pass(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recs = records(100)
    recs[7]["task"] = "poetry"
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(recs, schema=RECORD_SCHEMA), path)
    result = validate(path, ValidateParams(max_invalid_fraction=0.05, min_rows=10), OUT)
    assert result["problems"] == []
    assert pq.read_table(OUT).num_rows == 99
    (q,) = pq.read_table(QUARANTINE).to_pylist()
    assert q["source_row"] == 7 and q["rule"].startswith("task:isin") and q["value"] == "poetry"


def test_too_many_bad_rows_stop_and_write_no_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recs = records(10)
    for r in recs[:3]:
        r["task"] = "poetry"
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(recs, schema=RECORD_SCHEMA), path)
    result = validate(path, ValidateParams(max_invalid_fraction=0.1, min_rows=1), OUT)
    assert any("3 of 10 rows invalid" in p for p in result["problems"])
    assert not OUT.exists()
    assert pq.read_table(QUARANTINE).num_rows == 3


def test_standalone_cli_validates_a_jsonl_file(tmp_path):
    import subprocess
    import sys

    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    recs = records(5)
    good.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
    recs[0]["task"] = "poetry"
    bad.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
    ok = subprocess.run(
        [sys.executable, "-m", "stages.validate", str(good)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    ko = subprocess.run(
        [sys.executable, "-m", "stages.validate", str(bad)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert ko.returncode != 0
    assert "isin" in ko.stderr and "task" in ko.stderr
