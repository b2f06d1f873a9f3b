import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from instar.params.validate import ValidateParams
from instar.records.schema import RECORD_SCHEMA, make_record
from stages.validate import (
    OUT,
    QUARANTINE,
    contract,
    dataset_totals,
    failures,
    record_status,
    validate,
)


def record(row: int, instruction: str, output: str, task: str = "explanation") -> dict:
    return make_record(
        instruction=instruction,
        output=output,
        source="s",
        source_row=row,
        origin="collected",
        task=task,
    )


def records(n=20):
    return [
        record(i, f"اشرح الفكرة رقم {i}.", f"هذه الفكرة رقم {i}.", "explanation") for i in range(n)
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


# --- the record contract, one hand-made bad dataset at a time --------------------------------


def failed(df: pd.DataFrame, **kw) -> set[tuple[int, str, str]]:
    """(row, column, check) of every record failure, under the contract of `kw` params."""
    fails = failures(df, contract(ValidateParams(**kw.pop("params", {})), **kw))
    rows = zip(fails["row"], fails["column"], fails["check"], strict=True)
    return {(int(r), c, k) for r, c, k in rows}


def test_wrong_types_are_named_by_column_and_type():
    df = frame(records())
    df["source_row"] = df["source_row"].astype(str)  # a whole column of the wrong type
    df["task"] = df["task"].astype(object)
    df.loc[3, "task"] = 7  # one value of the wrong type in a text column
    fails = failures(df)
    table = fails[fails["row"].isna()]
    assert ("source_row", "dtype('int64')") in set(
        zip(table["column"], table["check"], strict=True)
    )
    rows = fails.dropna(subset=["row"])
    assert set(rows["row"].astype(int)) == {3}
    assert any(
        c == "task" and k.startswith("dtype(")
        for c, k in zip(rows["column"], rows["check"], strict=True)
    )


def test_a_null_is_named_with_its_row():
    df = frame(records())
    df.loc[4, "output"] = None
    assert (4, "output", "not_nullable") in failed(df)


def test_duplicate_ids_fail_on_the_later_rows_only():
    recs = records()
    recs[5] = dict(recs[2])
    recs[9] = dict(recs[2])
    assert failed(frame(recs)) == {(5, "id", "id_unique"), (9, "id", "id_unique")}


def test_a_tampered_id_fails_only_the_content_check_once():
    recs = records()
    recs[3]["id"] = "0" * 32
    assert failed(frame(recs)) == {(3, "id", "id_matches_content")}


def test_an_unknown_task_and_origin_fail_their_sets():
    recs = records()
    recs[1]["task"], recs[2]["origin"] = "poetry", "scraped"
    found = failed(frame(recs))
    assert {(r, c) for r, c, _ in found} == {(1, "task"), (2, "origin")}
    assert all(k.startswith("isin(") for _, _, k in found)


def test_english_rows_fail_the_arabic_ratio_of_instruction_and_output():
    recs = records()
    for i in (4, 7):
        recs[i] = record(
            i, f"Explain idea number {i}.", f"Idea {i} is about Rayleigh scattering.", "explanation"
        )
    assert failed(frame(recs)) == {
        (i, c, "arabic_ratio") for i in (4, 7) for c in ("instruction", "output")
    }


def test_a_task_whose_output_is_not_arabic_skips_the_output_ratio_but_not_the_instruction():
    from instar.params.tasks import PUBLISHED
    from instar.params.tasks import load as load_tasks

    recs = records()
    recs[2] = record(2, "اكتب دالة بايثون تجمع عددين.", "def add(a, b):\n    return a + b", "code")
    recs[3] = record(3, "Write a Python function.", "def f(): pass", "code")
    recs[4] = record(4, "ترجم: الطقس جميل.", "The weather is nice.", "translation")
    # a task the taxonomy lacks is refused whatever its output
    assert (2, "task", "isin(" + str(list(PUBLISHED)) + ")") in failed(frame(recs))
    code = {"name_ar": "برمجة", "name_en": "Code", "output_language": "any"}
    english = {"name_ar": "ترجمة", "name_en": "Translation", "output_language": "english"}
    tasks = load_tasks({"tasks": {**PUBLISHED, "code": code, "translation": english}})
    assert failed(frame(recs), tasks=tasks) == {(3, "instruction", "arabic_ratio")}
    # declared Arabic, the same outputs fail the ratio
    arabic = load_tasks({"tasks": {**PUBLISHED, "code": {**code, "output_language": "arabic"}}})
    assert (2, "output", "arabic_ratio") in failed(frame(recs[:4]), tasks=arabic)


def test_an_output_without_letters_has_no_ratio_to_fail():
    recs = records()
    recs[0] = record(0, "ما ناتج جمع ٢٠ و٢٢؟", "42", "closed_qa")
    assert failed(frame(recs)) == set()


def test_length_bounds_come_from_params():
    recs = records()
    recs[6] = record(6, "اشرح " * 30, "نعم", "explanation")
    tight = {"chars": {"instruction": [2, 100], "output": [5, 1000]}}
    assert failed(frame(recs), params=tight) == {
        (6, "instruction", "chars_in_bounds"),
        (6, "output", "chars_in_bounds"),
    }


def test_control_characters_are_named_by_column():
    recs = records()
    recs[8]["system"] = "نظام\x1b"
    assert failed(frame(recs)) == {(8, "system", "no_control_characters")}


def test_a_source_unknown_to_params_fails_only_when_sources_are_given():
    recs = records()
    recs[3]["source"] = "typo_source"
    assert failed(frame(recs), sources=["s"]) == {(3, "source", "source_known")}
    assert failed(frame(recs)) == set()


def test_the_failure_table_says_check_expected_observed_and_rows(tmp_path, monkeypatch):
    from instar.console import console

    monkeypatch.setattr(console, "width", 240)
    recs = records(50)
    recs[7]["task"] = "poetry"
    recs[9]["id"] = "f" * 32
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(recs, schema=RECORD_SCHEMA), path)
    with console.capture() as cap:
        validate(path, ValidateParams(max_invalid_fraction=0, min_rows=0), None)
    text = cap.get()
    for word in ("check", "expected", "observed", "sample rows"):
        assert word in text
    assert "task:isin" in text and "one of open_qa, closed_qa" in text
    assert "1 row, e.g. 'poetry'" in text and f"row 7 ({recs[7]['id']})" in text
    assert "id:id_matches_content" in text and "record_id(instruction, input, output)" in text


def test_record_status_names_each_rows_first_failing_check():
    recs = records(5)
    recs[1]["task"] = "poetry"
    df = frame(recs)
    fails = failures(df)
    status = record_status(df, fails.dropna(subset=["row"]))
    assert status["record_check"].to_list() == ["passed", "task:isin"] + ["passed"] * 3
    assert status["id"].to_list() == df["id"].to_list()


def test_a_source_share_bound_on_an_unknown_source_is_a_params_error():
    from instar.params.core import ParamsError
    from stages.validate import source_names

    params = {"sources": {"a": {}, "b": {}}, "validate": {"source_share": {"c": [0, 0.5]}}}
    with pytest.raises(ParamsError, match="validate.source_share"):
        source_names(params)
    assert source_names({"sources": {"a": {}, "b": {}}}) == ["a", "b"]


@pytest.mark.parametrize(
    "bad",
    [
        {"source_share": {"a": [0.6, 0.2]}},
        {"synthetic_share": [0.5, 1.5]},
        {"chars": {"output": [10, 1]}},
        {"chars_quantiles": {"output": {"0.5": [1, 2]}}},
        {"max_task_share": 0},
        {"max_empty_share": {"output": 0.1}},
    ],
)
def test_validate_params_refuse_what_cannot_be_meant(bad):
    from instar.params.core import ParamsError
    from instar.params.validate import ValidateParams

    with pytest.raises(ParamsError, match="validate"):
        ValidateParams.load({"validate": bad})


def test_dataset_totals_add_up_the_rows_the_quarantine_files_hold(tmp_path, monkeypatch):
    from instar.records.paths import quarantine_path
    from instar.records.quarantine import Drop, Quarantine
    from instar.records.schema import make_record

    monkeypatch.chdir(tmp_path)

    def set_aside(stage, source, n):
        with Quarantine(quarantine_path(stage, source), stage) as q:
            for i in range(n):
                rec = make_record(instruction="", output="", source=source, source_row=i,
                                  origin="collected", task="open_qa")  # fmt: skip
                q.reject(rec, Drop("rule", i))

    for stage, counts in (("ingest", (1, 2)), ("clean", (3, 4))):
        for source, n in zip(("a", "b"), counts, strict=True):
            set_aside(stage, source, n)
    set_aside("clean", "stale", 100)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/dedup.json").write_text(json.dumps({"duplicates": 5}))
    summary = {"records_out": 40, "quarantined": 6}
    assert dataset_totals(["a", "b"], summary) == {
        "data.records": 40,
        "data.quarantined": 1 + 2 + 3 + 4 + 6,  # not a file of a source no longer listed
        "data.duplicates": 5,
    }
