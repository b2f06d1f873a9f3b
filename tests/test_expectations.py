"""The dataset contract (great-expectations) on small hand-made datasets: each bad dataset
fails exactly the expectations it should, and the stage stops with a readable table."""

import json
import re
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from instar.params.tasks import PUBLISHED
from instar.params.validate import ValidateParams
from instar.records.schema import RECORD_SCHEMA, make_record
from instar.text.scrub import scrub_pii
from instar.validation import expectations
from stages.validate import OUT, QUARANTINE, validate

SOURCES = ["a", "b"]
WORDS = "الشمس القمر البحر الجبل المدينة القرية الكتاب المدرسة الحديقة النهر".split()
# Loose enough that the balanced dataset below passes, tight enough to mean something.
PARAMS = {
    "min_rows": 50,
    "max_invalid_fraction": 0.05,
    "max_task_share": 0.5,
    "min_source_share": 0.2,
    "synthetic_share": [0.05, 0.5],
    "max_empty_share": {"input": 0.9},
    "chars_quantiles": {"output": {"p50": [5, 500], "p99": [None, 2000]}},
}


def records(n=100, tasks=("open_qa", "explanation", "summarization", "rewrite", "generation")):
    """A balanced, clean dataset: tasks and sources in turn, every 10th row synthetic."""
    return [
        make_record(
            instruction=f"اكتب عن {WORDS[i % 10]} رقم {i}.",
            input="" if i % 2 else f"نص عن {WORDS[(i + 3) % 10]}.",
            output=f"هذا نص قصير عن {WORDS[i % 10]} و{WORDS[(i + 1) % 10]} رقم {i}.",
            source=SOURCES[i % 2],
            source_row=i,
            origin="synthetic" if i % 10 == 0 else "collected",
            task=tasks[i % len(tasks)],
        )
        for i in range(n)
    ]


def frame(recs) -> pd.DataFrame:
    df = pa.Table.from_pylist(recs, schema=RECORD_SCHEMA).to_pandas()
    return df.astype({c: object for c in df.columns if c != "source_row"})


def status(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"id": df["id"], "record_check": expectations.PASSED})


def failing(df: pd.DataFrame, **params) -> set[str]:
    outcomes = expectations.run(
        status(df), df, ValidateParams(**{**PARAMS, **params}), SOURCES, docs=None
    )
    return {o.name for o in outcomes if not o.success}


def test_a_clean_dataset_meets_every_expectation_and_names_are_stable():
    outcomes = expectations.run(
        status(frame(records())), frame(records()), ValidateParams(**PARAMS), SOURCES, None
    )
    assert [o.name for o in outcomes if not o.success] == []
    names = [o.name for o in outcomes]
    assert len(names) == len(set(names))
    assert names[:3] == ["record_contract", "row_count", "id_unique"]
    assert {f"task_share:{t}" for t in PUBLISHED} <= set(names)
    assert {"source_share_min:a", "source_share_max:b", "synthetic_share_min"} <= set(names)
    assert {"no_email:output", "no_phone:input", "chars_quantiles:output"} <= set(names)


def test_a_dataset_that_is_90_percent_one_task_fails_that_tasks_share():
    recs = records(100)
    for r in recs[:90]:
        r["task"] = "classification"
    assert failing(frame(recs)) == {"task_share:classification"}


def test_leftover_pii_fails_the_email_and_phone_expectations_of_its_fields():
    recs = records()
    recs[3]["output"] += " راسلني على ahmad.k@example.com"
    recs[4]["input"] = "اتصل على +966 50 123 4567 بعد الظهر."
    recs[5]["instruction"] += " أو على الرقم 0551234567"
    assert failing(frame(recs)) == {"no_email:output", "no_phone:input", "no_phone:instruction"}


def test_too_few_rows_fail_the_row_count():
    assert failing(frame(records(40))) == {"row_count"}


def test_a_missing_source_and_a_swamping_one_fail_their_share_bounds():
    recs = records()
    for r in recs:
        r["source"] = "a"
    assert failing(frame(recs)) == {"source_share_min:b"}
    assert failing(frame(recs), source_share={"a": [0.1, 0.8]}) == {
        "source_share_min:b",
        "source_share_max:a",
    }


def test_synthetic_share_outside_its_bounds_fails():
    recs = records()
    for r in recs:
        r["origin"] = "collected"
    assert failing(frame(recs)) == {"synthetic_share_min"}
    for r in recs:
        r["origin"] = "synthetic"
    assert failing(frame(recs)) == {"synthetic_share_max"}


def test_a_lost_input_column_fails_the_empty_share():
    recs = records()
    for r in recs:
        r["input"] = ""
    assert failing(frame(recs)) == {"empty_share:input"}


def test_length_quantiles_outside_their_bounds_fail():
    recs = records()
    for r in recs[:60]:
        r["output"] = "نعم"
    assert failing(frame(recs)) == {"chars_quantiles:output"}


def test_nulls_and_duplicate_ids_in_the_passed_rows_are_caught_here_too():
    df = frame(records())
    df.loc[2, "topic"] = None
    df.loc[7, "id"] = df.loc[6, "id"]
    assert failing(df) == {"not_null:topic", "id_unique"}


def test_failing_outcomes_say_what_was_expected_observed_and_which_rows():
    recs = records(100)
    for r in recs[:90]:
        r["task"] = "classification"
    recs[10]["output"] += " support@example.org"
    df = frame(recs)
    outcomes = {
        o.name: o for o in expectations.run(status(df), df, ValidateParams(**PARAMS), SOURCES, None)
    }
    share = outcomes["task_share:classification"]
    assert share.expected == "at most 50%" and share.observed == "90% (90 rows)"
    assert set(share.samples) <= set(df["id"][:90]) and len(share.samples) == 3
    email = outcomes["no_email:output"]
    assert email.observed.startswith("1 row, e.g. ") and "support@example.org" in email.observed
    assert email.samples == (df["id"][10],)
    assert outcomes["chars_quantiles:output"].observed.startswith("p50=")


PHONES = [
    "+966 50 123 4567",
    "+20 100 123 4567",
    "00971501234567",
    "0501234567",
    "050-123-4567",
    "٠٥٠١٢٣٤٥٦٧",
    "(+212) 612-345-678",
]


@pytest.mark.parametrize("text", PHONES)
def test_phone_numbers_in_arab_world_formats_match(text):
    assert re.search(expectations.PHONE, f"رقمي {text} شكرا")


@pytest.mark.parametrize("text", PHONES)
def test_what_scrub_leaves_the_contract_accepts(text):
    # The contract's phone pattern is narrower than scrub's: every number it flags is one
    # that clean has replaced, so a clean record never fails it.
    scrubbed, counts = scrub_pii(f"رقمي {text} أو a.b@c.org شكرا")
    assert counts["phone"] == 1 and counts["email"] == 1
    assert not re.search(expectations.PHONE, scrubbed)
    assert not re.search(expectations.EMAIL, scrubbed)


@pytest.mark.parametrize(
    "text",
    [
        "في عام 1990 و2000",
        "بين 1914-1918",
        "10 20 30 40 50",
        "π = 3.14159265358",
        "السعر 1500000 ريال",
        "[PHONE] و [EMAIL]",
        "ISBN 978-3-16-148410-0",
    ],
)
def test_years_prices_and_placeholders_are_not_phone_numbers(text):
    assert not re.search(expectations.PHONE, text)
    assert not re.search(expectations.EMAIL, text)


def write(recs, path):
    pq.write_table(pa.Table.from_pylist(recs, schema=RECORD_SCHEMA), path)
    return path


def test_the_stage_stops_on_a_failed_expectation_and_still_writes_the_data_docs(
    tmp_path, monkeypatch
):
    from instar.console import console

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(console, "width", 200)
    recs = records(100)
    for r in recs[:90]:
        r["task"] = "classification"
    recs[3]["task"] = "poetry"  # one bad record, within max_invalid_fraction
    docs = tmp_path / "reports/validation"
    with console.capture() as cap:
        result = validate(
            write(recs, tmp_path / "in.parquet"),
            ValidateParams(**PARAMS),
            OUT,
            sources=SOURCES,
            dataset=True,
            docs=docs,
        )
    assert result["problems"] == ["dataset expectations failed: task_share:classification"]
    assert not OUT.exists()
    assert pq.read_table(QUARANTINE).column("rule").to_pylist()[0].startswith("task:isin")
    text = cap.get()
    assert "dataset expectations that failed" in text
    assert "task_share:classification" in text and "at most 50%" in text
    assert "89.9% (89 rows)" in text  # 89 of the 99 rows that pass the record checks
    summary = result["summary"]
    assert summary["passed"] is False and summary["quarantined"] == 1
    assert summary["expectation_success"]["task_share:classification"] is False
    assert summary["expectation_success"]["record_contract"] is True
    assert summary["expectations_passed"] == summary["expectations_evaluated"] - 1
    json.dumps(summary)  # plain JSON types only
    index = (docs / "index.html").read_text()
    assert "record_contract" in index and "instar" in index
    (page,) = docs.glob("validations/instar/validate/*/*.html")
    assert "task_share:classification: at most 50% of rows have task classification" in (
        page.read_text()
    )
    assert not list(tmp_path.glob("reports/.gx-*")) and not (tmp_path / "gx").exists()


def test_too_many_invalid_rows_show_in_the_data_docs_as_a_failed_record_contract(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    recs = records(100)
    for r in recs[:10]:
        r["task"] = "poetry"
    docs = tmp_path / "docs"
    result = validate(
        write(recs, tmp_path / "in.parquet"),
        ValidateParams(**PARAMS),
        OUT,
        sources=SOURCES,
        dataset=True,
        docs=docs,
    )
    assert result["problems"] == ["10 of 100 rows invalid (10.0% > max_invalid_fraction 5.0%)"]
    assert result["summary"]["expectation_success"]["record_contract"] is False
    (page,) = docs.glob("validations/record_contract/validate/*/*.html")
    assert "task:isin" in page.read_text()  # the failing check, as an unexpected value


def test_a_passing_run_writes_the_rows_and_replaces_old_data_docs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    docs = tmp_path / "docs"
    (docs / "validations").mkdir(parents=True)
    (docs / "validations/stale.html").write_text("old run")
    result = validate(
        write(records(), tmp_path / "in.parquet"),
        ValidateParams(**PARAMS),
        OUT,
        sources=SOURCES,
        dataset=True,
        docs=docs,
    )
    assert result["problems"] == [] and pq.read_table(OUT).num_rows == 100
    assert not (docs / "validations/stale.html").exists()
    assert (docs / "index.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "docs", "in.parquet"]


def test_cli_with_params_applies_the_dataset_expectations(tmp_path):
    import subprocess
    import sys

    import yaml

    recs = records(100)
    for r in recs[:90]:
        r["task"] = "classification"
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"sources": {s: {} for s in SOURCES}, "validate": PARAMS}))

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "stages.validate", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={"COLUMNS": "200", **__import__("os").environ},
        )

    assert cli(str(path)).returncode == 0  # the record checks alone pass
    ko = cli(str(path), "--params", str(params), "--docs", "out-docs")
    assert ko.returncode == 1
    assert "task_share:classification" in ko.stderr and "Traceback" not in ko.stderr
    assert (tmp_path / "out-docs/index.html").is_file()
    assert not (tmp_path / "data").exists()  # outside the pipeline nothing else is written


def test_gx_runs_in_memory_with_analytics_off(tmp_path):
    import os

    context = expectations._context(tmp_path / "site", tmp_path / "plugins")
    assert context.mode == "ephemeral" and context.config.analytics_enabled is False
    assert os.environ["GX_ANALYTICS_ENABLED"] == "false"  # stages/__init__.py, before GX loads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plugins"]  # the site: on build only


def site_bytes(folder) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def build_docs(df: pd.DataFrame, docs) -> dict[str, bytes]:
    expectations.run(status(df), df, ValidateParams(**PARAMS), SOURCES, docs)
    return site_bytes(docs)


def test_the_same_rows_build_the_same_data_docs_bytes(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    df = frame(records())
    first = build_docs(df, tmp_path / "one")
    second = build_docs(df, tmp_path / "two")
    assert first == second
    # Equal bytes say GX's uuid4 ids were replaced; the clock's date must be gone as well.
    now = datetime.now(UTC)
    pages = b"".join(v for k, v in first.items() if k.endswith(".html")).decode()
    assert now.strftime("%Y%m%d") not in pages and now.strftime("%Y-%m-%d") not in pages


def test_other_rows_or_source_date_epoch_give_the_data_docs_another_run_time(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    runs = lambda docs: {k.split("/")[3] for k in site_bytes(docs) if k.count("/") == 4}  # noqa: E731
    build_docs(frame(records()), tmp_path / "a")
    build_docs(frame(records(n=90)), tmp_path / "b")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    build_docs(frame(records()), tmp_path / "c")
    assert runs(tmp_path / "c") == {"20231114T221320.000000Z"}  # 1700000000 in UTC
    assert len(runs(tmp_path / "a") | runs(tmp_path / "b") | runs(tmp_path / "c")) == 3
