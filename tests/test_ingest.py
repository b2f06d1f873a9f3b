import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from instar.console import StageError
from instar.params.ingest import IngestParams
from instar.params.sources import ColumnSet, SourceParams
from instar.records.paths import quarantine_path, raw_path
from instar.records.schema import load_meta
from stages.ingest import ingest

ROOT = Path(__file__).resolve().parents[1]
PARAMS = IngestParams(templates=str(ROOT / "templates/tasks.yaml"), phrasings_per_item=2)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def src(**kw) -> SourceParams:
    return SourceParams(**kw)


def read(name: str) -> list[dict]:
    return pq.read_table(raw_path(name)).to_pylist()


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text(
        "".join(
            (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows
        ),
        encoding="utf-8",
    )
    return path


GOOD = {"question": "ما أطول نهر في العالم؟", "answer": "نهر النيل."}


def test_jsonl_with_column_mapping_and_default_task_keeps_lineage(tmp_path):
    write_jsonl(
        tmp_path / "a.jsonl", [GOOD, {"question": "لماذا السماء زرقاء؟", "answer": "بسبب التشتت."}]
    )
    counts = ingest(
        "a",
        src(
            format="jsonl",
            path="a.jsonl",
            default_task="open_qa",
            columns={"instruction": "question", "output": "answer"},
        ),
        PARAMS,
    )
    rows = read("a")
    assert counts["records"] == 2 and counts["quarantined"] == 0
    assert [r["source_row"] for r in rows] == [0, 1]
    assert rows[0]["instruction"] == GOOD["question"] and rows[0]["output"] == GOOD["answer"]
    assert {r["task"] for r in rows} == {"open_qa"} and {r["source"] for r in rows} == {"a"}


def test_instar_500k_columns_map_onto_the_schema_without_loss(tmp_path):
    cols = ["instruction", "output", "source", "task", "system", "uuid", "topic"]
    row = [
        "لخص النص التالي.",
        "ملخص قصير.",
        "generated",
        "summarization",
        "أنت مساعد مفيد.",
        "5c1f-uuid",
        "الأدب",
    ]
    with open(tmp_path / "i.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([cols, row])
    ingest(
        "i",
        src(
            format="csv",
            path="i.csv",
            origin_column="source",
            origin_map={"generated": "synthetic"},
            meta_columns=["source", "uuid"],
        ),
        PARAMS,
    )
    (r,) = read("i")
    meta = load_meta(r["meta"])
    recovered = {
        "instruction": r["instruction"],
        "output": r["output"],
        "source": meta["source"],
        "task": r["task"],
        "system": r["system"],
        "uuid": meta["uuid"],
        "topic": r["topic"],
    }
    assert recovered == dict(zip(cols, row, strict=True))
    assert r["origin"] == "synthetic" and r["source"] == "i"


def test_parquet_source(tmp_path):
    pq.write_table(
        pa.Table.from_pylist([{"instruction": "اشرح الجاذبية.", "output": "قوة تجاذب."}]),
        tmp_path / "p.parquet",
    )
    assert ingest("p", src(format="parquet", path="p.parquet"), PARAMS)["records"] == 1


def test_task_source_renders_several_phrasings_per_item_in_one_group(tmp_path):
    with open(tmp_path / "s.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(
            [
                ["text", "label"],
                ["الخدمة ممتازة والطعام لذيذ.", "positive"],
                ["تأخر الطلب ساعتين.", "negative"],
            ]
        )
    ingest("s", src(kind="task", format="csv", path="s.csv", template="sentiment"), PARAMS)
    rows = read("s")
    assert len(rows) == 4
    groups = {}
    for r in rows:
        groups.setdefault(r["source_row"], set()).add(load_meta(r["meta"])["group"])
        assert r["task"] == "classification"
    assert all(len(g) == 1 for g in groups.values()) and len(groups) == 2
    templates = [load_meta(r["meta"])["template"] for r in rows if r["source_row"] == 0]
    assert len(set(templates)) == 2  # two different phrasings of one item
    first = [r for r in rows if r["source_row"] == 0]
    assert all("إيجابي" in r["output"] for r in first)  # label mapped to Arabic
    assert any("الخدمة ممتازة" in r["instruction"] + r["input"] for r in first)


def test_unknown_label_is_an_error_naming_file_and_row(tmp_path):
    with open(tmp_path / "s.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["text", "label"], ["نص جيد.", "positive"], ["نص.", "happy"]])
    with pytest.raises(StageError, match=r"s\.csv: row 1: unknown label \('happy'"):
        ingest("s", src(kind="task", format="csv", path="s.csv", template="sentiment"), PARAMS)
    assert not raw_path("s").exists()  # nothing half-written


def test_malformed_json_line_fails_with_file_and_row(tmp_path):
    write_jsonl(
        tmp_path / "b.jsonl",
        [
            {"instruction": "سؤال أول؟", "output": "جواب."},
            '{"instruction": "مقطوع',
        ],
    )
    with pytest.raises(StageError, match=r"b\.jsonl: row 1: malformed JSON"):
        ingest("b", src(format="jsonl", path="b.jsonl"), PARAMS)


def test_quarantine_mode_sets_bad_rows_aside_and_goes_on(tmp_path):
    path = tmp_path / "b.jsonl"
    write_jsonl(
        path,
        [
            {"instruction": "سؤال أول؟", "output": "جواب."},
            "{not json",
            {"instruction": "بلا جواب"},
            {"instruction": "سؤال ثان؟", "output": "نعم."},
        ],
    )
    with open(path, "ab") as f:
        f.write(b'{"instruction": "\xff\xfe", "output": "x"}\n')
    # 3 of 5 rows broken: far above the default bound, which the next test keeps
    lenient = src(format="jsonl", path="b.jsonl", on_error="quarantine", max_rejected_fraction=1)
    counts = ingest("b", lenient, PARAMS)
    assert counts["records"] == 2 and counts["quarantined"] == 3
    q = pq.read_table(quarantine_path("ingest", "b")).to_pylist()
    assert {(r["source_row"], r["rule"]) for r in q} == {
        (1, "malformed JSON"),
        (2, "missing value"),
        (4, "not UTF-8"),
    }
    assert all(r["stage"] == "ingest" and r["source"] == "b" for r in q)
    # Nothing is lost: each quarantined row keeps what the source held.
    by_row = {r["source_row"]: r["value"] for r in q}
    assert by_row[1] == "{not json"
    assert json.loads(by_row[2]) == {"instruction": "بلا جواب"}
    assert by_row[4] == '{"instruction": "\\xff\\xfe", "output": "x"}'


def test_a_bad_byte_in_a_csv_costs_one_row_not_the_rest(tmp_path):
    (tmp_path / "c.csv").write_bytes(
        "instruction,output\nسؤال أول؟,جواب أول\n".encode()
        + b"\xff\xfe bad,row\n"
        + "سؤال ثالث؟,جواب ثالث\n".encode()
    )
    lenient = src(format="csv", path="c.csv", on_error="quarantine", max_rejected_fraction=0.5)
    counts = ingest("c", lenient, PARAMS)
    assert counts["records"] == 2 and counts["quarantined"] == 1
    (q,) = pq.read_table(quarantine_path("ingest", "c")).to_pylist()
    assert q["source_row"] == 1 and q["rule"] == "not UTF-8"
    assert q["value"] == "\\xff\\xfe bad,row"
    assert [r["source_row"] for r in read("c")] == [0, 2]
    with pytest.raises(StageError, match=r"c\.csv: row 1: not UTF-8"):
        ingest("c", src(format="csv", path="c.csv"), PARAMS)


def test_missing_required_column_is_named(tmp_path):
    (tmp_path / "c.csv").write_text("prompt,output\nسؤال؟,جواب\n", encoding="utf-8")
    with pytest.raises(StageError, match=r"c\.csv: required column 'instruction' missing"):
        ingest("c", src(format="csv", path="c.csv"), PARAMS)


def test_csv_row_with_wrong_field_count_is_named(tmp_path):
    (tmp_path / "c.csv").write_text(
        "instruction,output\nسؤال؟,جواب\nسؤال,جواب,زائد\n", encoding="utf-8"
    )
    with pytest.raises(StageError, match=r"row 1: malformed CSV"):
        ingest("c", src(format="csv", path="c.csv"), PARAMS)


def test_empty_and_missing_sources_are_clear_errors(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(StageError, match=r"e\.jsonl: source 'e' is empty"):
        ingest("e", src(format="jsonl", path="e.jsonl"), PARAMS)
    (tmp_path / "blank.jsonl").write_text("\n\n")
    with pytest.raises(StageError, match="has no rows"):
        ingest("blank", src(format="jsonl", path="blank.jsonl"), PARAMS)
    with pytest.raises(StageError, match="not found"):
        ingest("m", src(format="jsonl", path="missing.jsonl"), PARAMS)


def paper_instar() -> SourceParams:
    """The paper profile's InstAr-500k source, read from here."""
    import yaml

    paper = yaml.safe_load((ROOT / "profiles/paper.yaml").read_text(encoding="utf-8"))
    return SourceParams.named("instar500k", paper)


def hub_parquet(table: pa.Table, source: SourceParams) -> None:
    Path(source.path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, source.path)


def test_instar500k_reads_hub_parquet_of_its_known_column_sets_and_names_an_unknown_one():
    from tests.standin_data import OLD_INSTAR_NAMES, instar_rows, instar_table

    rows = instar_rows()[:20]
    instar = paper_instar()
    assert instar.path == "data/hub/instar500k/default/train.parquet"  # hub@instar500k's file
    # the latest commit's layout: pandas' index column and no input column, read as it is
    hub_parquet(instar_table(rows), instar)
    assert ingest("instar500k", instar, PARAMS)["records"] == len(rows)
    got = read("instar500k")
    assert [r["output"] for r in got] == [r["output"] for r in rows]
    assert {r["input"] for r in got} == {""} and got[1]["system"] == rows[1]["system"]
    assert load_meta(got[0]["meta"]) == {"source": rows[0]["source"], "uuid": rows[0]["uuid"]}
    # an older layout (another name for one column) is refused, its columns listed by name
    hub_parquet(instar_table(rows, OLD_INSTAR_NAMES), instar)
    with pytest.raises(StageError) as e:
        ingest("instar500k", instar, PARAMS)
    said = " ".join(str(e.value).split())
    assert "response" in said and "__index_level_0__" in said and "column_sets" in said
    # ... and read once its set is listed with its mapping
    old_set = {
        "found": [OLD_INSTAR_NAMES.get(c, c) for c in instar.column_sets[0].found],
        "columns": {"output": "response"},
    }
    both = instar.model_copy(update={"column_sets": [*instar.column_sets, ColumnSet(**old_set)]})
    assert ingest("instar500k", both, PARAMS)["records"] == len(rows)
    assert [r["output"] for r in read("instar500k")] == [r["output"] for r in rows]


def test_a_hub_source_missing_its_file_says_what_writes_it():
    with pytest.raises(StageError, match=r"hub@ writes it: `dvc repro` or `dvc pull`"):
        ingest("instar500k", paper_instar(), PARAMS)


def test_format_hf_for_a_source_points_at_hub_data():
    with pytest.raises(ValueError, match="hub_data"):
        src(format="hf", path="data/hub/x")


def test_records_source_keeps_origin_task_and_meta_and_names_a_bad_row(tmp_path):
    from instar.records.schema import make_record

    good = make_record(
        instruction="لخّص النص.",
        input="نص قصير عن النخيل.",
        output="النخيل شجرة صحراوية.",
        task="summarization",
        source="paras",
        source_row=7,
        origin="synthetic",
        meta={"teacher_model": "t", "group": "paras:abc"},
    )
    pq.write_table(pa.Table.from_pylist([good]), tmp_path / "g.parquet")
    source = src(kind="records", format="parquet", path="g.parquet")
    assert ingest("synthetic", source, PARAMS)["records"] == 1
    [r] = read("synthetic")
    assert (r["origin"], r["task"], r["source"], r["id"]) == (
        "synthetic",
        "summarization",
        "synthetic",
        good["id"],
    )
    assert load_meta(r["meta"]) == {
        "teacher_model": "t",
        "group": "paras:abc",
        "from_source": "paras",
        "from_row": 7,
    }
    pq.write_table(
        pa.Table.from_pylist([good, {**good, "origin": "invented"}]), tmp_path / "g.parquet"
    )
    with pytest.raises(StageError, match=r"g.parquet: row 1: unknown origin \('invented'\)"):
        ingest("synthetic", source, PARAMS)
    with pytest.raises(ValueError, match="must be format 'parquet'"):
        src(kind="records", format="jsonl", path="g.jsonl")


# What people really export ------------------------------------------------------------------


def quarantined(name: str) -> list[dict]:
    return pq.read_table(quarantine_path("ingest", name)).to_pylist()


def test_a_utf8_bom_is_the_encoding_mark_in_jsonl_and_csv_and_crlf_ends_are_read(tmp_path):
    rows = [GOOD, {"question": "ما عاصمة مصر؟", "answer": "القاهرة."}]
    body = "\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\r\n"
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + body.encode())
    mapping = {"instruction": "question", "output": "answer"}
    counts = ingest("bom", src(format="jsonl", path="bom.jsonl", columns=mapping), PARAMS)
    assert counts == {"records": 2, "quarantined": 0, "rules": {}}  # row 0 is not "malformed"
    assert [r["instruction"] for r in read("bom")] == [r["question"] for r in rows]

    lines = ["instruction,output", *(f"{r['question']},{r['answer']}" for r in rows)]
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    counts = ingest("bomcsv", src(format="csv", path="bom.csv"), PARAMS)  # not "\ufeffinstruction"
    assert counts["records"] == 2 and counts["quarantined"] == 0
    assert [r["output"] for r in read("bomcsv")] == [r["answer"] for r in rows]


def test_a_source_whose_rows_are_all_rejected_fails_naming_the_columns_and_the_mapping(tmp_path):
    rows = [{"prompt": f"سؤال رقم {i}؟", "completion": f"جواب {i}."} for i in range(5)]
    write_jsonl(tmp_path / "m.jsonl", rows)
    with pytest.raises(StageError) as e:
        ingest("m", src(format="jsonl", path="m.jsonl", on_error="quarantine"), PARAMS)
    msg = str(e.value)
    assert "all 5 rows of source 'm' were rejected" in msg and "row 0: missing value" in msg
    assert "['prompt', 'completion']" in msg and "['instruction', 'output']" in msg
    assert "sources.m.columns" in msg
    assert not raw_path("m").exists()  # nothing written: the stage failed as a whole
    mapped = {"instruction": "prompt", "output": "completion"}
    assert ingest("m", src(format="jsonl", path="m.jsonl", columns=mapped), PARAMS)["records"] == 5


def test_more_rejected_rows_than_the_bound_fail_and_within_it_every_row_is_accounted_for(tmp_path):
    write_jsonl(tmp_path / "r.jsonl", [GOOD] * 7 + ["{cut", "{cut", "{cut"])
    mapping = {"instruction": "question", "output": "answer"}

    def source(bound):
        return src(format="jsonl", path="r.jsonl", columns=mapping, on_error="quarantine",
                   max_rejected_fraction=bound)  # fmt: skip

    with pytest.raises(StageError, match=r"3 of 10 rows .* \(30\.0% > sources\.r\.max_rejected"):
        ingest("r", source(0.25), PARAMS)
    counts = ingest("r", source(0.3), PARAMS)
    assert counts["records"] + counts["quarantined"] == 10 == len(read("r")) + len(quarantined("r"))


def test_a_text_field_holding_a_number_list_or_object_is_rejected_as_wrong_type(tmp_path):
    write_jsonl(
        tmp_path / "w.jsonl",
        [
            {"instruction": 42, "output": ["a", "b"]},
            {"instruction": "سؤال؟", "output": {"text": "جواب"}},
            {"instruction": "سؤال؟", "output": "جواب.", "topic": 7},
            {"instruction": "ما لون السماء؟", "output": "زرقاء."},
        ],
    )
    lenient = src(format="jsonl", path="w.jsonl", on_error="quarantine", max_rejected_fraction=1)
    counts = ingest("w", lenient, PARAMS)
    assert counts["records"] == 1 and counts["rules"] == {"wrong_type": 3}
    q = quarantined("w")
    assert [(r["source_row"], r["value"]) for r in q] == [
        (0, "42"),
        (1, '{"text": "جواب"}'),
        (2, "7"),
    ]
    assert counts["records"] + counts["quarantined"] == 4
    with pytest.raises(StageError, match=r"row 0: wrong_type \(column 'instruction' holds a int"):
        ingest("w", src(format="jsonl", path="w.jsonl"), PARAMS)
